"""Two bot instances on one PostgreSQL: concurrent clicks apply a change
exactly once, and people see exactly one outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.app import ORPHAN_AGE, orphan_age_at_start
from bot.settings import load_settings
from handlers.blocks import approval_card as card
from tests.approval_helpers import NEW_ACCESS, NEW_SECRET, card_shown, click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


ROUNDS = 20
CLICKS = 20


def test_twenty_clicks_over_two_instances_apply_and_announce_once(shared_settings, slack, agora) -> None:
    """Each round: both approvers click Approve ten times each, spread over both
    instances at once. Every round must end with one PATCH, one DM to the
    requester, one audited approval and application, one card write (the
    winner's), an applied card, and every other click told so alone."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    approvers = ["UBOB", "UCAROL"]
    try:
        with ThreadPoolExecutor(CLICKS) as pool:
            for round_no in range(ROUNDS):
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)
                slack.clear()
                agora.clear()
                posted = request_storage_change(drivers[round_no % 2], slack)
                clicks = [(drivers[i % 2], approvers[(i // 2) % 2]) for i in range(CLICKS)]
                list(pool.map(lambda c, p=posted: click(c[0], p, c[1], card.ACTION_APPROVE), clicks))
                for bot in bots:
                    bot.drain()
                where = f"round {round_no}"
                assert len(agora.calls("PATCH")) == 1, where
                dms = [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                assert len(dms) == 1 and "Applied" in text_of(dms[0]), where
                shown = card_shown(slack, posted)
                assert "Applied" in shown and card.BLOCK_BUTTONS not in shown, where
                card_writes = [c for c in slack.of("chat.update") if c.params["ts"] == posted.params["_ts"]]
                assert len(card_writes) == 1, f"{where}: {len(card_writes)} card writes"
                replies = [text_of(c) for c in slack.of("response_url")]
                assert len(replies) == CLICKS - 1 and all("already" in r for r in replies), where
                assert all(c.params["response_type"] == "ephemeral" for c in slack.of("response_url")), where
                store = bots[0].services.store
                (row,) = [r for r in store.in_state("applied") if r.cards[0].ts == posted.params["_ts"]]
                events = [e.event for e in store.history(row.target, 100) if e.request_id == row.id]
                assert events.count("applied") == 1 and events.count("approved") == 1, f"{where}: {events}"
                assert row.sealed_patch is None, where
    finally:
        for bot in bots:
            bot.stop()
    storage = agora.config(APP_ID, "live", "na")["storageConfig"]
    assert (storage["accessKey"], storage["secretKey"]) == (NEW_ACCESS, NEW_SECRET)


def test_a_starting_instance_leaves_another_instances_apply_alone(shared_settings, slack, agora) -> None:
    first = start_bot(shared_settings, fast_agora(shared_settings))
    try:
        request_storage_change(SlackDriver(first.url, SIGNING_SECRET, slack.response_url()), slack)
        (row,) = first.services.store.open_requests()
        assert first.services.store.transition(row.id, ("pending",), "applying")  # first is applying it now
        second = start_bot(shared_settings, fast_agora(shared_settings))
        try:
            assert second.services.store.get(row.id).state == "applying"  # not taken over at start
            assert orphan_age_at_start(second.services) == ORPHAN_AGE
            (ended,) = second.services.approvals.recover(timedelta(0))  # once it is old enough
            assert ended.state == "failed" and "not sent again" in (ended.result or "")
            assert agora.calls("PATCH") == []
        finally:
            second.stop()
    finally:
        first.stop()
