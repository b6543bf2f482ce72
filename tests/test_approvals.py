"""The approval workflow end to end: two-person rule, sealed secrets,
exactly-once apply, expiry, restarts, audit trail, who may ask."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.seal import Sealer
from bot.store.schema import change_requests
from bot.store.values import utcnow
from handlers.blocks import approval_card as card
from tests.approval_helpers import (
    NEW_ACCESS,
    NEW_SECRET,
    button,
    card_shown,
    click,
    request_storage_change,
    text_of,
)
from tests.conftest import ACCESS_KEY, APP_ID, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.slack import Call
from tests.test_change_flow import final_view_text, open_form, state


def ended_card(slack, posted) -> str:
    (updated,) = slack.wait_for(
        "chat.update", where=lambda c: c.params["ts"] == posted.params["_ts"] and card.BLOCK_BUTTONS not in text_of(c)
    )
    return text_of(updated)


def requester_notice(slack, user: str = "UALICE") -> str:
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == user)
    return text_of(notice)


def ephemeral_replies(slack, count: int = 1) -> list[str]:
    return [text_of(c) for c in slack.wait_for("response_url", count=count)]


def test_storage_change_posts_card_and_sends_nothing_and_leaks_nothing(
    driver, slack, agora, bot, settings, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    posted = request_storage_change(driver, slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    text = text_of(posted)
    assert "<@UALICE>" in text and "Huawei Cloud" in text and "CN_North_1" in text
    assert "...1234 → ...9876" in text and "Secret key: set → changed" in text
    assert "Approve" in text and "Reject" in text and "Expires" in text
    everything = slack.payload_text() + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (NEW_SECRET, NEW_ACCESS, SECRET_KEY, ACCESS_KEY):
        assert secret not in everything
    database = Path(settings.DATABASE_URL.removeprefix("sqlite:///"))
    raw = database.read_bytes()
    for secret in (NEW_SECRET, NEW_ACCESS, SECRET_KEY, ACCESS_KEY):
        assert secret.encode() not in raw
    key_file = Path(str(database) + ".key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_requester_and_non_approver_are_refused(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UALICE", card.ACTION_APPROVE)
    ephemeral_replies(slack, 1)  # one at a time: answers leave from a pool, in either order
    click(driver, posted, "UMALLORY", card.ACTION_APPROVE)
    first, second = ephemeral_replies(slack, 2)
    assert "cannot approve your own" in first
    assert "Only the approvers" in second
    bot.drain()
    assert agora.calls("PATCH") == []


def test_approval_applies_once_with_both_keys_and_tells_everyone(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    outcome = ended_card(slack, posted)
    assert "Applied" in outcome and "<@UBOB>" in outcome
    assert "Applied" in requester_notice(slack)
    (patch,) = agora.calls("PATCH")
    assert patch.json() == {
        "storageConfig": {
            "vendor": 7,
            "region": 0,
            "bucket": "hw-bucket",
            "accessKey": NEW_ACCESS,
            "secretKey": NEW_SECRET,
        }
    }
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["secretKey"] == NEW_SECRET
    click(driver, posted, "UCAROL", card.ACTION_APPROVE)  # a late click on the old card
    assert "already applied" in ephemeral_replies(slack)[0]
    assert len(agora.calls("PATCH")) == 1
    (row,) = bot.services.store.requests.in_state("applied")
    assert row.sealed_patch is None


def test_reject_asks_for_a_reason_and_sends_nothing(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    modal = {**opened.params["view"], "id": "VREJECT"}
    empty = driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "  "}}}).json()
    assert empty["response_action"] == "errors" and card.BLOCK_REASON in empty["errors"]
    driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "wrong bucket"}}})
    assert "Rejected" in ended_card(slack, posted) and "wrong bucket" in requester_notice(slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    (row,) = bot.services.store.requests.in_state("rejected")
    assert row.sealed_patch is None and row.decided_by == "UBOB"


def test_a_reason_quoting_the_requests_keys_shows_neither_and_a_long_one_is_refused(
    driver, slack, agora, bot, caplog
) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    modal = {**opened.params["view"], "id": "VREJECT"}
    long = driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "x" * 501}}}).json()
    assert long["response_action"] == "errors" and "at most 500 characters" in long["errors"][card.BLOCK_REASON]
    assert bot.services.store.requests.open_requests()[0].state == "pending"
    said = f"the secret {NEW_SECRET} and access key {NEW_ACCESS.lower()} are a test pair".ljust(500, ".")  # the most
    driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": said}}})
    notice = requester_notice(slack)
    assert "the secret [redacted] and access key [redacted] are a test pair" in notice
    bot.drain()
    (row,) = bot.services.store.requests.in_state("rejected")
    history = [json.dumps(e.detail) for e in bot.services.store.audit.history(row.target)]
    assert any("a test pair" in h for h in history) and "a test pair" in (row.reason or "")
    shown = [ended_card(slack, posted), notice, row.reason or "", *history, caplog.text]
    assert not any(NEW_SECRET in text or NEW_ACCESS.lower() in text.lower() for text in shown)
    assert agora.calls("PATCH") == []


def test_a_request_whose_keys_cannot_be_opened_can_still_be_rejected(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    other = Sealer(Fernet.generate_key()).seal("{}")  # sealed under another RECBOT_SEAL_KEY
    with bot.services.store.engine.begin() as conn:
        conn.execute(change_requests.update().where(change_requests.c.id == row.id).values(sealed_patch=other))
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    modal = {**opened.params["view"], "id": opened.params["_view_id"]}
    driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "wrong bucket"}}})
    assert "wrong bucket" in requester_notice(slack)
    bot.drain()
    ended = bot.services.store.requests.get(row.id)
    assert ended.state == "rejected" and ended.reason == "wrong bucket" and ended.sealed_patch is None


def test_a_non_approver_cannot_reject_through_the_reason_modal(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    refusals = (("UMALLORY", "Only the approvers"), ("UALICE", "To withdraw your own request, use Cancel"))
    for count, (who, refusal) in enumerate(refusals, start=1):
        click(driver, posted, who, card.ACTION_REJECT)  # refused at once: nobody types a reason for nothing
        assert refusal in ephemeral_replies(slack, count)[-1]
    bot.drain()
    assert len(slack.of("views.open")) == 1  # the form's alone
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    modal = {**opened.params["view"], "id": opened.params["_view_id"]}
    reason = {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "I do not like it"}}}
    answer = driver.submit("UMALLORY", modal, reason).json()  # an approver's modal, submitted by another
    assert answer["response_action"] == "update" and "Only the approvers" in json.dumps(answer["view"])
    bot.drain()
    (row,) = bot.services.store.requests.open_requests()
    assert row.state == "pending" and row.decided_by is None and row.reason is None
    assert (
        slack.of("chat.update") == []
        and [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"] == []
    )
    assert "rejected" not in [e.event for e in bot.services.store.audit.history(row.target)]
    assert card.BLOCK_BUTTONS in card_shown(slack, posted)


def test_requester_can_cancel_but_nobody_else(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_CANCEL)
    assert "Only the requester" in ephemeral_replies(slack)[0]
    click(driver, posted, "UALICE", card.ACTION_CANCEL)
    assert "Cancelled" in ended_card(slack, posted) and "Cancelled" in requester_notice(slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    assert bot.services.store.requests.in_state("cancelled")[0].sealed_patch is None


def test_stale_request_sends_nothing(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    changed = agora.config(APP_ID, "live", "na")
    changed["hlsConfig"] = {"enabled": True}
    agora.put(APP_ID, "live", "na", changed)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    assert "Stale" in ended_card(slack, posted) and "changed after the request" in requester_notice(slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    assert bot.services.store.requests.in_state("stale")[0].sealed_patch is None


def test_second_request_for_the_same_target_is_refused_with_the_holder(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack)
    (held,) = bot.services.store.requests.open_requests()
    driver.command("set live na", user="UDAVE")
    view = slack.wait_for("views.update", count=3)[2]
    view = slack.view(view.params["view_id"])
    driver.submit("UDAVE", view, state(change=True, vendor=5, bucket="azc", access="a" * 8, secret="S" * 8))
    text = final_view_text(slack, count=4)
    assert f"<@UALICE> already has an open configuration change request `{held.id}` for this entry point in na" in text
    assert "since" in text and len(slack.of("chat.postMessage")) == 1


def test_forged_button_values_are_refused(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    request_id = button(posted, card.ACTION_APPROVE)["value"].split(".")[0]
    click(driver, posted, "UBOB", card.ACTION_APPROVE, value=f"{request_id}.{'0' * 32}")
    click(driver, posted, "UBOB", card.ACTION_APPROVE, value="somebody-elses-id")
    replies = ephemeral_replies(slack, 2)
    assert all("not a genuine" in r for r in replies)
    bot.drain()
    assert agora.calls("PATCH") == []
    assert bot.services.store.requests.open_requests()[0].approvers == []


def test_history_and_pending_show_events_without_secrets(driver, slack, agora) -> None:
    posted = request_storage_change(driver, slack)
    driver.command("pending")
    pending = ephemeral_replies(slack)[0]
    assert "live" in pending and "<@UALICE>" in pending and "pending" in pending
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    ended_card(slack, posted)
    driver.command("history live na")
    history = ephemeral_replies(slack, 2)[1]
    for event in ("requested", "approved", "applied"):
        assert event in history
    assert "...9876" in history
    for secret in (NEW_SECRET, NEW_ACCESS):
        assert secret not in slack.payload_text()


def test_direct_change_is_audited(driver, slack, agora) -> None:
    view = open_form(driver, slack)
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    final_view_text(slack)
    driver.command("history live")
    history = ephemeral_replies(slack)[0]
    assert "direct change" in history and "HLS recording: off → on" in history


class TestExpiry:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUEST_TTL_SECONDS": "1"}

    def test_expired_request_is_swept_and_cannot_be_approved(self, driver, slack, agora, bot) -> None:
        posted = request_storage_change(driver, slack)
        assert "Expired" in ended_card(slack, posted)
        assert "Expired" in requester_notice(slack)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        assert "already expired" in ephemeral_replies(slack)[0]
        bot.drain()
        assert agora.calls("PATCH") == []
        assert bot.services.store.requests.in_state("expired")[0].sealed_patch is None


class TestNoApprovers:
    """RECBOT_APPROVERS unset (doctor fails it; a start does not): nobody may approve, not everyone."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVERS": ""}

    def test_nobody_may_approve(self, driver, slack, agora, bot) -> None:
        posted = request_storage_change(driver, slack)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        assert "Only the approvers" in ephemeral_replies(slack, 1)[0]
        bot.drain()
        assert agora.calls("PATCH") == [] and len(bot.services.store.requests.open_requests()) == 1


class TestTwoApprovals:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUIRED_APPROVALS": "2", "RECBOT_APPROVERS": "UBOB,S0APPROVERS"}

    def test_two_distinct_approvers_are_needed(self, driver, slack, agora, bot) -> None:
        slack.usergroups["S0APPROVERS"] = ["UCAROL", "UDAVE"]
        posted = request_storage_change(driver, slack)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        first, second = sorted(ephemeral_replies(slack, 2), key=lambda r: "already approved" in r)
        assert "1 of 2 approvals" in first and "already approved" in second
        bot.drain()
        assert agora.calls("PATCH") == []
        (updated,) = slack.of("chat.update")  # the repeat click wrote no card
        assert "Approvals: 1 of 2" in text_of(updated)
        click(driver, posted, "UCAROL", card.ACTION_APPROVE)  # a member of the user group
        assert "Applied" in ended_card(slack, posted)
        assert len(agora.calls("PATCH")) == 1
        assert slack.of("usergroups.users.list")

    def test_a_card_write_overtaken_by_a_later_move_is_written_again(self, driver, slack, agora, bot) -> None:
        """UBOB's approval writes the card ("1 of 2"); while that write is in flight, UCAROL's
        approval applies the change and writes the card ("Applied"); then UBOB's write lands.
        The card Slack keeps must still show the final state, so UBOB's writer writes again."""
        slack.usergroups["S0APPROVERS"] = ["UCAROL", "UDAVE"]
        posted = request_storage_change(driver, slack)
        in_flight: list[Call] = []

        def approve_while_the_first_write_is_in_flight(write: Call) -> None:
            if in_flight or write.params.get("ts") != posted.params["_ts"]:
                return
            in_flight.append(write)
            click(driver, posted, "UCAROL", card.ACTION_APPROVE)
            requester_notice(slack)  # UCAROL's click has applied it, written the card and told UALICE

        slack.before["chat.update"] = approve_while_the_first_write_is_in_flight
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        requester_notice(slack)
        bot.drain()
        assert in_flight and "Approvals: 1 of 2" in text_of(in_flight[0])  # it was overtaken
        shown = card_shown(slack, posted)
        assert "Applied" in shown and card.BLOCK_BUTTONS not in shown
        assert len(agora.calls("PATCH")) == 1


class TestWhoMayAsk:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUESTERS": "UALICE", "RECBOT_ALLOWED_CHANNELS": "CRUN"}

    def test_outsiders_and_other_channels_are_refused(self, driver, slack, agora, bot) -> None:
        driver.command("set live na", user="UMALLORY")
        assert "not in RECBOT_REQUESTERS" in ephemeral_replies(slack, 1)[0]
        # One at a time: answers go out from a pool, so two commands' answers may arrive in either order.
        driver.command("get live na", channel="CELSEWHERE")
        assert "does not answer in this channel" in ephemeral_replies(slack, 2)[1]
        bot.drain()
        assert slack.of("views.open") == [] and agora.calls() == []

    def test_a_listed_requester_in_an_allowed_channel_may(self, driver, slack) -> None:
        driver.command("set live na", user="UALICE", channel="CRUN")
        slack.wait_for("views.update")


class TestApproversByDirectMessage:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_CHANNEL": "", "RECBOT_APPROVERS": "UBOB,UALICE,S0OPS"}

    def test_each_approver_but_the_requester_gets_the_card(self, driver, slack) -> None:
        slack.usergroups["S0OPS"] = ["UCAROL", "UBOB"]
        view = open_form(driver, slack)
        driver.submit("UALICE", view, state(change=True, vendor=5, bucket="azc", access="a" * 8, secret="S" * 8))
        final_view_text(slack)
        cards = slack.wait_for("chat.postMessage", count=2)
        assert sorted(c.params["channel"] for c in cards) == ["UBOB", "UCAROL"]

    def test_a_card_clicked_before_recbot_knows_it_counts_in_its_own_direct_messages_only(
        self, driver, slack, agora, bot
    ) -> None:
        """Slack delivers clicks on UBOB's card the moment it is posted, before recbot has heard
        back (and before UCAROL's card is posted). The button replayed by another approver in
        their direct messages, or in another channel, is refused; UBOB's own click, from his
        direct messages with recbot (a D... channel in Slack), counts."""
        slack.usergroups["S0OPS"] = ["UCAROL"]

        def click_on_sight(posted: Call) -> None:
            if posted.params["channel"] != "UBOB" or not posted.params["text"].startswith("Recording change"):
                return
            click(driver, posted, "UCAROL", card.ACTION_APPROVE, channel="DCAROL")
            click(driver, posted, "UBOB", card.ACTION_APPROVE, channel="CELSEWHERE")
            slack.wait_for("response_url", count=2)
            click(driver, posted, "UBOB", card.ACTION_APPROVE, channel="DBOB")
            slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")

        slack.after["chat.postMessage"] = click_on_sight
        view = open_form(driver, slack)
        driver.submit("UALICE", view, state(change=True, vendor=5, bucket="azc", access="a" * 8, secret="S" * 8))
        final_view_text(slack)
        bot.drain()
        replies = [text_of(c) for c in slack.of("response_url")]
        assert len(replies) == 2 and all("not a genuine" in r for r in replies)
        (row,) = bot.services.store.requests.in_state("applied")
        assert row.approvers == ["UBOB"] and len(agora.calls("PATCH")) == 1
        assert "Applied" in requester_notice(slack)
        cards = [c for c in slack.of("chat.postMessage") if c.params["channel"] in ("UBOB", "UCAROL")]
        assert len(cards) == 2
        for posted in cards:
            assert "Applied" in card_shown(slack, posted) and card.BLOCK_BUTTONS not in card_shown(slack, posted)


def test_pending_request_survives_a_restart_and_applies_once(settings, slack, agora) -> None:
    first = start_bot(settings, fast_agora(settings))
    try:
        posted = request_storage_change(SlackDriver(first.url, SIGNING_SECRET, slack.response_url()), slack)
    finally:
        first.stop()
    second = start_bot(settings, fast_agora(settings))
    try:
        click(SlackDriver(second.url, SIGNING_SECRET, slack.response_url()), posted, "UBOB", card.ACTION_APPROVE)
        assert "Applied" in ended_card(slack, posted)
        assert len(agora.calls("PATCH")) == 1
    finally:
        second.stop()


def test_request_interrupted_while_applying_is_reconciled_not_resent(settings, slack, agora) -> None:
    first = start_bot(settings, fast_agora(settings))
    try:
        request_storage_change(SlackDriver(first.url, SIGNING_SECRET, slack.response_url()), slack)
        (row,) = first.services.store.requests.open_requests()
        # Simulate a crash after the PATCH reached Agora but before the outcome was stored.
        requests = first.services.store.requests
        assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")
        assert requests.transition(row.id, "approved", "claim")
        live = agora.config(APP_ID, "live", "na")
        live["storageConfig"] = {
            "vendor": 7,
            "region": 0,
            "bucket": "hw-bucket",
            "accessKey": NEW_ACCESS,
            "secretKey": NEW_SECRET,
        }
        agora.put(APP_ID, "live", "na", live)
    finally:
        first.stop()
    second = start_bot(settings, fast_agora(settings))
    try:
        assert "Applied" in requester_notice(slack) and "after a restart" in requester_notice(slack)
        assert agora.calls("PATCH") == []
        assert second.services.store.requests.get(row.id).state == "applied"
    finally:
        second.stop()


def test_database_rows_hold_no_plaintext(driver, slack, bot) -> None:
    request_storage_change(driver, slack)
    with bot.services.store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(change_requests.select()).mappings()]
    dumped = json.dumps(rows, default=repr)
    assert NEW_SECRET not in dumped and NEW_ACCESS not in dumped
    assert rows[0]["sealed_patch"]  # sealed, not absent: the request is still pending


class TestExpiredButNotYetSwept:
    @pytest.fixture
    def bot(self, settings) -> Iterator[RunningBot]:
        running = start_bot(settings, fast_agora(settings), sweep_seconds=3600)  # the sweep never comes
        yield running
        running.stop()

    def test_every_button_is_refused_and_nothing_is_sent(self, driver, slack, agora, bot) -> None:
        posted = request_storage_change(driver, slack)
        with bot.services.store.engine.begin() as conn:
            conn.execute(change_requests.update().values(expires_at=utcnow() - timedelta(seconds=1)))
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        click(driver, posted, "UBOB", card.ACTION_REJECT)
        click(driver, posted, "UALICE", card.ACTION_CANCEL)
        assert all("expired" in reply for reply in ephemeral_replies(slack, 3))
        bot.drain()
        assert agora.calls("PATCH") == [] and slack.of("chat.update") == []
        assert len(slack.of("views.open")) == 1  # the edit form's; no reject-reason modal
        (row,) = bot.services.store.requests.open_requests()
        assert row.state == "pending" and row.approvers == []


class TestRequesterIsAnApprover:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVERS": "UALICE,UBOB"}

    def test_they_cannot_approve_their_own_request(self, driver, slack, agora, bot) -> None:
        posted = request_storage_change(driver, slack)
        click(driver, posted, "UALICE", card.ACTION_APPROVE)
        assert "cannot approve your own" in ephemeral_replies(slack)[0]
        bot.drain()
        assert agora.calls("PATCH") == [] and slack.of("chat.update") == []
        assert bot.services.store.requests.open_requests()[0].approvers == []
        click(driver, posted, "UBOB", card.ACTION_APPROVE)  # the other listed approver can
        assert "Applied" in ended_card(slack, posted)


class TestGroupLookupFails:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVERS": "S0OPS"}

    def test_a_member_is_denied_while_the_group_cannot_be_read(self, driver, slack, agora, bot) -> None:
        slack.usergroups["S0OPS"] = ["UBOB"]
        posted = request_storage_change(driver, slack)
        slack.errors["usergroups.users.list"] = "internal_error"
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        assert "Only the approvers" in ephemeral_replies(slack)[0]
        bot.drain()
        assert agora.calls("PATCH") == [] and bot.services.store.requests.open_requests()[0].approvers == []
        del slack.errors["usergroups.users.list"]
        click(driver, posted, "UBOB", card.ACTION_APPROVE)  # the same click, once the group can be read
        assert "Applied" in ended_card(slack, posted)


def test_an_apply_that_loses_the_claim_sends_nothing_and_announces_nothing(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    assert bot.services.store.requests.transition(row.id, "pending", "approve", decided_by="UBOB")
    assert bot.services.store.requests.transition(row.id, "approved", "claim")  # another process claimed it
    updates = len(slack.of("chat.update"))
    assert bot.services.approvals.apply(row.id) is None
    assert bot.services.approvals.recover(timedelta(hours=1)) == []  # not orphaned yet: left alone
    bot.drain()
    assert agora.calls("PATCH") == [] and len(slack.of("chat.update")) == updates
    assert bot.services.store.requests.get(row.id).state == "applying"
