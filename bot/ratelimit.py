"""One token bucket for every Agora call of the process: Agora allows about 50
requests per second per account, and a fleet scan must not take them all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` calls per second, shared by every thread. Each call reserves the
    next token under a lock and then sleeps until it exists, so waiting costs no
    CPU and callers are served in order. The burst is a twentieth of a
    second's worth: grants in any one-second window never exceed `rate` plus
    that, and what Agora sees in a window can exceed it only by the calls
    already granted but not yet sent (a stalled process sends them together),
    so the fleet's readers are kept few (at 40/s: 40 + 2 + 8 = 50)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate / 20)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()  # tokens accrue from here; in the future while paused

    def reserve(self, max_wait: float | None = None) -> float | None:
        """Take the next token; how long to wait before using it. With
        `max_wait`, a longer wait is refused instead: None, and no token taken."""
        with self._lock:
            now = self._clock()
            if now > self._last:
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
            left = self._tokens - 1
            delay = max(0.0, self._last + max(0.0, -left) / self.rate - now)
            if max_wait is not None and delay > max_wait:
                return None
            self._tokens = left
        return delay

    def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a token (the caller then makes one call); False, at once,
        if that would take longer than `max_wait` seconds."""
        delay = self.reserve(max_wait)
        if delay is None:
            return False
        if delay > 0:
            self._sleep(delay)
        return True

    def pause(self, seconds: float) -> None:
        """Agora said 429: no token until `seconds` from now, and none saved up."""
        with self._lock:
            self._last = max(self._last, self._clock() + seconds)
            self._tokens = min(self._tokens, 0.0)
