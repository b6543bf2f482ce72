"""The store's contract, on the embedded SQLite and on the local PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from bot.models import FieldChange, Target
from bot.store import CardRef, Store, TargetBusy, utcnow

TARGET = Target(app_id="A", entry_point="live", region="na")
CHANGES = [FieldChange("Access key", "...1234", "...9876")]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = Store(url)
    yield opened
    opened.close()


def new_request(store: Store, request_id: str = "r1", target: Target = TARGET, requester: str = "UALICE"):
    return store.create_request(
        request_id=request_id,
        target=target,
        requester=requester,
        expires_at=utcnow() + timedelta(hours=1),
        base_digest="d" * 32,
        sealed_patch=b"ciphertext",
        changes=CHANGES,
    )


def test_created_request_reads_back(store: Store) -> None:
    row = new_request(store)
    assert (row.state, row.requester, row.target, row.changes, row.sealed_patch) == (
        "pending",
        "UALICE",
        TARGET,
        CHANGES,
        b"ciphertext",
    )
    assert row.expires_at > row.created_at and row.expires_at.tzinfo is not None


def test_one_open_request_per_target(store: Store) -> None:
    new_request(store)
    with pytest.raises(TargetBusy) as busy:
        new_request(store, "r2", requester="UBOB")
    assert busy.value.holder.id == "r1" and busy.value.holder.requester == "UALICE"
    new_request(store, "r3", target=Target(app_id="A", entry_point="live", region="eu"))


def test_transition_is_compare_and_set(store: Store) -> None:
    new_request(store)
    assert store.transition("r1", ("pending",), "approved")
    assert not store.transition("r1", ("pending",), "approved")
    assert store.get("r1").state == "approved"


def test_ending_frees_the_target_and_purges_the_secrets(store: Store) -> None:
    new_request(store)
    assert store.transition("r1", ("pending",), "rejected", reason="no")
    row = store.get("r1")
    assert row.sealed_patch is None and row.reason == "no" and not row.is_open
    new_request(store, "r2")  # the target is free again


def test_concurrent_transitions_have_one_winner(store: Store) -> None:
    new_request(store)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: store.transition("r1", ("pending",), "approved"), range(20)))
    assert wins.count(True) == 1


def test_approvals_count_distinct_approvers(store: Store) -> None:
    new_request(store)
    assert store.add_approval("r1", "UBOB") == (True, 1)
    assert store.add_approval("r1", "UBOB") == (False, 1)
    assert store.add_approval("r1", "UCAROL") == (True, 2)
    assert store.get("r1").approvers == ["UBOB", "UCAROL"]


def test_cards_and_queries(store: Store) -> None:
    new_request(store)
    store.set_cards("r1", [CardRef("C1", "1.2")])
    assert store.get("r1").cards == [CardRef("C1", "1.2")]
    assert [r.id for r in store.open_requests()] == ["r1"]
    assert store.due_for_expiry(utcnow()) == []
    assert [r.id for r in store.due_for_expiry(utcnow() + timedelta(hours=2))] == ["r1"]


def test_audit_history_newest_first_and_limited(store: Store) -> None:
    for i in range(25):
        store.audit("approved", f"U{i}", TARGET, request_id="r1", changes=CHANGES)
    history = store.history(TARGET)
    assert len(history) == 20 and history[0].actor == "U24"
    assert history[0].detail["changes"] == [["Access key", "...1234", "...9876"]]
    assert store.history(Target(app_id="A", entry_point="other", region="na")) == []


def test_migrations_are_idempotent(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    Store(url.replace("postgresql+psycopg", "postgresql")).close()
    new_request(store)
