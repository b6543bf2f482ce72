"""When recbot's own rate limit would keep a person waiting (a long 429 pause,
a slow rate), the person is told at once (for a 429's pause, how long it has left), nothing is sent
to Agora for them, and the bot keeps serving; background work (the fleet
scan, the drift watch, an approved change, the sweep) waits its turn instead.
The limiter's clock is the test's: time moves only when the test says so, or
by as long as background work sleeps on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.agora import AgoraClient
from bot.models import Target
from bot.ratelimit import TokenBucket
from handlers.blocks import approval_card as card
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID, SIGNING_SECRET
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fake_time import FakeTime
from tests.test_picker import pick_block, suggest

# A 429's pause, Agora's own, in every test here: the person is told how long it has left.
BUSY = "Agora asked recbot to slow down (it answered 429, too many requests): nothing was sent; try again in "
LIVE = Target(app_id=APP_ID, entry_point="live", region="na")


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limiter(clock: FakeTime) -> TokenBucket:
    # Background waits are not slept: they move the test's clock on instead.
    return TokenBucket(40, clock=clock.clock, sleep=clock.sleep)


@pytest.fixture
def busy_bot(settings, limiter: TokenBucket) -> Iterator[RunningBot]:
    client = AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        backoff_base=0.01,
        read_timeout=5,
        limiter=limiter,
    )
    running = start_bot(settings, client)
    yield running
    running.stop()


@pytest.fixture
def busy_driver(busy_bot: RunningBot, slack) -> SlackDriver:
    return SlackDriver(busy_bot.url, SIGNING_SECRET, slack.response_url())


def test_get_during_a_long_pause_says_busy_sends_nothing_and_the_bot_keeps_serving(
    busy_driver, busy_bot, slack, agora, limiter, clock
) -> None:
    limiter.pause(60)  # a 429 elsewhere in the process asked for a minute
    busy_driver.command("get live na")
    (answer,) = slack.wait_for("response_url")
    assert BUSY + "60 s." in text_of(answer) and answer.params["response_type"] == "ephemeral"
    busy_bot.drain()
    assert agora.calls() == []
    clock.now = 61.0  # the pause is over
    busy_driver.command("get live na")
    assert "rec-bucket" in text_of(slack.wait_for("response_url", count=2)[1])
    assert len(agora.calls("GET")) == 1


def test_set_during_a_long_pause_shows_busy_in_the_form(busy_driver, busy_bot, slack, agora, limiter) -> None:
    limiter.pause(60)
    busy_driver.command("set live na")
    slack.wait_for("views.open")  # the loading view opens at once, as always
    (updated,) = slack.wait_for("views.update")
    assert BUSY in text_of(updated)
    busy_bot.drain()
    assert agora.calls() == []


def test_list_and_the_picker_during_a_long_pause(busy_driver, busy_bot, slack, agora, limiter) -> None:
    limiter.pause(60)
    busy_driver.command("list all")
    busy_bot.drain()
    answers = slack.of("response_url")
    assert BUSY in text_of(answers[-1]) and answers[-1].params["replace_original"]
    busy_driver.command("set")
    (opened,) = slack.wait_for("views.open")
    block_id = pick_block(opened.params["view"]["blocks"])["block_id"]
    assert suggest(busy_driver, block_id, "li") == []  # answered at once, within Slack's 3 s
    busy_bot.drain()
    assert agora.calls() == []


def test_an_approval_during_a_long_pause_waits_its_turn_and_is_applied(
    busy_driver, busy_bot, slack, agora, limiter
) -> None:
    """The apply runs after the ack and nobody can ask for it again: its read, PATCH and
    read-back wait their turn, where a person's own call would be refused as busy."""
    posted = request_storage_change(busy_driver, slack)
    limiter.pause(60)
    click(busy_driver, posted, "UBOB", card.ACTION_APPROVE)
    notice = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")[0]
    assert "Applied" in text_of(notice) and BUSY not in text_of(notice)
    busy_bot.drain()
    # The form's read, the submit's, the apply's and the read-back.
    assert len(agora.calls("PATCH")) == 1 and len(agora.calls("GET")) == 4
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["bucket"] == "hw-bucket"
    assert busy_bot.services.store.requests.in_state("applied")


def test_the_sweep_reconciles_an_interrupted_apply_during_a_long_pause(busy_driver, busy_bot, slack, agora, limiter):
    """An apply left half done is read back by the sweep, background work that waits its turn."""
    request_storage_change(busy_driver, slack)
    store = busy_bot.services.store
    (row,) = store.requests.open_requests()
    assert store.requests.transition(row.id, "pending", "approve", decided_by="UBOB")
    assert store.requests.transition(row.id, "approved", "claim")  # interrupted before the PATCH
    limiter.pause(60)
    (ended,) = busy_bot.services.approvals.recover(timedelta(0))
    assert ended.state == "failed" and ended.result == "Interrupted while applying and not in effect; not sent again."
    assert agora.calls("PATCH") == []


class TestSwitchThroughApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_an_approved_pause_during_a_long_pause_waits_its_turn_and_is_sent(
        self, busy_driver, busy_bot, slack, agora, limiter
    ) -> None:
        busy_driver.command("pause live")
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "CAPPROVE")[0]
        limiter.pause(60)
        click(busy_driver, posted, "UBOB", card.ACTION_APPROVE)
        notice = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")[0]
        assert "Applied" in text_of(notice) and "Paused" in text_of(notice) and BUSY not in text_of(notice)
        busy_bot.drain()
        assert [c.json() for c in agora.calls("PATCH")] == [{"enabled": False}]
        assert agora.switch(APP_ID, "live") is False


def test_the_scan_and_the_drift_watch_wait_their_turn(busy_bot, agora, limiter) -> None:
    services = busy_bot.services
    services.read_config(LIVE)  # remembered: the drift watch reads it again
    limiter.pause(60)
    scan = services.fleet.scan(APP_ID, ["live"], ("na", "eu"))
    assert [(row.region, row.error, row.missing) for row in scan.rows] == [("na", None, False), ("eu", None, True)]
    services.drift.run()
    reads = [c for c in agora.calls("GET") if c.path.endswith("/regions/na")]
    assert len(reads) == 3  # the person's read, the scan's, the watch's: the background ones were not refused
