"""What recbot counts of its calls to Agora, of its rate limiter and of its storage checks:
each counter moves by exactly what happened (scraped before and after), driven with signed
Slack requests against the Agora fake and moto's S3 server; the limiters' wait observations
are checked on their fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.agora import AgoraClient, sending, sent_a_change
from bot.metrics import Metrics
from bot.models import StorageConfig
from bot.probe import Prober
from bot.ratelimit import TokenBucket
from bot.shared_budget import SharedBudget
from bot.store import open_store
from bot.store.engine import make_engine
from tests.conftest import SIGNING_SECRET
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fake_time import FakeTime
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import FakeSlack
from tests.job_helpers import wait_until
from tests.metrics_helpers import Scrape, moved, scrape
from tests.switch_helpers import run
from tests.test_change_flow import open_form, state
from tests.test_kills_budget2 import fill

REQUESTS = "recbot_agora_requests_total"
RATE_LIMITED = "recbot_agora_rate_limited_total"
RETRIES = "recbot_agora_retries_total"
WAITS = "recbot_agora_limiter_wait_seconds"
TOKENS = "recbot_agora_limiter_tokens"
CHECKS = "recbot_storage_checks_total"
CHECK_SECONDS = "recbot_storage_check_seconds"


def agora_moves(before: Scrape, after: Scrape) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What moved of the Agora call counters (the limiter's histogram apart)."""
    counters = (REQUESTS, RATE_LIMITED, RETRIES)
    return {k: v for k, v in moved(before, after).items() if k[0] in counters}


def calls(method: str, status_class: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (REQUESTS, frozenset({("method", method), ("status_class", status_class)}))


def plain(name: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset())


def get_answered(bot: RunningBot, driver: SlackDriver, slack: FakeSlack) -> str:
    """Run `/recording get live na` to its end; the answer's text."""
    before = len(slack.of("response_url"))
    assert driver.command("get live na").status_code == 200
    answer = slack.wait_for("response_url", count=before + 1)[before]
    bot.drain()
    return json.dumps(answer.params)


def waits(found: Scrape, lane: str) -> float:
    return found.value(f"{WAITS}_count", lane=lane)


# Through the bot: every attempt, by method and status class.


def test_a_get_counts_one_2xx_get_and_one_interactive_wait(bot, driver, slack, agora: AgoraEmulator) -> None:
    before = scrape(bot.metrics_url)
    assert "rec-bucket" in get_answered(bot, driver, slack)
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {calls("GET", "2xx"): 1}
    assert waits(after, "interactive") - waits(before, "interactive") == 1
    assert waits(after, "background") == waits(before, "background")


def test_a_5xx_then_an_answer_counts_both_attempts_and_one_retry(bot, driver, slack, agora) -> None:
    agora.inject(Fault(503, method="GET"))
    before = scrape(bot.metrics_url)
    assert "rec-bucket" in get_answered(bot, driver, slack)
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {calls("GET", "5xx"): 1, calls("GET", "2xx"): 1, plain(RETRIES): 1}
    assert waits(after, "interactive") - waits(before, "interactive") == 2  # each attempt waits for its token
    assert len(agora.calls("GET")) == 2


def test_5xx_to_the_last_retry_counts_every_attempt(bot, driver, slack, agora) -> None:
    agora.inject(*[Fault(502, method="GET")] * 4)
    before = scrape(bot.metrics_url)
    assert "not answering properly" in get_answered(bot, driver, slack)
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {calls("GET", "5xx"): 4, plain(RETRIES): 3}


def test_a_429_counts_as_4xx_and_rate_limited_and_its_resend_as_a_retry(bot, driver, slack, agora) -> None:
    agora.inject(Fault(429, headers={"Retry-After": "0"}, message="Too Many Requests", method="GET"))
    before = scrape(bot.metrics_url)
    assert "rec-bucket" in get_answered(bot, driver, slack)
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {
        calls("GET", "4xx"): 1,
        calls("GET", "2xx"): 1,
        plain(RATE_LIMITED): 1,
        plain(RETRIES): 1,
    }


def test_a_404_is_an_answer_counted_once_and_not_retried(bot, driver, slack, agora) -> None:
    before = scrape(bot.metrics_url)
    assert driver.command("get nosuch na").status_code == 200
    slack.wait_for("response_url")
    bot.drain()
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {calls("GET", "4xx"): 1}


@pytest.fixture
def impatient_bot(settings) -> Iterator[RunningBot]:
    """A bot whose Agora client gives up on a silent answer quickly (its own limiter)."""
    client = AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        read_timeout=0.3,
        backoff_base=0.01,
        limiter=TokenBucket(settings.AGORA_RATE_LIMIT),
    )
    running = start_bot(settings, client)
    yield running
    running.stop()


def test_an_answer_that_never_comes_counts_as_none_and_the_resend_as_a_retry(impatient_bot, slack, agora) -> None:
    driver = SlackDriver(impatient_bot.url, SIGNING_SECRET, slack.response_url())
    agora.inject(Fault(200, delay=0.6, method="GET"))
    before = scrape(impatient_bot.metrics_url)
    assert "rec-bucket" in get_answered(impatient_bot, driver, slack)
    after = scrape(impatient_bot.metrics_url)
    assert agora_moves(before, after) == {calls("GET", "none"): 1, calls("GET", "2xx"): 1, plain(RETRIES): 1}
    assert waits(after, "interactive") - waits(before, "interactive") == 2  # the client's own limiter counts too


# The limiter through the bot: a person refused during a 429's pause, and the tokens gauge.


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def paced_bot(settings, clock: FakeTime) -> Iterator[tuple[RunningBot, TokenBucket]]:
    limiter = TokenBucket(40, clock=clock.clock, sleep=clock.sleep)  # a burst of 2 tokens
    client = AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        backoff_base=0.01,
        read_timeout=5,
        limiter=limiter,
    )
    running = start_bot(settings, client)
    yield running, limiter
    running.stop()


def test_a_person_refused_by_the_limiter_sends_nothing_and_is_observed_above_the_wait_limit(
    paced_bot, slack, agora, clock
) -> None:
    bot, limiter = paced_bot
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    before = scrape(bot.metrics_url)
    assert before.value(TOKENS) == 2  # a full burst, read from the bot's limiter at the scrape
    limiter.pause(60)
    assert scrape(bot.metrics_url).value(TOKENS) == 0
    assert "try again in 60 s" in get_answered(bot, driver, slack)
    after = scrape(bot.metrics_url)
    assert agora_moves(before, after) == {}
    assert agora.calls() == []
    assert waits(after, "interactive") - waits(before, "interactive") == 1
    # The wait it would have needed (60 s and a token): above every bucket, where refusals show.
    assert after.value(f"{WAITS}_bucket", lane="interactive", le="30.0") == before.value(
        f"{WAITS}_bucket", lane="interactive", le="30.0"
    )
    assert after.value(f"{WAITS}_sum", lane="interactive") - before.value(
        f"{WAITS}_sum", lane="interactive"
    ) == pytest.approx(60 + 1 / 40)
    clock.now = 61.0  # the pause is over: the burst is back
    assert scrape(bot.metrics_url).value(TOKENS) == 2


def test_a_switch_refused_by_the_limiter_sent_nothing_so_applies_nothing(paced_bot, slack, agora) -> None:
    bot, limiter = paced_bot
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    before = scrape(bot.metrics_url)
    limiter.pause(60)
    assert "try again in 60 s" in json.dumps(run(driver, slack, "pause live").params)
    commands = "recbot_commands_total"
    wait_until(lambda: scrape(bot.metrics_url).total(commands) > before.total(commands), "the command was counted")
    after = scrape(bot.metrics_url)
    assert agora.calls() == []
    assert after.total("recbot_applies_total") == before.total("recbot_applies_total")


# The limiters on their own, on the fake clock.


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_token_bucket_observes_each_wait_in_its_lane() -> None:
    time, metrics = FakeTime(), Metrics()
    bucket = TokenBucket(10, clock=time.clock, sleep=time.sleep, metrics=metrics)  # a burst of 1 token
    assert sample(metrics, TOKENS) == 1
    assert bucket.acquire(max_wait=5)  # the burst: no wait
    assert sample(metrics, TOKENS) == 0
    assert bucket.acquire(max_wait=5)  # the next token, due in 0.1 s
    assert bucket.acquire()  # background: the one after, 0.1 s later
    assert not bucket.acquire(max_wait=0.05)  # would need 0.1 s: refused, nothing taken
    assert time.slept == pytest.approx([0.1, 0.1])
    assert sample(metrics, f"{WAITS}_count", lane="interactive") == 3
    assert sample(metrics, f"{WAITS}_sum", lane="interactive") == pytest.approx(0.1 + 0.1)
    assert sample(metrics, f"{WAITS}_bucket", lane="interactive", le="0.0") == 1
    assert sample(metrics, f"{WAITS}_bucket", lane="interactive", le="0.05") == 1  # the refusal is above its limit
    assert sample(metrics, f"{WAITS}_count", lane="background") == 1
    assert sample(metrics, f"{WAITS}_sum", lane="background") == pytest.approx(0.1)
    time.now += 1.0
    assert sample(metrics, TOKENS) == 1  # read at each scrape, capped at the burst


def test_part_of_a_token_is_shown_as_none_until_it_is_whole() -> None:
    time, metrics = FakeTime(), Metrics()
    bucket = TokenBucket(10, clock=time.clock, sleep=time.sleep, metrics=metrics)
    assert bucket.acquire(max_wait=5)
    time.now += 0.05  # half a token: a person would still wait
    assert sample(metrics, TOKENS) == 0
    time.now += 0.05
    assert sample(metrics, TOKENS) == 1


def test_reading_the_tokens_takes_none() -> None:
    time = FakeTime()
    bucket = TokenBucket(10, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        assert bucket.available() == 1
    assert bucket.reserve(max_wait=0) == 0.0


def test_the_shared_budget_reports_its_lease_and_observes_its_waits(postgres_url: str) -> None:
    open_store(postgres_url).close()  # the schema, and the budget's row
    time, metrics = FakeTime(), Metrics()
    budget = SharedBudget(make_engine(postgres_url), 40, clock=time.clock, sleep=time.sleep, metrics=metrics)
    # Full, as after an idle while: the row accrues on the database's clock, which FakeTime does not
    # move, and a fresh row (empty) held two tokens for the second lease only when the test ran slowly.
    fill(postgres_url, budget.capacity)
    try:
        assert sample(metrics, TOKENS) == 0  # no lease yet: the database is not asked at a scrape
        asked = budget.transactions
        assert budget.acquire()  # background: leases one token (all it has used and waits for) and takes it
        assert sample(metrics, TOKENS) == 0
        assert budget.acquire()  # the next lease, a lease interval later: one used and one waited for
        assert budget.transactions == asked + 2
        assert sample(metrics, TOKENS) == 1  # what is left of the lease
        assert budget.transactions == asked + 2  # the scrapes asked the database nothing
        assert budget.acquire(max_wait=5)  # a person takes the leased token: no transaction, no wait
        assert budget.transactions == asked + 2
        assert sample(metrics, TOKENS) == 0
        budget.pause(60)  # a 429, for every instance
        assert not budget.acquire(max_wait=5)  # the database says: over a minute
        assert sample(metrics, f"{WAITS}_count", lane="background") == 2
        assert sample(metrics, f"{WAITS}_sum", lane="background") > 0  # the second waited for its lease
        assert sample(metrics, f"{WAITS}_count", lane="interactive") == 2
        assert sample(metrics, f"{WAITS}_bucket", lane="interactive", le="0.0") == 1
        assert sample(metrics, f"{WAITS}_bucket", lane="interactive", le="30.0") == 1  # the refusal: above
    finally:
        budget.close()


# Storage checks: one per check, by vendor key and verdict.

BUCKET = "metrics-bucket"


@pytest.fixture(scope="module")
def s3(moto_s3):
    moto_s3.bucket(BUCKET)
    return moto_s3


@pytest.fixture(scope="module")
def keys(s3):
    return s3.user("metrics-writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], request) -> dict[str, Any]:
    if "s3" not in request.fixturenames:
        return settings_overrides
    url = request.getfixturevalue("s3").url
    return {**settings_overrides, "RECBOT_STORAGE_PROBE": "require", "RECBOT_STORAGE_ENDPOINT_OVERRIDE": url}


def submit_storage(driver, slack, access: str, secret: str) -> None:
    """Submit a storage change to Amazon S3 and wait for the form's final state (the check is done)."""
    view = open_form(driver, slack)
    values = state(change=True, vendor=1, region=0, bucket=BUCKET, access=access, secret=secret)
    assert driver.submit("UALICE", view, values).status_code == 200
    slack.wait_for("views.update", count=2)


def check_moves(before: Scrape, after: Scrape) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {k: v for k, v in moved(before, after).items() if k[0] in (CHECKS, f"{CHECK_SECONDS}_count")}


def checked(outcome: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    vendor = ("vendor", "amazon_s3")
    return {(CHECKS, frozenset({vendor, ("outcome", outcome)})): 1, (f"{CHECK_SECONDS}_count", frozenset({vendor})): 1}


def test_keys_that_pass_count_one_ok_check(bot, driver, slack, s3, keys) -> None:
    before = scrape(bot.metrics_url)
    submit_storage(driver, slack, keys.access, keys.secret)
    bot.drain()
    assert check_moves(before, scrape(bot.metrics_url)) == checked("ok")


def test_keys_refused_count_one_refused_check(bot, driver, slack, s3, keys) -> None:
    before = scrape(bot.metrics_url)
    submit_storage(driver, slack, keys.access, "wrong-secret-value-0123456789")
    bot.drain()
    assert check_moves(before, scrape(bot.metrics_url)) == checked("refused")


def test_a_check_refused_before_connecting_counts_too_and_an_unknown_vendor_is_one_label() -> None:
    metrics = Metrics()
    prober = Prober(metrics=metrics)
    bad_bucket = StorageConfig.model_construct(vendor=1, region=0, bucket="No_Such", access_key=None, secret_key=None)
    assert prober.probe(bad_bucket).verdict == "refused"
    assert sample(metrics, CHECKS, vendor="amazon_s3", outcome="refused") == 1
    assert sample(metrics, f"{CHECK_SECONDS}_count", vendor="amazon_s3") == 1
    odd = StorageConfig.model_construct(vendor=42, region=0, bucket="b", access_key=None, secret_key=None)
    verdict = prober.probe(odd).verdict
    assert sample(metrics, CHECKS, vendor="unknown", outcome=verdict) == 1


def test_sending_says_whether_the_call_sent_a_change_and_keeps_the_requests_own_note() -> None:
    def patches() -> str:
        sent_a_change.set(True)
        return "patched"

    def reads() -> str:
        return "read"

    sent_a_change.set(False)
    assert sending(reads) == ("read", False) and sent_a_change.get() is False
    assert sending(patches) == ("patched", True) and sent_a_change.get() is True
    assert sending(reads) == ("read", False)  # this call sent nothing...
    assert sent_a_change.get() is True  # ...but the request had: its note stays
