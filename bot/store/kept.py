"""Reads kept until the next commit (and KEPT_SECONDS at most): what every `/recording get`
reads beside Agora's answer (the switch, an open request, stream tasks) changes seldom, and
reading it was a quarter of a get's CPU under load (each SQLite step lets go of the GIL, and
ten busy threads take it in turn).
Only on the embedded SQLite, which one process writes (engine.only_process), so that this
process's commit count says whether a kept answer still stands; on PostgreSQL every read goes
to the database, which other instances write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlalchemy.engine import Engine

from bot.store.engine import Commits, commits_of

T = TypeVar("T")

KEPT_AT_MOST = 4096  # answers per store; past it, all are let go (an entry point is a key)
# At most this old, whatever the count says: a write no commit of this process counted (the file
# edited by hand while recbot runs) shows within it.
KEPT_SECONDS = 5.0


class KeptReads:
    """`read(key, query)`: the answer `query()` gave since the last commit and within
    KEPT_SECONDS, else a new one."""

    def __init__(
        self,
        commits: Commits | None,
        at_most: int = KEPT_AT_MOST,
        seconds: float = KEPT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._commits = commits
        self._at_most = at_most
        self._seconds = seconds
        self._clock = clock
        self._kept: dict[Hashable, tuple[int, float, object]] = {}
        self._guard = threading.Lock()

    def read(self, key: Hashable, query: Callable[[], T]) -> T:
        if self._commits is None:
            return query()
        count = self._commits.count  # before the query: a commit during it leaves its answer stale
        now = self._clock()
        kept = self._kept.get(key)
        if kept is not None and kept[0] == count and now - kept[1] < self._seconds:
            return kept[2]  # type: ignore[return-value]  # stored by this method under the same key
        answer = query()
        with self._guard:
            if len(self._kept) >= self._at_most:
                self._kept.clear()
            self._kept[key] = (count, now, answer)
        return answer


def kept_reads(engine: Engine) -> KeptReads:
    """Reads of `engine`'s database kept until its next commit (none kept on PostgreSQL)."""
    return KeptReads(commits_of(engine.url.render_as_string(hide_password=False)))
