"""The deployment's one budget on PostgreSQL, instance by instance: a 429 seen
by one holds every instance's lanes, leases are few and sized to demand, and
a person is served by the process's own bucket while the database is down."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from bot.shared_budget import LEASE_SECONDS, RETRY_SECONDS, SharedBudget
from bot.store import open_store
from bot.store.engine import make_engine
from tests.fake_time import FakeTime

RATE = 40.0


class Stop(Exception):
    """Ends a limiter's wait where the test has seen what it wanted."""


def stop_at_first_sleep(slept: list[float]):  # type: ignore[no-untyped-def]
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise Stop

    return sleep


@pytest.fixture
def database(postgres_url: str) -> str:
    open_store(postgres_url).close()  # the schema, and the budget's row
    return postgres_url


@pytest.fixture
def budget(database: str) -> Iterator[SharedBudget]:
    """One instance's share of the budget."""
    shared = SharedBudget(make_engine(database), RATE)
    yield shared
    shared.close()


def test_a_429_seen_by_one_instance_holds_both_lanes_of_another(database, budget) -> None:
    budget.pause(5.0)  # Agora said Retry-After: 5 to this instance
    slept: list[float] = []
    other = SharedBudget(make_engine(database), RATE, sleep=stop_at_first_sleep(slept))
    try:
        assert not other.acquire(max_wait=1.0)  # a person's call: refused at once, as the pause is longer
        assert 4.0 < other.paused_for() <= 5.0  # what the person is told to wait: the other instance's 429
        with pytest.raises(Stop):
            other.acquire(max_wait=10.0)  # one that may wait: it waits out the pause
        with pytest.raises(Stop):
            other.acquire()  # background work: from its first lease, until the pause ends
    finally:
        other.close()
    assert slept[0] > 4.0 and slept[1] > 4.0  # seconds left of the pause, by the database's clock


def test_background_callers_lease_in_batches_not_one_transaction_per_call(budget) -> None:
    """Eight background callers on one instance take 40 tokens in far fewer
    transactions than calls."""
    grants: list[int] = []

    def caller() -> None:
        for _ in range(5):
            budget.acquire()
            grants.append(1)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(grants) == 40
    # At most one lease per LEASE_SECONDS, each for what accrued meanwhile (4 at 40/s), up to lease_size.
    assert budget.transactions <= len(grants) / 2


def test_with_the_database_down_a_person_is_served_and_background_waits() -> None:
    slept: list[float] = []
    nowhere = make_engine("postgresql://postgres@127.0.0.1:9/test", connect_timeout=2)  # nothing listens there
    down = SharedBudget(nowhere, RATE, sleep=stop_at_first_sleep(slept))
    try:
        assert down.acquire(max_wait=5.0)  # this process's own bucket: a person is not left unanswered
        with pytest.raises(Stop):
            down.acquire()  # background work waits for the shared budget, and tries again
        down.pause(1.0)  # a 429 still pauses this process
        assert not down.acquire(max_wait=0.5)
    finally:
        down.close()
    (retry,) = slept
    assert RETRY_SECONDS / 2 < retry <= RETRY_SECONDS  # not at once: a second after the failed transaction


def test_a_lease_that_arrives_late_is_not_spent_after_its_time(database) -> None:
    """An instance stalled while its lease was granted (CPU starved, a slow
    transaction) must not spend those tokens when it wakes: the other instances
    have spent what accrued meanwhile, and the two together reach Agora above
    its rate. A lease is good for LEASE_SECONDS from when it was asked for."""
    # The bucket's start, the acquire's (its wait is timed), then the lease is asked for at 0.0 ...
    moments = iter([0.0, 0.0, 0.0])

    def clock() -> float:
        return next(moments, LEASE_SECONDS * 5)  # ... and granted half a second later

    slept: list[float] = []
    stalled = SharedBudget(make_engine(database), RATE, clock=clock, sleep=stop_at_first_sleep(slept))
    try:
        with pytest.raises(Stop):
            stalled.acquire()  # background work: the late lease is dropped, it waits for the next
    finally:
        stalled.close()
    assert slept and slept[0] > 0


def test_an_outage_is_logged_once_and_its_end_once_with_how_long_it_lasted(database, caplog) -> None:
    """A database gone for minutes must not write a warning per second per instance:
    one line when the budget cannot be used, one when it can again, saying for how long."""
    engine = make_engine(database)
    time = FakeTime()

    def move_table(name: str, to: str) -> None:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {name} RENAME TO {to}"))

    def sleep(seconds: float) -> None:
        back = time.now < 5 <= time.now + seconds
        time.sleep(seconds)
        if back:  # five seconds on, the table comes back
            move_table("agora_budget_away", "agora_budget")

    shared = SharedBudget(engine, RATE, clock=time.clock, sleep=sleep)
    move_table("agora_budget", "agora_budget_away")
    try:
        with caplog.at_level(logging.INFO, logger="bot.shared_budget"):
            for _ in range(3):
                assert shared.acquire(max_wait=5.0)  # people's calls, on this process's own bucket
            shared.acquire()  # background work: retries every second until the budget is back
    finally:
        shared.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0] and "UndefinedTable" in lines[0]
    assert "reachable again" in lines[1]
    (gone,) = re.findall(r"after (\d+) s", lines[1])
    assert int(gone) >= 5


def no_sleep(seconds: float) -> None:
    """A reserved token's wait, not slept: these tests look at what is logged."""


def rate_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "AGORA_RATE_LIMIT" in record.getMessage()]


def test_instances_with_different_rates_each_warn_once_naming_both(database, caplog) -> None:
    """Each instance refills the one bucket at its own rate: one at 5/s and one at 40
    together make neither. Each says so once, however many calls follow."""
    slow = SharedBudget(make_engine(database), 5.0, sleep=no_sleep)
    fast = SharedBudget(make_engine(database), 40.0, sleep=no_sleep)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.shared_budget"):
            for _ in range(3):
                for instance in (slow, fast):
                    assert instance.acquire(max_wait=5.0)  # a person's call: a transaction each
    finally:
        slow.close()
        fast.close()
    lines = rate_warnings(caplog)
    assert len(lines) == 2, lines
    said = {re.search(r"this instance has \S+ another \S+", line).group() for line in lines}  # type: ignore[union-attr]
    assert said == {"this instance has 5/s, another 40/s;", "this instance has 40/s, another 5/s;"}


def test_instances_with_one_rate_and_an_old_rate_left_by_a_stopped_instance_warn_nothing(database, caplog) -> None:
    """The rate an instance stopped long ago wrote (before a restart with a new
    value) is no instance running now: no warning."""
    engine = make_engine(database)
    with engine.begin() as conn:
        conn.execute(text("UPDATE agora_budget SET rate = 5, updated_at = now() - interval '1 minute'"))
    one, two = (SharedBudget(make_engine(database), RATE, sleep=no_sleep) for _ in range(2))
    try:
        with caplog.at_level(logging.WARNING, logger="bot.shared_budget"):
            for _ in range(3):
                for instance in (one, two):
                    assert instance.acquire(max_wait=5.0)
    finally:
        one.close()
        two.close()
        engine.dispose()
    assert rate_warnings(caplog) == []
