"""The Agora budget of a deployment on PostgreSQL: one bucket in the database
for every instance, so AGORA_RATE_LIMIT is the whole deployment's rate.

Background callers of an instance lease tokens in small batches: at most one
transaction per LEASE_SECONDS, for what its callers used of the last lease
and are waiting for now, and only tokens that exist and no person is owed.
Leased tokens not used within LEASE_SECONDS of asking are dropped, so an
instance that dies, or stalls, loses at most its current lease. A person's call takes a leased token if
one is left, or reserves the next token in the database at once (the bucket
may go into debt for it): it waits at most one token interval behind
background work on any instance."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.metrics import Metrics
from bot.ratelimit import Budget, TokenBucket, lane
from bot.store.budget import LastWriter, change_budget

log = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_SECONDS = 0.1
LEASE_JITTER = (0.75, 1.25)  # of LEASE_SECONDS between an instance's leases: at most 125 ms, less than the bucket holds
# The bucket holds a lease and a half: a lease a little late still finds all that
# accrued, and what Agora sees in a second exceeds the rate by at most that.
CAPACITY_LEASES = 1.5
# How soon background callers try the database again after it failed.
RETRY_SECONDS = 1.0
# The last writer of the budget is an instance running now if it wrote this recently: one with
# work writes every LEASE_SECONDS, and an idle one spends nothing; a process stopped before a
# restart (with a new AGORA_RATE_LIMIT) has not written for longer than a start takes.
RUNNING_SECONDS = 1.0


class SharedBudget:
    """The limiter of an instance sharing the database's budget (see the module)."""

    def __init__(
        self,
        engine: Engine,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate * LEASE_SECONDS * CAPACITY_LEASES)
        self.lease_size = math.floor(self.capacity)  # the most one lease takes
        self.transactions = 0  # with the database, so far (the benchmark reports them)
        self._engine = engine
        self._clock = clock
        self._sleep = sleep
        # People's calls use it while the database cannot be reached; background work waits instead.
        # Its waits are observed here (waited), its tokens not: it is not what this instance spends.
        self._alone = TokenBucket(rate, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._tickets = 0  # background callers so far; each waits for its ticket to be served
        self._serving = 0
        self._held = 0  # leased tokens left, usable until _held_until
        self._held_until = -math.inf
        self._used = 0  # tokens of the current lease used so far
        self._next_lease = -math.inf
        self._paused_until = -math.inf  # a 429 this instance saw
        self._paused_seen = -math.inf  # the shared pause (any instance's 429) at the last transaction, on our clock
        self._gone_since: float | None = None  # when the database began failing, while it still does
        self._other_rates: set[float] = set()  # other instances' AGORA_RATE_LIMIT, each warned of once
        self.report_to(metrics or Metrics())

    def report_to(self, metrics: Metrics) -> None:
        self._metrics = metrics
        metrics.limiter_tokens.set_function(self.available)

    def available(self) -> int:
        """Tokens of this instance's lease still usable now: what it knows without asking the
        database (a scrape must not cost a transaction). 0 does not mean a person would wait:
        their call may reserve the next token in the database."""
        with self._lock:
            now = self._clock()
            usable = now < self._held_until and now >= self._paused_until
            return self._held if usable else 0

    def acquire(self, max_wait: float | None = None) -> bool:
        given, seconds = self._waited(max_wait)
        self._metrics.limiter_wait_seconds.labels(lane=lane(max_wait)).observe(seconds)
        return given

    def _waited(self, max_wait: float | None) -> tuple[bool, float]:
        """Whether the token was given, and the seconds waited for it on our clock, the database's
        transaction included (refused: the wait it would have needed, as TokenBucket.waited)."""
        began = self._clock()
        if max_wait is None:
            self._take_background()
            return True, self._clock() - began
        with self._lock:
            if self._take_held(began):
                return True, 0.0
        try:
            taken, delay = self._transact(lambda budget, now: budget.ask(now, max_wait))
        except SQLAlchemyError:
            return self._alone.waited(max_wait)  # logged by _transact, once per outage
        if not taken:
            return False, delay
        if delay > 0:
            self._sleep(delay)
        return True, self._clock() - began

    def pause(self, seconds: float) -> None:
        """Every instance's callers wait `seconds`: this one's at once, the others'
        from their next lease (a person's next call waits for it too)."""
        with self._lock:
            self._held = 0
            self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._alone.pause(seconds)
        try:
            self._transact(lambda budget, now: budget.pause(now, seconds))
        except SQLAlchemyError:
            log.warning("a 429 pauses this process only: the shared Agora budget is unreachable")

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, max(self._paused_until, self._paused_seen) - self._clock())

    def close(self) -> None:
        self._engine.dispose()

    def _take_background(self) -> None:
        with self._lock:
            ticket = self._tickets
            self._tickets += 1
            self._turn.wait_for(lambda: self._serving == ticket)
        try:
            while not self._lease_or_wait():
                pass
        finally:
            with self._lock:
                self._serving += 1
                self._turn.notify_all()

    def _lease_or_wait(self) -> bool:
        """The first background caller in line: take a leased token, or lease more
        when the last lease is LEASE_SECONDS old, or sleep until then. Whether it has one."""
        with self._lock:
            asked = self._clock()
            if self._take_held(asked):
                return True
            wait = max(self._next_lease, self._paused_until) - asked
            want = min(self.lease_size, self._tickets - self._serving + self._used)
        if wait > 0:
            self._sleep(wait)
            return False
        try:
            granted, due = self._transact(lambda budget, now: budget.take(now, want))
        except SQLAlchemyError:
            granted, due = 0, RETRY_SECONDS
        with self._lock:
            now = self._clock()
            # Good from when it was asked for, not from when it arrived: a lease an instance
            # was stalled over is gone, as the others have spent what accrued since.
            self._held, self._held_until, self._used = granted, asked + LEASE_SECONDS, 0
            # Instances leasing at fixed phases would split the rate by the gaps between them: jitter evens it.
            self._next_lease = now + max(LEASE_SECONDS * random.uniform(*LEASE_JITTER), due)  # noqa: S311
            return self._take_held(now)

    def _take_held(self, now: float) -> bool:
        if self._held > 0 and now < self._held_until and now >= self._paused_until:
            self._held -= 1
            self._used += 1
            return True
        return False

    def _transact(self, change: Callable[[Budget, float], T]) -> T:
        with self._lock:
            self.transactions += 1

        def noting_the_pause(budget: Budget, now: float) -> T:
            result = change(budget, now)
            with self._lock:  # the database's clock is not ours: keep what is left of the pause
                self._paused_seen = self._clock() + (budget.paused_until - now)
            return result

        try:
            result, last = change_budget(self._engine, self.rate, self.capacity, noting_the_pause)
        except SQLAlchemyError as exc:
            self._unreachable(exc)
            raise
        self._reachable()
        self._compare_rates(last)
        return result

    def _compare_rates(self, last: LastWriter) -> None:
        """Say once per other rate that an instance running now has another
        AGORA_RATE_LIMIT: the bucket then refills at whichever touched it last."""
        if last.rate is None or last.rate == self.rate or last.seconds_ago > RUNNING_SECONDS:
            return
        with self._lock:
            if last.rate in self._other_rates:
                return
            self._other_rates.add(last.rate)
        log.warning(
            "AGORA_RATE_LIMIT differs between instances sharing the Agora budget: this instance has %g/s, "
            "another %g/s; each refills the one bucket at its own, so the deployment's rate lies between the "
            "two: give every instance the same value",
            self.rate,
            last.rate,
        )

    def _unreachable(self, exc: SQLAlchemyError) -> None:
        """Log an outage once, not on every retry and person's call while it lasts."""
        with self._lock:
            first, self._gone_since = self._gone_since is None, self._gone_since or self._clock()
        if first:
            log.warning(
                "the shared Agora budget is unreachable (%s): people's calls use this process's own bucket, "
                "background calls wait for it (trying again every %g s)",
                _why(exc),
                RETRY_SECONDS,
            )

    def _reachable(self) -> None:
        with self._lock:
            since, self._gone_since = self._gone_since, None
        if since is not None:
            log.warning("the shared Agora budget is reachable again, after %.0f s", self._clock() - since)


def _why(exc: SQLAlchemyError) -> str:
    """The driver's error class: never the message, which may hold the connection's details."""
    return type(getattr(exc, "orig", None) or exc).__name__
