"""Periodic tasks on daemon threads, stopped cleanly on shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """`task` every `interval` seconds, and at once when woken; after a run, the next waits at
    least `gap` seconds, so that wake-ups in a burst make one run, not many."""

    def __init__(self, interval: float, task: Callable[[], None], name: str, gap: float = 0.0) -> None:
        self._interval = interval
        self._task = task
        self._gap = gap
        self._stop = threading.Event()
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        return self._thread.name

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run the task now (or once the gap after the last run ended), not at the interval's end."""
        self._woken.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._woken.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._woken.wait(self._interval)
            if self._stop.is_set():
                return
            self._woken.clear()
            try:
                self._task()
            except Exception:  # a failed sweep must not end the sweeper
                log.exception("%s failed; retrying in %.0f s", self._thread.name, self._interval)
            if self._gap and self._stop.wait(self._gap):
                return


class Background:
    """The periodic tasks of one process, stopped together."""

    def __init__(self, tasks: list[Periodic]) -> None:
        self.tasks = tasks

    def stop(self) -> None:
        for task in self.tasks:
            task.stop()
