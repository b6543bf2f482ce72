"""Periodic tasks on daemon threads, stopped cleanly on shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# While a task keeps failing (the database is down), one line this often says so, not one per run.
REPEAT_LOG_SECONDS = 60.0


class Failures:
    """How a periodic task's failures are logged: the first with its traceback, then one line
    every REPEAT_LOG_SECONDS while it keeps failing, and a line when it works again."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._count = 0
        self._logged_at = 0.0

    def failed(self, exc: BaseException) -> None:
        """Call from the `except` block of a failed run."""
        self._count += 1
        now = self._clock()
        if self._count == 1:
            log.error("%s failed; it runs again", self._name, exc_info=exc)
        elif now - self._logged_at >= REPEAT_LOG_SECONDS:
            log.error("%s is still failing (%d runs in a row; last: %s)", self._name, self._count, type(exc).__name__)
        else:
            return
        self._logged_at = now

    def succeeded(self) -> None:
        if self._count > 1:
            log.info("%s works again, after %d failed runs", self._name, self._count)
        self._count = 0


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
        self._failures = Failures(name)

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
            except Exception as exc:  # noqa: BLE001 - a failed sweep must not end the sweeper; Failures logs it
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            if self._gap and self._stop.wait(self._gap):
                return


class Background:
    """The periodic tasks of one process, stopped together."""

    def __init__(self, tasks: list[Periodic]) -> None:
        self.tasks = tasks

    def stop(self) -> None:
        for task in self.tasks:
            task.stop()
