"""Upstream faults: Slack's rate limits are retried by slack_sdk; an approved
change never ends silently, whatever Agora does."""

from __future__ import annotations

import pytest

from handlers.blocks import approval_card as card
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID, SIGNING_SECRET
from tests.driver import SlackDriver, bot_with_agora_timing
from tests.fakes.agora import Fault


def test_slack_429_on_chat_post_message_is_retried_and_delivered(driver, slack, agora) -> None:
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    posted = request_storage_change(driver, slack)
    assert [c.method for c in slack.calls if c.method.startswith("chat.postMessage")][:2] == [
        "chat.postMessage:rate_limited",
        "chat.postMessage",
    ]
    assert posted.params["channel"] == "CAPPROVE"


def test_slack_connection_drop_is_retried_and_delivered(driver, slack, agora) -> None:
    slack.hang_ups["chat.postMessage"] = 1
    posted = request_storage_change(driver, slack)
    assert [c.method for c in slack.calls if c.method.startswith("chat.postMessage")][:2] == [
        "chat.postMessage:dropped",
        "chat.postMessage",
    ]
    assert posted.params["channel"] == "CAPPROVE"


@pytest.fixture
def impatient_bot(settings):
    """A bot whose Agora client gives up on a silent PATCH quickly."""
    bot = bot_with_agora_timing(settings, read_timeout=0.3, backoff_base=0.01)
    yield bot
    bot.stop()


def test_approved_change_whose_patch_always_times_out_ends_failed_and_told(impatient_bot, slack, agora) -> None:
    driver = SlackDriver(impatient_bot.url, SIGNING_SECRET, slack.response_url())
    posted = request_storage_change(driver, slack)
    agora.inject(*[Fault(200, delay=0.6, method="PATCH")] * 4)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (ended,) = slack.wait_for("chat.update", where=lambda c: "Failed" in text_of(c))
    assert card.BLOCK_BUTTONS not in text_of(ended)
    assert "not applied: Agora did not answer the change (timed out)" in text_of(ended)
    assert "reading it back shows the configuration as it was" in text_of(ended)
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    assert "Failed" in text_of(notice)
    assert len(agora.calls("PATCH")) == 4  # the first try and three retries, then given up
    (row,) = impatient_bot.services.store.requests.in_state("failed")
    assert row.sealed_patch is None
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["bucket"] == "rec-bucket"


def test_patch_that_landed_despite_timeouts_ends_applied(impatient_bot, slack, agora) -> None:
    driver = SlackDriver(impatient_bot.url, SIGNING_SECRET, slack.response_url())
    posted = request_storage_change(driver, slack)
    agora.inject(*[Fault(lands=True, delay=0.6, method="PATCH")] * 4)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (ended,) = slack.wait_for("chat.update", where=lambda c: card.BLOCK_BUTTONS not in text_of(c))
    assert "Applied" in text_of(ended)
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["bucket"] == "hw-bucket"


@pytest.fixture
def hurried_bot(settings):
    """A bot whose Agora client times out in 0.3 s and sends a person's call again only within 0.2 s."""
    bot = bot_with_agora_timing(settings, read_timeout=0.3, retry_window=0.2)
    yield bot
    bot.stop()


def test_a_persons_get_on_a_hung_agora_is_answered_after_one_timeout(hurried_bot, slack, agora) -> None:
    driver = SlackDriver(hurried_bot.url, SIGNING_SECRET, slack.response_url())
    agora.inject(*[Fault(200, delay=1.0, method="GET")] * 4)
    assert driver.command("get live na").status_code == 200
    (answer,) = slack.wait_for("response_url")
    assert "Agora is not answering properly right now (timed out)" in text_of(answer)
    assert len(agora.calls("GET")) == 1  # not three more timeouts while the person waits


def test_a_get_whose_answer_holds_no_configuration_says_so_instead_of_showing_it_all_off(driver, slack, agora):
    agora.put(APP_ID, "odd", "na", {"message": "surprise"})
    assert driver.command("get odd na").status_code == 200
    (answer,) = slack.wait_for("response_url")
    assert "Agora is not answering properly right now (unexpected answer" in text_of(answer)
    assert "Recording configuration" not in text_of(answer)
