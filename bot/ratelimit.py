"""The Agora rate limit: about 50 requests per second per account, shared by
two lanes. A person's call (interactive) reserves the next token at once;
background work (fleet scans, drift passes) takes only tokens that exist now
and that no reserved call is owed, so a person waits at most one token
interval behind background work, however much of it there is."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from bot.metrics import Metrics

# Float sums of accrued tokens land a hair under a whole token exactly when one is due.
_WHOLE = 1e-9


class Limiter(Protocol):
    """What the Agora client waits on before each call."""

    def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a token. With `max_wait` (a person's call, the interactive lane):
        False at once, and nothing taken, if that would take longer. Without it
        (background work): wait behind every person's call, as long as it takes."""
        ...

    def pause(self, seconds: float) -> None:
        """Agora answered 429: no token for `seconds`, and none saved up."""
        ...

    def paused_for(self) -> float:
        """Seconds left of the longest 429 pause known here (0: none): what a person
        refused during it is told to wait."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Reporting(Protocol):
    """A limiter that reports its waits and tokens into a process's Metrics."""

    def report_to(self, metrics: Metrics) -> None:
        """Observe waits into `metrics` and read its tokens gauge from this limiter."""
        ...


Lane = Literal["interactive", "background"]


def lane(max_wait: float | None) -> Lane:
    """A person's call has a bound on its wait; background work has none."""
    return "background" if max_wait is None else "interactive"


@dataclass
class Budget:
    """A token bucket's state, without threads or clocks of its own: `tokens` at
    time `updated` (negative: owed to reserved calls), accruing at `rate` up to
    `capacity`, none before `paused_until`. Times are seconds on one clock."""

    rate: float
    capacity: float
    tokens: float
    updated: float
    paused_until: float = -math.inf

    def reserve(self, now: float, max_wait: float | None = None) -> float | None:
        """The interactive lane: take the next token, even one not there yet; how
        long until it is due. A wait over `max_wait` is refused: None, nothing taken."""
        taken, delay = self.ask(now, max_wait)
        return delay if taken else None

    def ask(self, now: float, max_wait: float | None = None) -> tuple[bool, float]:
        """`reserve`, also saying how long a refused call would have had to wait (its metric)."""
        self._refill(now)
        left = self.tokens - 1
        delay = max(0.0, self.paused_until - now) + max(0.0, -left) / self.rate
        if max_wait is not None and delay > max_wait:
            return False, delay
        self.tokens = left
        return True, delay

    def take(self, now: float, want: int = 1) -> tuple[int, float]:
        """The background lane: up to `want` whole tokens that exist now, none
        owed to a reserved call; (how many, seconds until the next one exists)."""
        self._refill(now)
        taken = 0
        if now >= self.paused_until:
            taken = max(0, min(want, math.floor(self.tokens + _WHOLE)))
            self.tokens -= taken
        return taken, max(0.0, self.paused_until - now) + max(0.0, 1 - self.tokens) / self.rate

    def pause(self, now: float, seconds: float) -> None:
        """No token accrues until `seconds` from `now`, and what was saved is gone."""
        self._refill(now)
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = min(self.tokens, 0.0)

    def available(self, now: float) -> int:
        """Whole tokens a call could take at `now` without waiting; changes nothing (read at scrape)."""
        if now < self.paused_until:
            return 0
        start = max(self.updated, self.paused_until)
        tokens = min(self.capacity, self.tokens + max(0.0, now - start) * self.rate)
        return max(0, math.floor(tokens + _WHOLE))

    def _refill(self, now: float) -> None:
        start = max(self.updated, self.paused_until)
        if now > start:
            self.tokens = min(self.capacity, self.tokens + (now - start) * self.rate)
        self.updated = max(self.updated, now)


class TokenBucket:
    """The limiter of one process (the embedded SQLite): `rate` calls per second,
    a burst of a twentieth of a second's worth. A person's call reserves its
    token and sleeps until it is due; background callers queue, and the first
    sleeps until a token exists that no person is owed, then takes it."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        capacity = max(1.0, rate / 20)
        self._budget = Budget(rate, capacity, tokens=capacity, updated=clock())
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._tickets = 0  # background callers so far; each waits for its ticket to be served
        self._serving = 0
        self.report_to(metrics or Metrics())

    def report_to(self, metrics: Metrics) -> None:
        self._metrics = metrics
        metrics.limiter_tokens.set_function(self.available)

    def available(self) -> int:
        """Whole tokens a call could take now without waiting (the tokens gauge, read at scrape)."""
        with self._lock:
            return self._budget.available(self._clock())

    @property
    def rate(self) -> float:
        return self._budget.rate

    @property
    def capacity(self) -> float:
        return self._budget.capacity

    def reserve(self, max_wait: float | None = None) -> float | None:
        """The interactive lane's reservation; how long to wait before using it."""
        with self._lock:
            return self._budget.reserve(self._clock(), max_wait)

    def acquire(self, max_wait: float | None = None) -> bool:
        given, seconds = self.waited(max_wait)
        self._metrics.limiter_wait_seconds.labels(lane=lane(max_wait)).observe(seconds)
        return given

    def waited(self, max_wait: float | None = None) -> tuple[bool, float]:
        """`acquire`, unobserved: whether the token was given, and the seconds waited for it
        on this limiter's clock (refused: the wait it would have needed, over `max_wait`)."""
        began = self._clock()
        if max_wait is None:
            self._take_background()
            return True, self._clock() - began
        with self._lock:
            taken, delay = self._budget.ask(began, max_wait)
        if not taken:
            return False, delay
        if delay > 0:
            self._sleep(delay)
        return True, self._clock() - began

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._budget.pause(self._clock(), seconds)

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._budget.paused_until - self._clock())

    def close(self) -> None:
        """Nothing to release: the bucket lives in this process."""

    def _take_background(self) -> None:
        with self._lock:
            ticket = self._tickets
            self._tickets += 1
            self._turn.wait_for(lambda: self._serving == ticket)
        try:
            while True:
                with self._lock:
                    taken, wait = self._budget.take(self._clock())
                if taken:
                    return
                self._sleep(wait)
        finally:
            with self._lock:
                self._serving += 1
                self._turn.notify_all()
