"""The Agora rate limiter: two lanes, people first; a rule for every arrival
pattern, thread-safe, paused by a 429 for every thread, and under Agora's 50
per second end to end. The lanes' rules are checked on the bucket's state
alone (Budget), with the test's clock."""

from __future__ import annotations

import threading
import time as real_time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.agora import AgoraClient, AgoraError
from bot.fleet import SCAN_WORKERS
from bot.models import Target
from bot.ratelimit import Budget, TokenBucket
from tests.conftest import APP_ID, fast_agora
from tests.fake_time import FakeTime
from tests.fakes.agora import Fault


@given(
    rate=st.floats(min_value=1, max_value=200),
    gaps=st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=300),
)
def test_no_one_second_window_holds_more_than_rate_plus_burst(rate: float, gaps: list[float]) -> None:
    time = FakeTime()
    bucket = TokenBucket(rate, clock=time.clock, sleep=time.sleep)
    granted = []
    for gap in gaps:
        time.now += gap
        granted.append(time.now + bucket.reserve())
    assert granted == sorted(granted)  # served in order of arrival
    for i, start in enumerate(granted):
        in_window = sum(1 for t in granted[i:] if t < start + 1.0 - 1e-9)
        assert in_window <= rate + bucket.capacity + 1e-6


def test_concurrent_callers_each_get_their_own_token() -> None:
    time = FakeTime()  # frozen: every reservation must queue behind the others
    bucket = TokenBucket(40, clock=time.clock, sleep=time.sleep)
    with ThreadPoolExecutor(8) as pool:
        delays = sorted(pool.map(lambda _: bucket.reserve(), range(400)))
    expected = sorted(max(0.0, (k + 1 - bucket.capacity) / 40) for k in range(400))
    assert delays == expected


def test_a_429_pause_holds_every_caller_and_saves_no_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(40, clock=time.clock, sleep=time.sleep)  # full: a burst of 2 saved
    bucket.pause(2.0)
    time.now = 1.5  # callers arriving during the pause...
    during = [time.now + bucket.reserve() for _ in range(3)]
    time.now = 2.0  # ...and at the moment it ends
    after = [time.now + bucket.reserve() for _ in range(3)]
    # One token per 1/40 s from the end of the pause: the saved burst is gone, not spent at once.
    assert during + after == pytest.approx([2.0 + k / 40 for k in range(1, 7)])
    time.now = 10.0  # long after: the bucket refilled to its burst, no more
    assert [bucket.reserve() for _ in range(int(bucket.capacity))] == [0.0] * int(bucket.capacity)
    assert bucket.reserve() > 0


@given(
    rate=st.floats(min_value=1, max_value=200),
    pause=st.floats(min_value=0, max_value=60),
    idle=st.floats(min_value=0, max_value=10),
    arrival=st.floats(min_value=0, max_value=1),
    callers=st.integers(min_value=1, max_value=20),
)
def test_after_any_pause_tokens_come_one_at_a_time(
    rate: float, pause: float, idle: float, arrival: float, callers: int
) -> None:
    """Whatever was saved before a 429 (a full bucket after `idle`), the k-th
    caller from the end of the pause gets its token k/rate after it."""
    time = FakeTime()
    bucket = TokenBucket(rate, clock=time.clock, sleep=time.sleep)
    time.now = idle
    bucket.pause(pause)
    end = idle + pause
    time.now = idle + arrival * pause  # anywhere from the 429 to the end of the pause
    granted = [time.now + bucket.reserve() for _ in range(callers)]
    assert granted == pytest.approx([end + k / rate for k in range(1, callers + 1)], rel=1e-9, abs=1e-9)


def test_a_bounded_wait_is_refused_at_once_and_takes_no_token() -> None:
    time = FakeTime()
    bucket = TokenBucket(1, clock=time.clock, sleep=time.sleep)
    assert bucket.acquire(max_wait=0.5)  # the saved token: no wait
    assert not bucket.acquire(max_wait=0.5)  # the next is 1 s away: refused, not slept
    assert time.slept == []
    assert bucket.reserve() == 1.0  # the refusal took nothing: the next caller is first in line
    bucket.pause(30)
    assert not bucket.acquire(max_wait=5)  # a long 429 pause: refused too
    assert bucket.acquire()  # without a bound (background work): waits it out
    assert time.slept == [pytest.approx(32.0)]


@given(
    rate=st.floats(min_value=1, max_value=200),
    arrivals=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.2), st.none() | st.floats(min_value=0, max_value=2)),
        min_size=1,
        max_size=200,
    ),
)
def test_bounded_waits_never_exceed_their_bound_nor_the_rate(
    rate: float, arrivals: list[tuple[float, float | None]]
) -> None:
    time = FakeTime()
    bucket = TokenBucket(rate, clock=time.clock, sleep=time.sleep)
    granted = []
    for gap, max_wait in arrivals:
        time.now += gap
        delay = bucket.reserve(max_wait)
        if delay is not None:
            assert max_wait is None or delay <= max_wait
            granted.append(time.now + delay)
    assert granted == sorted(granted)
    for i, start in enumerate(granted):
        in_window = sum(1 for t in granted[i:] if t < start + 1.0 - 1e-9)
        assert in_window <= rate + bucket.capacity + 1e-6


def test_background_never_takes_a_token_a_waiting_person_is_owed() -> None:
    budget = Budget(rate=10, capacity=1, tokens=1, updated=0.0)
    assert budget.take(0.0) == (1, pytest.approx(0.1))  # background takes the one token there is
    assert budget.reserve(0.0, max_wait=5) == pytest.approx(0.1)  # a person: the next one, due at 0.1
    for now in (0.05, 0.1, 0.15):  # that token exists from 0.1, but it is the person's
        taken, wait = budget.take(now)
        assert taken == 0 and now + wait == pytest.approx(0.2)
    assert budget.take(0.2)[0] == 1  # the token after it is background's again


def test_background_takes_only_whole_tokens_that_exist_now() -> None:
    budget = Budget(rate=10, capacity=5, tokens=0, updated=0.0)
    assert budget.take(0.25, want=10) == (2, pytest.approx(0.05))  # 2.5 accrued: two whole ones, no more
    assert budget.take(0.3, want=1) == (1, pytest.approx(0.1))
    assert budget.take(10.0, want=10)[0] == 5  # never more than the capacity, however long it sat


# An event: (gap before it, what): ("person", max_wait) reserves, ("background", want) takes, ("429", seconds) pauses.
PERSON = st.tuples(st.just("person"), st.none() | st.floats(min_value=0, max_value=2))
BACKGROUND = st.tuples(st.just("background"), st.integers(min_value=1, max_value=20))
PAUSE = st.tuples(st.just("429"), st.floats(min_value=0, max_value=3))


def run_schedule(budget: Budget, events: list[tuple[float, tuple[str, object]]]) -> list[tuple[str, float, float]]:
    """Every grant of the schedule, in order: (lane, asked at, granted at)."""
    now, grants = 0.0, []
    for gap, (what, arg) in events:
        now += gap
        if what == "person":
            delay = budget.reserve(now, arg)  # type: ignore[arg-type]
            if delay is not None:
                grants.append(("person", now, now + delay))
        elif what == "background":
            grants += [("background", now, now)] * budget.take(now, arg)[0]  # type: ignore[arg-type]
        else:
            budget.pause(now, arg)  # type: ignore[arg-type]
    return grants


@given(
    rate=st.floats(min_value=1, max_value=200),
    capacity=st.floats(min_value=1, max_value=20),
    events=st.lists(st.tuples(st.floats(min_value=0, max_value=0.2), PERSON | BACKGROUND | PAUSE), max_size=200),
    window=st.sampled_from([0.05, 0.1, 0.5, 1.0, 3.0]),
)
def test_over_any_schedule_grants_in_a_window_stay_within_rate_times_window_plus_capacity(
    rate: float, capacity: float, events: list[tuple[float, tuple[str, object]]], window: float
) -> None:
    grants = [granted for _lane, _asked, granted in run_schedule(Budget(rate, capacity, capacity, 0.0), events)]
    assert grants == sorted(grants)  # served in the order asked: background never jumps a person's reservation
    for i, start in enumerate(grants):
        in_window = sum(1 for t in grants[i:] if t <= start + window + 1e-9)
        assert in_window <= rate * window + capacity + 1e-6


@given(
    rate=st.floats(min_value=1, max_value=200),
    capacity=st.floats(min_value=1, max_value=20),
    events=st.lists(st.tuples(st.floats(min_value=0, max_value=0.2), PERSON | BACKGROUND), max_size=200),
)
def test_a_person_waits_at_most_one_interval_behind_the_people_ahead_whatever_background_takes(
    rate: float, capacity: float, events: list[tuple[float, tuple[str, object]]]
) -> None:
    grants = run_schedule(Budget(rate, capacity, 0.0, 0.0), events)
    reserved = [(asked, granted) for lane, asked, granted in grants if lane == "person"]
    for i, (asked, granted) in enumerate(reserved):
        ahead = sum(1 for _, due in reserved[:i] if due > asked)  # people's calls still waiting when it asked
        assert granted - asked <= (1 + ahead) / rate + 1e-9


def test_eight_background_threads_saturating_the_bucket_leave_a_person_one_interval() -> None:
    """On the real clock, against eight background callers taking every token they
    can: each of a person's reservations is at most one token interval away."""
    rate = 200.0
    bucket = TokenBucket(rate)
    stop = threading.Event()
    taken = [0] * 8

    def background(worker: int) -> None:
        while not stop.is_set():
            bucket.acquire()
            taken[worker] += 1

    threads = [threading.Thread(target=background, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        real_time.sleep(0.2)  # the saved burst is spent: the background lane is saturating the bucket
        delays = []
        for _ in range(40):
            delay = bucket.reserve(max_wait=5)
            assert delay is not None
            delays.append(delay)
            real_time.sleep(delay + 0.01)  # the person's call is made; background work goes on
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert max(delays) <= 1 / rate + 1e-9
    assert all(count > 0 for count in taken)  # every background caller was served in turn


def test_background_alone_gets_the_whole_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(40, clock=time.clock, sleep=time.sleep)
    for _ in range(402):
        bucket.acquire()
    assert time.now == pytest.approx(400 / 40)  # the saved burst of 2, then one token every 1/40 s


def test_a_scan_at_the_default_rate_gets_no_429_from_a_50_per_second_agora(settings, agora) -> None:
    agora.per_second_limit = 50
    for i in range(80):
        agora.put(APP_ID, f"ep{i}", "na", {"mp4Config": {"enabled": True}})
    client = fast_agora(settings)  # AGORA_RATE_LIMIT's default, 40
    try:
        # As the fleet scan reads: what Agora sees exceeds the bucket only by calls granted and not yet sent.
        with ThreadPoolExecutor(SCAN_WORKERS) as pool:
            configs = list(pool.map(lambda i: read_or_none(client, f"ep{i}"), range(80)))
    finally:
        client.close()
    assert len(configs) == 80 and all(c is not None and c.mp4 for c in configs)
    assert agora.rate_limited == 0


def test_without_the_limiter_the_same_scan_is_refused(settings, agora) -> None:
    """The control: the emulator does refuse a burst, so the test above could fail."""
    agora.per_second_limit = 50
    for i in range(80):
        agora.put(APP_ID, f"ep{i}", "na", {})
    unlimited = client_for(settings, max_retries=0)
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: read_or_none(unlimited, f"ep{i}"), range(80)))
    finally:
        unlimited.close()
    assert agora.rate_limited > 0


def test_a_429_slows_every_thread_of_the_process(settings, agora) -> None:
    slept: list[float] = []
    bucket = TokenBucket(40, sleep=slept.append)
    agora.inject(Fault(429, headers={"Retry-After": "3"}, method="GET"))
    client = client_for(settings, limiter=bucket, sleep=slept.append)
    try:
        client.get_config(Target(app_id=APP_ID, entry_point="live", region="na"))  # a 429, then served
        others_wait = bucket.reserve()  # another thread's next call
    finally:
        client.close()
    assert max(slept) >= 2.9  # the retry waited for Retry-After...
    assert others_wait >= 2.5  # ...and so does every other caller of the process


def client_for(settings, **options) -> AgoraClient:
    return AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        **options,
    )


def read_or_none(client: AgoraClient, entry_point: str) -> object:
    try:
        return client.get_config(Target(app_id=APP_ID, entry_point=entry_point, region="na"))
    except AgoraError:  # the 429s are what this control counts
        return None
