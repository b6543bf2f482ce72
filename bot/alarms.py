"""Callbacks run once their time comes, unless cancelled first: what a person is told when
something they wait for is slow (a `get` on a slow Agora), at no cost when it is not. One
thread keeps the clock; a small pool runs what is due, so a slow callback holds back no other."""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# An alarm may run this much late: the thread wakes at most 20 times a second, however many
# alarms are set (a busy recbot sets one per `get`, and nearly all are cancelled).
RESOLUTION_SECONDS = 0.05


class Alarm:
    """One callback at one time. `cancel()` tells whether it went off, waiting for it when it is
    running, so that whoever cancels knows what may already have been done (a person told)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._context = contextvars.copy_context()  # the request id of whoever set it, in its log lines
        self._lock = threading.Lock()
        self._state = "waiting"  # then running and went off, or cancelled

    def fire(self) -> None:
        """Run the callback, unless it was cancelled (or has gone off) already."""
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "running"
            try:
                self._context.run(self._call)
            finally:
                self._state = "went off"

    def _call(self) -> None:
        try:
            self._callback()
        except Exception as exc:  # noqa: BLE001 - its caller is a pool thread, which would drop it unseen
            # Its type alone: an exception's message may quote a secret.
            name = getattr(self._callback, "__qualname__", "?")
            log.error("the alarm's callback %s raised %s", name, type(exc).__qualname__)

    @property
    def waiting(self) -> bool:
        return self._state == "waiting"

    def cancel(self) -> bool:
        """Keep it from going off; True when it had (its callback called, whatever that did)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "cancelled"
            return self._state == "went off"


class Alarms:
    """Alarms of the whole process. Its thread starts with the first alarm; `close()` drops
    those not due yet and waits for those running."""

    def __init__(self, runners: int = 4, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()  # two alarms of the same time: the first set runs first
        self._changed = threading.Condition()
        self._runners = ThreadPoolExecutor(runners, thread_name_prefix="alarm")
        self._thread: threading.Thread | None = None
        self._closed = False

    def after(self, seconds: float, callback: Callable[[], None]) -> Alarm:
        """`callback()` in `seconds`, on a thread of this pool, unless the alarm is cancelled first."""
        alarm = Alarm(callback)
        with self._changed:
            if self._closed:
                alarm.cancel()
                return alarm
            heapq.heappush(self._due, (self._clock() + seconds, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep_time, name="alarms", daemon=True)
                self._thread.start()
            elif self._due[0][2] is alarm:  # sooner than the one the thread waits for
                self._changed.notify()
        return alarm

    def _keep_time(self) -> None:
        with self._changed:
            while not self._closed:
                if not self._due:
                    self._changed.wait()
                    continue
                wait = self._due[0][0] - self._clock()
                if wait > 0:
                    self._changed.wait(max(wait, RESOLUTION_SECONDS))
                    continue
                while self._due and self._due[0][0] <= self._clock():
                    _when, _order, alarm = heapq.heappop(self._due)
                    if alarm.waiting:  # fire() looks again, under the alarm's lock
                        self._runners.submit(alarm.fire)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            dropped, self._due = self._due, []
            self._changed.notify()
        for _when, _order, alarm in dropped:
            alarm.cancel()
        if self._thread is not None:
            self._thread.join()
        self._runners.shutdown(wait=True)
