"""Gaps a mutation spot check found in the tests of the shared Agora budget and the
process's own bucket (issue 22): instances taking from the one budget at once never
take a token twice, and a fresh bucket bursts no more than it says."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, update

from bot.ratelimit import TokenBucket
from bot.store import open_store
from bot.store.budget import change_budget
from bot.store.engine import make_engine
from bot.store.schema import agora_budget

INSTANCES = 4
CALLERS = 16
TOKENS = 8
SLOW = 0.001  # tokens per second: none accrues while a round runs


class Stop(Exception):
    """Ends a limiter's wait where the test has seen what it wanted."""


def stop(_seconds: float) -> None:
    raise Stop


@pytest.fixture
def database(postgres_url: str) -> str:
    open_store(postgres_url).close()  # the schema, and the budget's row
    return postgres_url


def test_instances_taking_from_the_budget_at_once_never_take_a_token_twice(database: str) -> None:
    """Sixteen background callers on four instances take from a budget holding 8 tokens at
    the same moment: 8 are granted in all, or Agora sees more calls than the budget allows."""
    engines = [make_engine(database) for _ in range(INSTANCES)]
    try:
        for _ in range(15):
            with engines[0].begin() as conn:
                conn.execute(
                    update(agora_budget).values(tokens=TOKENS, updated_at=func.clock_timestamp(), paused_until=None)
                )
            start = threading.Barrier(CALLERS)
            granted: list[int] = []

            def take(engine) -> None:  # type: ignore[no-untyped-def]
                start.wait()
                got = change_budget(engine, SLOW, TOKENS, lambda budget, now: budget.take(now, 1)[0])
                granted.append(got)

            threads = [threading.Thread(target=take, args=(engines[i % INSTANCES],)) for i in range(CALLERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(granted) == CALLERS
            assert sum(granted) == TOKENS
    finally:
        for engine in engines:
            engine.dispose()


def test_people_reserving_at_once_on_several_instances_each_get_a_later_token(database: str) -> None:
    """People on four instances reserve at the same moment from an empty budget: each is
    told to wait for a token of their own, one interval after the one before, never two at once."""
    rate = 10.0
    engines = [make_engine(database) for _ in range(INSTANCES)]
    try:
        for _ in range(10):
            with engines[0].begin() as conn:
                conn.execute(update(agora_budget).values(tokens=0.0, updated_at=func.clock_timestamp(), paused_until=None))
            start = threading.Barrier(CALLERS)
            delays: list[float] = []

            def reserve(engine) -> None:  # type: ignore[no-untyped-def]
                start.wait()
                delay = change_budget(engine, rate, 1.0, lambda budget, now: budget.reserve(now, 60.0))
                assert delay is not None
                delays.append(delay)

            threads = [threading.Thread(target=reserve, args=(engines[i % INSTANCES],)) for i in range(CALLERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(delays) == CALLERS
            ordered = sorted(delays)
            # Each one a token interval after the one before (less what accrued between their transactions).
            gaps = [later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False)]
            assert min(gaps) > 0.5 / rate, ordered
    finally:
        for engine in engines:
            engine.dispose()


def test_a_fresh_bucket_bursts_a_twentieth_of_a_second_and_then_keeps_the_rate() -> None:
    """The process's own bucket at 40/s: 2 calls at once, then each waits its interval, so
    Agora (50 a second) never sees a burst on top of the rate."""
    slept: list[float] = []
    bucket = TokenBucket(40.0, clock=lambda: 0.0, sleep=slept.append)
    assert [bucket.acquire(max_wait=1.0) for _ in range(4)] == [True] * 4
    assert slept == pytest.approx([1 / 40, 2 / 40])
