"""One scripted day of a running bot, scraped before and after: two gets, a direct change, a
storage change approved by a second person, a storage check that refuses the keys, a 429 from
Agora, and a drift alert. Every counter that moved, moved by exactly what happened; nothing
else moved."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from handlers.blocks import approval_card as card
from tests.approval_helpers import click
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.fakes.agora import Fault
from tests.metrics_helpers import Scrape, moved, scrape
from tests.test_change_flow import open_form, state

BUCKET = "sequence-bucket"
# Counters (and histograms' counts) this file accounts for in full: whatever moved is listed below.
ACCOUNTED = {
    "recbot_commands_total",
    "recbot_agora_requests_total",
    "recbot_agora_rate_limited_total",
    "recbot_agora_retries_total",
    "recbot_change_request_transitions_total",
    "recbot_applies_total",
    "recbot_change_request_decision_seconds_count",
    "recbot_storage_checks_total",
    "recbot_drift_passes_total",
    "recbot_bulk_targets_total",
    "recbot_ack_seconds_count",
    "recbot_answer_seconds_count",
    "recbot_slack_rate_limited_total",
}


@pytest.fixture(scope="module")
def s3(moto_s3):
    moto_s3.bucket(BUCKET)
    return moto_s3


@pytest.fixture(scope="module")
def keys(s3):
    return s3.user("sequence-writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], s3) -> dict[str, Any]:
    return {**settings_overrides, "RECBOT_STORAGE_PROBE": "require", "RECBOT_STORAGE_ENDPOINT_OVERRIDE": s3.url}


def accounted(before: Scrape, after: Scrape) -> dict[str, float]:
    """What moved among ACCOUNTED's series, each named `name{label=value,...}`."""
    return {
        name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}": delta
        for (name, labels), delta in moved(before, after).items()
        if name in ACCOUNTED
    }


def get(driver, slack, bot) -> None:
    answered = len(slack.of("response_url"))
    assert driver.command("get live na").status_code == 200
    slack.wait_for("response_url", count=answered + 1)
    bot.drain()


def submit(driver, slack, bot, **values: Any) -> None:
    """`/recording set live na`, the form submitted with `values`, drawn to its final view."""
    view = open_form(driver, slack)
    updates = len(slack.of("views.update"))
    assert driver.submit("UALICE", view, state(**values)).status_code == 200
    slack.wait_for("views.update", count=updates + 1)
    bot.drain()


def test_a_scripted_sequence_moves_each_counter_by_exactly_what_happened(bot, driver, slack, agora, keys) -> None:
    before = scrape(bot.metrics_url)

    get(driver, slack, bot)
    get(driver, slack, bot)  # the first read made recbot remember live/na: the drift watch reads it
    submit(driver, slack, bot, mp4=True, hls=True)  # no credentials: applied directly

    cards = len(slack.of("chat.postMessage"))
    storage = {"change": True, "vendor": 1, "region": 0, "bucket": BUCKET, "access": keys.access}
    submit(driver, slack, bot, **storage, secret=keys.secret)  # the check passes: a request
    posted = slack.wait_for("chat.postMessage", count=cards + 1, where=lambda c: c.params.get("channel") == "CAPPROVE")
    click(driver, posted[-1], "UBOB", card.ACTION_APPROVE)
    bot.drain()

    submit(driver, slack, bot, **storage, secret="not-the-secret-0123456789")  # the check refuses: nothing asked

    agora.inject(Fault(429, method="GET", headers={"Retry-After": "0"}))
    get(driver, slack, bot)  # 429, then answered

    outside = {**copy.deepcopy(LIVE_CONFIG), "mp4Config": {"enabled": False}}
    agora.put(APP_ID, "live", "na", outside)
    (opened,) = bot.services.drift.run()
    assert opened.kind == "opened"

    after = scrape(bot.metrics_url)
    assert accounted(before, after) == {
        "recbot_commands_total{outcome=ok,verb=get}": 3,
        "recbot_commands_total{outcome=ok,verb=set}": 3,
        # 3 gets (one answered 429 first), 3 forms opened and 3 submitted (each reads the live
        # configuration: is the form stale?), the direct change's read-back, the approved change's
        # live read and read-back, and the drift pass's read.
        "recbot_agora_requests_total{method=GET,status_class=2xx}": 3 + 3 + 3 + 1 + 2 + 1,
        "recbot_agora_requests_total{method=GET,status_class=4xx}": 1,
        "recbot_agora_requests_total{method=PATCH,status_class=2xx}": 2,
        "recbot_agora_rate_limited_total{}": 1,
        "recbot_agora_retries_total{}": 1,
        "recbot_change_request_transitions_total{event=create,state=pending}": 1,
        "recbot_change_request_transitions_total{event=approve,state=approved}": 1,
        "recbot_change_request_transitions_total{event=claim,state=applying}": 1,
        "recbot_change_request_transitions_total{event=confirm,state=applied}": 1,
        "recbot_applies_total{outcome=applied}": 2,
        "recbot_change_request_decision_seconds_count{decision=approved}": 1,
        # at the request, and again just before the approved change is applied
        "recbot_storage_checks_total{outcome=ok,vendor=amazon_s3}": 2,
        "recbot_storage_checks_total{outcome=refused,vendor=amazon_s3}": 1,
        "recbot_drift_passes_total{outcome=done}": 1,
        # every Slack request acked once: 6 commands, 3 forms submitted, 1 click
        "recbot_ack_seconds_count{kind=command}": 6,
        "recbot_ack_seconds_count{kind=view}": 3,
        "recbot_ack_seconds_count{kind=action}": 1,
        "recbot_answer_seconds_count{verb=get}": 3,
        "recbot_answer_seconds_count{verb=set}": 3,
    }
    assert after.value("recbot_drift_alerts_open") == 1
    assert after.value("recbot_change_requests_open", state="pending") == 0
