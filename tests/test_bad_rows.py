"""Rows recbot cannot read (keys sealed under another seal key, damaged
fields) never stop expiries, recovery or startup: each is failed with a
reason and announced, and the sweep goes on with the next row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from bot.settings import Settings, load_settings
from bot.store import Store, open_store
from bot.store.schema import change_requests
from bot.store.values import utcnow
from handlers.notify import Notifier
from recbot.app import sweep
from tests.approval_helpers import card_shown, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.slack import Call, FakeSlack

QUIET = 3600.0  # a sweep interval no test reaches: only the sweep at start runs


def with_key(overrides: dict[str, Any], key: str) -> Settings:
    return load_settings(_env_file=None, **{**overrides, "RECBOT_SEAL_KEY": key})


def open_request(settings: Settings, slack: FakeSlack, entry_point: str) -> Call:
    """Open a storage-change request on a bot that then stops; its approval card."""
    bot = start_bot(settings, fast_agora(settings), sweep_seconds=QUIET)
    try:
        driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
        return request_storage_change(driver, slack, entry_point=entry_point)
    finally:
        bot.stop()


def set_row(store: Store, entry_point: str, **values: Any) -> str:
    with store.engine.begin() as conn:
        conn.execute(update(change_requests).where(change_requests.c.entry_point == entry_point).values(**values))
    (row,) = [
        r for r in store.requests.in_state("pending", "approved", "applying") if r.target.entry_point == entry_point
    ]
    return row.id


def dms(slack: FakeSlack, user: str = "UALICE") -> list[str]:
    return [text_of(c) for c in slack.of("chat.postMessage") if c.params["channel"] == user]


def test_a_changed_seal_key_fails_what_it_cannot_open_and_the_sweep_goes_on(settings_overrides, slack, agora) -> None:
    for entry_point in ("old", "new", "due"):
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
    before, after = (with_key(settings_overrides, Fernet.generate_key().decode()) for _ in range(2))
    sealed_before = open_request(before, slack, "old")
    applies = open_request(after, slack, "new")
    expires = open_request(after, slack, "due")
    store = open_store(after.DATABASE_URL)
    ids = {
        "old": set_row(store, "old", state="approved", decided_by="UBOB"),  # orphaned by a stopped process
        "new": set_row(store, "new", state="approved", decided_by="UBOB"),
        "due": set_row(store, "due", expires_at=utcnow() - timedelta(minutes=1)),
    }
    store.close()
    slack.clear()

    bot = start_bot(after, fast_agora(after), sweep_seconds=QUIET)  # starts, and does not die on the row
    try:
        rows = {name: bot.services.store.requests.get(request_id) for name, request_id in ids.items()}
        assert [rows[n].state for n in ("old", "new", "due")] == ["failed", "applied", "expired"]
        assert "another RECBOT_SEAL_KEY" in (rows["old"].result or "") and "Nothing was sent" in rows["old"].result
        assert all(row.sealed_patch is None for row in rows.values())
        (patch,) = agora.calls("PATCH")
        assert "/entry_points/new/" in patch.path
        assert "Failed" in card_shown(slack, sealed_before) and "another RECBOT_SEAL_KEY" in card_shown(
            slack, sealed_before
        )
        assert "Applied" in card_shown(slack, applies) and "Expired" in card_shown(slack, expires)
        told = dms(slack)
        assert len(told) == 3 and sum("another RECBOT_SEAL_KEY" in t for t in told) == 1
        (failed,) = [e for e in bot.services.store.audit.history(rows["old"].target) if e.event == "failed"]
        assert failed.actor == "recbot" and "another RECBOT_SEAL_KEY" in failed.detail["note"]
        SlackDriver(bot.url, SIGNING_SECRET, slack.response_url()).command("get old na")
        assert "Recording configuration of old" in text_of(slack.wait_for("response_url")[0])  # still serving
    finally:
        bot.stop()


def test_damaged_rows_are_failed_or_expired_with_a_reason(settings, slack, agora) -> None:
    for entry_point in ("broken", "due"):
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
    broken = open_request(settings, slack, "broken")
    open_request(settings, slack, "due")
    store = open_store(settings.DATABASE_URL)
    broken_id = set_row(store, "broken", state="approved", decided_by="UBOB", changes="{not json")
    due_id = set_row(store, "due", expires_at=utcnow() - timedelta(minutes=1), cards="[[")
    store.close()
    slack.clear()

    bot = start_bot(settings, fast_agora(settings), sweep_seconds=QUIET)
    try:
        failed, expired = bot.services.store.requests.get(broken_id), bot.services.store.requests.get(due_id)
        assert failed.state == "failed" and "could not be read" in (failed.result or "")
        assert expired.state == "expired" and expired.sealed_patch is None
        assert agora.calls("PATCH") == []
        assert "Failed" in card_shown(slack, broken) and "could not be read" in card_shown(slack, broken)
        assert len(dms(slack)) == 2  # the expired one's cards are unreadable, but its requester is told
        SlackDriver(bot.url, SIGNING_SECRET, slack.response_url()).command("pending")
        assert "No open change requests" in text_of(slack.wait_for("response_url")[0])
    finally:
        bot.stop()


@pytest.fixture
def quiet_bot(settings) -> RunningBot:
    bot = start_bot(settings, fast_agora(settings), sweep_seconds=QUIET)
    yield bot
    bot.stop()


@pytest.mark.parametrize("broken_step", ["recover", "expire_due"])
def test_recovery_and_expiry_are_guarded_apart(quiet_bot, slack, agora, monkeypatch, broken_step) -> None:
    driver = SlackDriver(quiet_bot.url, SIGNING_SECRET, slack.response_url())
    store = quiet_bot.services.store
    agora.put(APP_ID, "due", "na", LIVE_CONFIG)
    orphan = request_storage_change(driver, slack)
    due = request_storage_change(driver, slack, entry_point="due")
    set_row(store, "live", state="approved", decided_by="UBOB", updated_at=utcnow() - timedelta(hours=1))
    set_row(store, "due", expires_at=utcnow() - timedelta(minutes=1))

    def broken(*_: object) -> None:
        raise OperationalError("SELECT", {}, Exception("database went away"))

    monkeypatch.setattr(quiet_bot.services.approvals, broken_step, broken)
    sweep(quiet_bot.services, Notifier(quiet_bot.app.client, quiet_bot.services))
    if broken_step == "recover":
        assert "Expired" in card_shown(slack, due) and "Applied" not in card_shown(slack, orphan)
    else:
        assert "Applied" in card_shown(slack, orphan) and "Expired" not in card_shown(slack, due)


def test_a_row_that_fails_does_not_stop_the_sweep(quiet_bot, slack, agora, monkeypatch) -> None:
    driver = SlackDriver(quiet_bot.url, SIGNING_SECRET, slack.response_url())
    store = quiet_bot.services.store
    agora.put(APP_ID, "second", "na", LIVE_CONFIG)
    request_storage_change(driver, slack)
    second = request_storage_change(driver, slack, entry_point="second")
    first_id = set_row(store, "live", expires_at=utcnow() - timedelta(minutes=2))
    set_row(store, "second", expires_at=utcnow() - timedelta(minutes=1))
    transition = store.requests.transition

    def fails_for_the_first(request_id: str, *args: Any, **kwargs: Any) -> bool:
        if request_id == first_id:
            raise OperationalError("UPDATE", {}, Exception("row locked too long"))
        return transition(request_id, *args, **kwargs)

    monkeypatch.setattr(store.requests, "transition", fails_for_the_first)
    sweep(quiet_bot.services, Notifier(quiet_bot.app.client, quiet_bot.services))
    assert "Expired" in card_shown(slack, second)
    assert store.requests.get(first_id).state == "pending"  # left for the next sweep
