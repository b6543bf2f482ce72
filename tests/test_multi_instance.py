"""Two bot processes' worth of instances on one PostgreSQL: 20 concurrent
Approve clicks apply the change exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.app import ORPHAN_AGE, orphan_age_at_start
from bot.settings import load_settings
from bot.store import Store
from handlers.blocks import approval_card as card
from tests.approval_helpers import NEW_ACCESS, NEW_SECRET, click, request_storage_change
from tests.conftest import SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


def test_twenty_concurrent_approvals_across_two_instances_patch_once(shared_settings, slack, agora) -> None:
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    try:
        drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
        posted = request_storage_change(drivers[0], slack)
        approvers = ["UBOB", "UCAROL"]
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda i: click(drivers[i % 2], posted, approvers[i % 2], card.ACTION_APPROVE), range(20)))
        slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    finally:
        for bot in bots:
            bot.stop()  # lets every acked click finish, so late duplicates would be seen below
    (patch,) = agora.calls("PATCH")
    storage = patch.json()["storageConfig"]
    assert (storage["accessKey"], storage["secretKey"]) == (NEW_ACCESS, NEW_SECRET)
    assert len([c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]) == 1
    assert any("Applied" in str(c.params) for c in slack.of("chat.update"))
    store = Store(shared_settings.DATABASE_URL)
    try:
        (row,) = store.in_state("applied")
        assert row.sealed_patch is None
        events = [(e.event, e.actor) for e in store.history(row.target)]
    finally:
        store.close()
    assert len([e for e in events if e[0] == "applied"]) == 1
    approvals = [e for e in events if e[0] == "approved"]
    assert len(approvals) == len(set(approvals)) and set(approvals) <= {("approved", "UBOB"), ("approved", "UCAROL")}


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
