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

# Cancelled alarms are swept out of the heap once there are more than this, and more than live ones.
SWEEP_AT = 100
# An alarm may run this much late: the thread wakes at most 20 times a second, however many
# alarms are set. Those cancelled at the head of the heap are dropped without waiting for their
# time, so on a busy recbot (an alarm per call, nearly all cancelled) it sleeps until the first
# alarm that was still set when it last looked.
RESOLUTION_SECONDS = 0.05


class Alarm:
    """One callback at one time. `cancel()` tells whether it went off, waiting for it when it is
    running, so that whoever cancels knows what may already have been done (a person told)."""

    def __init__(self, callback: Callable[[], None], on_cancel: Callable[[], None] = lambda: None) -> None:
        self._callback: Callable[[], None] | None = callback
        self._context: contextvars.Context | None = contextvars.copy_context()  # the setter's request id, for logs
        self._on_cancel = on_cancel
        self._lock = threading.Lock()
        self._state = "waiting"  # then running and went off, or cancelled

    def fire(self) -> None:
        """Run the callback, unless it was cancelled (or has gone off) already."""
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "running"
            assert self._context is not None and self._callback is not None
            try:
                self._context.run(self._call, self._callback)
            finally:
                self._state = "went off"

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - its caller is a pool thread, which would drop it unseen
            # Its type alone: an exception's message may quote a secret.
            name = getattr(callback, "__qualname__", "?")
            log.error("the alarm's callback %s raised %s", name, type(exc).__qualname__)

    @property
    def waiting(self) -> bool:
        return self._state == "waiting"

    def cancel(self) -> bool:
        """Keep it from going off; True when it had (its callback called, whatever that did)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "cancelled"
                # What the callback holds (a socket, a request's context) goes now, not at its time.
                self._callback = self._context = None
                self._on_cancel()
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
        self._cancelled = 0  # alarms cancelled but still in _due, till their time or a sweep

    def after(self, seconds: float, callback: Callable[[], None]) -> Alarm:
        """`callback()` in `seconds`, on a thread of this pool, unless the alarm is cancelled first."""
        alarm = Alarm(callback, self._count_cancelled)
        with self._changed:
            if self._closed:
                alarm.cancel()
                return alarm
            if self._cancelled > SWEEP_AT and 2 * self._cancelled > len(self._due):
                # Nearly every alarm is cancelled (a get's, a call's once answered): they would
                # wait out their time in the heap, as many as the calls of the last 10 s.
                self._due = [due for due in self._due if due[2].waiting]
                heapq.heapify(self._due)
                self._cancelled = 0
            heapq.heappush(self._due, (self._clock() + seconds, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep_time, name="alarms", daemon=True)
                self._thread.start()
            elif self._due[0][2] is alarm:  # sooner than the one the thread waits for
                self._changed.notify()
        return alarm

    def _count_cancelled(self) -> None:
        self._cancelled += 1  # read under _changed; a count missed in a race only delays a sweep

    def _keep_time(self) -> None:
        with self._changed:
            while not self._closed:
                while self._due and not self._due[0][2].waiting:  # cancelled: not waited for
                    heapq.heappop(self._due)
                    self._cancelled = max(0, self._cancelled - 1)
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
                    else:
                        self._cancelled = max(0, self._cancelled - 1)

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
