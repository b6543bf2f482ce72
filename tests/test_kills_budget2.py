"""Gaps a mutation spot check found in the tests of the shared Agora budget (issue 22):
instances taking from the one budget at once never take a token twice, a lease left
unused is not spent later, and one background call does not lease the whole budget."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from sqlalchemy import func, update
from sqlalchemy.engine import Engine

from bot.ratelimit import Budget
from bot.shared_budget import SharedBudget
from bot.store import open_store
from bot.store.budget import change_budget
from bot.store.engine import make_engine
from bot.store.schema import agora_budget

INSTANCES = 4
CALLERS = 16
TOKENS = 8
SLOW = 0.001  # tokens a second: none accrues while the takers of a round run


T = TypeVar("T")


class Stop(Exception):
    """Ends a limiter's wait where the test has seen what it wanted."""


class LocalTime:
    """An instance's clock, moved by its sleeps, until told to stop at the next one."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.stop = False

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.stop:
            raise Stop
        self.now += seconds


def fill(database: str, tokens: float) -> None:
    """The budget holds `tokens` now, no pause."""
    engine = make_engine(database)
    try:
        with engine.begin() as conn:
            now = func.clock_timestamp()
            conn.execute(update(agora_budget).values(tokens=tokens, updated_at=now, paused_until=None))
    finally:
        engine.dispose()


@pytest.fixture
def database(postgres_url: str) -> str:
    open_store(postgres_url).close()  # the schema, and the budget's row
    return postgres_url


def at_once(engines: list[Engine], rate: float, change: Callable[[Budget, float], T]) -> list[T]:
    """What `change` gave each of CALLERS callers on the instances' engines, all started at one moment."""
    start = threading.Barrier(CALLERS)
    results: list[T] = []

    def call(engine: Engine) -> None:
        start.wait()
        results.append(change_budget(engine, rate, TOKENS, change)[0])

    threads = [threading.Thread(target=call, args=(engines[i % INSTANCES],)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == CALLERS
    return results


@pytest.fixture
def engines(database: str) -> Iterator[list[Engine]]:
    """An engine per instance."""
    made = [make_engine(database) for _ in range(INSTANCES)]
    yield made
    for engine in made:
        engine.dispose()


def test_instances_taking_from_the_budget_at_once_never_take_a_token_twice(database: str, engines) -> None:
    """Sixteen background callers on four instances take from a budget holding 8 tokens at
    the same moment: 8 are granted in all, or Agora sees more calls than the budget allows."""
    for _ in range(15):
        fill(database, TOKENS)
        granted = at_once(engines, SLOW, lambda budget, now: budget.take(now, 1)[0])
        assert sum(granted) == TOKENS


def test_people_reserving_at_once_on_several_instances_each_get_a_later_token(database: str, engines) -> None:
    """People on four instances reserve at the same moment from an empty budget: each is
    told to wait for a token of their own, one interval after the one before, never two at once."""
    for _ in range(10):
        fill(database, 0)
        delays = sorted(at_once(engines, 1.0, lambda budget, now: budget.reserve(now, 3600.0) or 0.0))
        # Each one a second (the token interval) after the one before, less what accrued between their transactions.
        assert min(later - earlier for earlier, later in itertools.pairwise(delays)) > 0.5, delays


def test_a_lease_left_unused_is_not_spent_later_past_a_pause_another_instance_saw(database: str) -> None:
    """An instance's background work stops with a leased token left; a second later another
    instance sees a 429: this one's next background call waits it out, not spending the old lease."""
    fill(database, 6)
    time = LocalTime()
    instance = SharedBudget(make_engine(database), 40.0, clock=time.clock, sleep=time.sleep)
    try:
        instance.acquire()  # leases 1
        instance.acquire()  # waits its turn, leases 2: one left over
        time.now += 1.0
        other = SharedBudget(make_engine(database), 40.0)
        try:
            other.pause(30.0)  # Agora said Retry-After: 30 to the other instance
        finally:
            other.close()
        time.stop = True
        with pytest.raises(Stop):
            instance.acquire()
    finally:
        instance.close()


def test_one_background_call_leaves_the_rest_of_the_budget_to_other_instances(database: str) -> None:
    """An instance making one background call leases one token, not a whole lease: the
    other instances still find the rest of the budget there."""
    fill(database, 6)
    engine = make_engine(database)
    with engine.connect():
        pass  # connected before the call: a token accrues every 25 ms
    time = LocalTime()
    one = SharedBudget(make_engine(database), 40.0, clock=time.clock, sleep=time.sleep)
    try:
        one.acquire()
        left = change_budget(engine, 40.0, one.capacity, lambda budget, now: budget.take(now, 6)[0])[0]
    finally:
        one.close()
        engine.dispose()
    assert left >= 4  # 5, or 6 if one accrued meanwhile
