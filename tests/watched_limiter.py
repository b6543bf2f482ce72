"""A limiter that notes when each Agora call asked for its token and when it
got it, in which lane: what the tests and the benchmark see of the lanes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.ratelimit import Limiter


@dataclass(frozen=True)
class Grant:
    lane: Literal["person", "background"]
    asked: float  # time.monotonic(), the system-wide clock: comparable across processes
    granted: float


class WatchedLimiter:
    """Passes every call to `inner`, and appends each token given to `grants`."""

    def __init__(self, inner: Limiter, grants: list[Grant]) -> None:
        self.inner = inner
        self.grants = grants

    def acquire(self, max_wait: float | None = None) -> bool:
        asked = time.monotonic()
        given = self.inner.acquire(max_wait)
        if given:
            self.grants.append(Grant("background" if max_wait is None else "person", asked, time.monotonic()))
        return given

    def pause(self, seconds: float) -> None:
        self.inner.pause(seconds)

    def paused_for(self) -> float:
        return self.inner.paused_for()

    def close(self) -> None:
        self.inner.close()
