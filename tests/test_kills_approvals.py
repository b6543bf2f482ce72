"""Gaps a mutation spot check found in the approval workflow's tests (issue 16): the
reject reason form's own genuineness, and an announcement that failed being tried once
per sweep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.settings import Settings
from bot.store.schema import change_requests
from bot.store.values import utcnow
from handlers.blocks import approval_card as card
from handlers.notify import Notifier
from recbot.app import sweep
from tests.approval_helpers import card_shown, click, request_storage_change
from tests.conftest import SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot

REASON = {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "wrong bucket"}}}


def test_a_reject_reason_form_that_is_not_genuine_is_refused_as_such(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    (row,) = bot.services.store.requests.open_requests()
    for forged in (row.id, f"{row.id}.{'0' * 32}", ""):  # the bare id, a bad MAC, nothing
        modal = {**opened.params["view"], "id": opened.params["_view_id"], "private_metadata": forged}
        answer = driver.submit("UBOB", modal, REASON).json()
        assert answer["response_action"] == "update", forged
        assert "This form is not genuine; nothing was done." in json.dumps(answer["view"]), forged
    bot.drain()
    (still,) = bot.services.store.requests.open_requests()
    assert still.state == "pending" and still.decided_by is None and still.reason is None
    assert slack.of("chat.update") == [] and card.BLOCK_BUTTONS in card_shown(slack, posted)


@pytest.fixture
def quiet_bot(settings: Settings) -> Iterator[RunningBot]:
    """No periodic sweep: only the sweeps a test runs itself."""
    running = start_bot(settings, fast_agora(settings), sweep_seconds=3600.0)
    yield running
    running.stop()


def test_an_announcement_that_fails_is_tried_once_per_sweep(quiet_bot, slack, agora) -> None:
    driver = SlackDriver(quiet_bot.url, SIGNING_SECRET, slack.response_url())
    posted = request_storage_change(driver, slack)
    quiet_bot.drain()
    store = quiet_bot.services.store
    with store.engine.begin() as conn:
        conn.execute(update(change_requests).values(expires_at=utcnow() - timedelta(seconds=1)))
    notifier = Notifier(quiet_bot.app.client, quiet_bot.services)
    slack.errors["chat.update"] = "internal_error"  # Slack's trouble, which may pass: tried again later

    sweep(quiet_bot.services, notifier)  # expires the request, and its announcement fails
    writes = [c for c in slack.of("chat.update") if c.params["ts"] == posted.params["_ts"]]
    assert len(writes) == 1  # once in this sweep, not again by its announcement step
    assert [r.id for r in store.announcements.unannounced_ends()] == [store.requests.in_state("expired")[0].id]

    del slack.errors["chat.update"]
    sweep(quiet_bot.services, notifier)
    assert "Expired" in card_shown(slack, posted) and store.announcements.unannounced_ends() == []
    assert len([c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]) == 1
