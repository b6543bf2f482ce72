"""The store's contract, on the embedded SQLite and on the local PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from bot.models import FieldChange, Target
from bot.observation import Observation
from bot.store import Store, count_sealed, open_store, sealed_rows
from bot.store.schema import change_requests
from bot.store.values import CardRef, TargetBusy, Vote, utcnow
from tests.conftest import POSTGRES_URL
from tests.legacy_schema import rebuild

TARGET = Target(app_id="A", entry_point="live", region="na")
CHANGES = [FieldChange("Access key", "...1234", "...9876")]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = open_store(url)
    yield opened
    opened.close()


def new_request(store: Store, request_id: str = "r1", target: Target = TARGET, requester: str = "UALICE"):
    return store.requests.create(
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
    assert store.requests.transition("r1", "pending", "approve")
    assert not store.requests.transition("r1", "pending", "approve")
    assert store.requests.get("r1").state == "approved"


def test_ending_frees_the_target_and_purges_the_secrets(store: Store) -> None:
    new_request(store)
    assert store.requests.transition("r1", "pending", "reject", reason="no")
    row = store.requests.get("r1")
    assert row.sealed_patch is None and row.reason == "no" and not row.is_open
    new_request(store, "r2")  # the target is free again


def test_the_sealed_rows_are_the_open_requests_and_jobs_that_hold_keys(store: Store) -> None:
    """What a start counts before it would make a new seal key: ended requests hold none."""
    from tests.test_jobs_store import new_job

    for number in range(4):
        new_request(store, f"r{number}", Target(app_id="A", entry_point=f"ep{number}", region="na"))
    assert store.requests.transition("r0", "pending", "reject", reason="no")
    assert store.requests.transition("r1", "pending", "cancel")
    assert store.requests.transition("r2", "pending", "cancel")
    new_job(store, "j1", state="pending")  # a key rotation awaiting approval: its keys sealed
    with store.engine.connect() as conn:
        assert sealed_rows(conn) == 2  # r3 and j1
    assert count_sealed(str(store.engine.url)) == 2


def test_concurrent_transitions_have_one_winner(store: Store) -> None:
    new_request(store)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: store.requests.transition("r1", "pending", "approve"), range(20)))
    assert wins.count(True) == 1


def vote(store: Store, approver: str, required: int = 2, request_id: str = "r1") -> Vote:
    return store.requests.add_approval(request_id, approver, now=utcnow(), required=required)


def test_approvals_count_distinct_approvers_and_the_last_one_approves(store: Store) -> None:
    new_request(store)
    assert vote(store, "UBOB") is Vote.COUNTED
    assert vote(store, "UBOB") is Vote.REPEAT
    assert store.requests.get("r1").state == "pending"
    assert vote(store, "UCAROL") is Vote.COMPLETED
    row = store.requests.get("r1")
    assert (row.state, row.decided_by, row.approvers) == ("approved", "UCAROL", ["UBOB", "UCAROL"])
    assert vote(store, "UDAVE") is Vote.CLOSED  # no longer pending: not counted
    assert store.requests.get("r1").approvers == ["UBOB", "UCAROL"]


def test_an_expired_request_takes_no_approval_and_no_decision(store: Store) -> None:
    new_request(store)
    later = utcnow() + timedelta(hours=2)
    assert store.requests.add_approval("r1", "UBOB", now=later, required=1) is Vote.CLOSED
    assert not store.requests.transition("r1", "pending", "reject", unexpired_at=later)
    assert store.requests.get("r1").state == "pending" and store.requests.get("r1").approvers == []


def test_concurrent_votes_complete_the_request_once(store: Store) -> None:
    for round_no in range(10):
        request_id = f"race{round_no}"
        new_request(store, request_id, target=Target(app_id="A", entry_point=f"ep{round_no}", region="na"))
        voters = [f"U{i % 4}" for i in range(20)]
        with ThreadPoolExecutor(10) as pool:
            votes = list(pool.map(lambda u, r=request_id: vote(store, u, 3, r), voters))
        assert votes.count(Vote.COMPLETED) == 1, votes
        assert votes.count(Vote.COUNTED) == 2, votes
        assert len(store.requests.get(request_id).approvers) == 3


def test_every_move_bumps_the_version_and_a_refused_one_does_not(store: Store) -> None:
    first = new_request(store).version
    vote(store, "UBOB")
    counted = store.requests.get("r1").version
    vote(store, "UBOB")  # a repeat changes nothing
    assert store.requests.get("r1").version == counted > first
    assert not store.requests.transition("r1", "approved", "claim")
    assert store.requests.get("r1").version == counted
    assert store.requests.transition("r1", "pending", "reject")
    assert store.requests.get("r1").version == counted + 1


def test_a_row_with_unreadable_fields_is_read_with_its_problem(store: Store) -> None:
    new_request(store)
    with store.engine.begin() as conn:
        conn.execute(change_requests.update().values(changes="{not json", cards="[[1]]"))
    (row,) = store.requests.open_requests()
    assert row.id == "r1" and row.problem and "changes" in row.problem
    assert row.changes == [] and row.cards == [] and row.requester == "UALICE"


@pytest.mark.parametrize(
    ("kind", "spec", "storage_at"),
    [
        ("config", {"storage": {"vendor": 1, "region": 7}}, (1, 7)),
        ("config", None, None),  # a change that sets no storage
        ("config", {"storage": {"vendor": "1", "region": 7}}, None),  # not as recbot writes it: ignored
        ("config", {"storage": {"vendor": True, "region": 7}}, None),
        ("config", {"storage": [1, 7]}, None),
        ("switch", {"enabled": True, "storage": {"vendor": 1, "region": 7}}, None),  # a switch has no storage
    ],
)
def test_where_a_requests_new_storage_is_reads_back_only_as_written(store: Store, kind, spec, storage_at) -> None:
    """The card's geography warning reads it; a value not as written is no warning, never an error."""
    store.requests.create(
        request_id="r1",
        target=TARGET,
        requester="UALICE",
        expires_at=utcnow() + timedelta(hours=1),
        base_digest="d" * 32,
        sealed_patch=b"ciphertext",
        changes=CHANGES,
        kind=kind,
        spec=spec,
    )
    (row,) = store.requests.open_requests()
    assert row.storage_at == storage_at and row.problem is None


def test_cards_and_queries(store: Store) -> None:
    new_request(store)
    store.requests.set_cards("r1", [CardRef("C1", "1.2")])
    assert store.requests.get("r1").cards == [CardRef("C1", "1.2")]
    assert [r.id for r in store.requests.open_requests()] == ["r1"]
    assert store.requests.due_for_expiry(utcnow()) == []
    assert [r.id for r in store.requests.due_for_expiry(utcnow() + timedelta(hours=2))] == ["r1"]


def test_audit_history_newest_first_and_limited(store: Store) -> None:
    for i in range(25):
        store.audit.append("approved", f"U{i}", TARGET, request_id="r1", changes=CHANGES)
    history = store.audit.history(TARGET)
    assert len(history) == 20 and history[0].actor == "U24"
    assert history[0].detail["changes"] == [["Access key", "...1234", "...9876"]]
    assert store.audit.history(Target(app_id="A", entry_point="other", region="na")) == []


def test_migrations_are_idempotent(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    open_store(url.replace("postgresql+psycopg", "postgresql")).close()
    new_request(store)


def test_a_version_1_database_is_upgraded_in_place(store: Store) -> None:
    url = rebuild(store.engine, "v1")  # as recbot's first release left it, with a pending request
    upgraded = open_store(url)
    try:
        assert upgraded.requests.get("open1").version == 0
        assert upgraded.requests.transition("open1", "pending", "cancel")
        assert upgraded.requests.get("open1").version == 1
    finally:
        upgraded.close()


def _obs(bucket: str, keys: str = "k1") -> Observation:
    return Observation(mp4=True, hls=False, vendor=1, storage_region=0, bucket=bucket, keys_digest=keys)


def test_remember_keeps_the_first_baseline_and_record_replaces_it(store: Store) -> None:
    assert store.drift.remember(TARGET, _obs("one"))
    assert not store.drift.remember(TARGET, _obs("two"))  # a later read does not hide a change
    assert store.drift.observed(TARGET) == (_obs("one"), None)
    store.drift.expect(TARGET, _obs("three"))
    assert store.drift.observed(TARGET) == (_obs("one"), _obs("three"))
    store.drift.record(TARGET, _obs("three"))
    assert store.drift.observed(TARGET) == (_obs("three"), None)
    assert store.drift.observed_targets() == [TARGET]


def test_one_open_alert_per_target_and_a_new_one_supersedes_it(store: Store) -> None:
    store.drift.remember(TARGET, _obs("one"))
    first, superseded = store.drift.create_alert("a1", TARGET, _obs("one"), _obs("two"), CHANGES)
    assert first.is_open and superseded is None
    assert store.drift.create_alert("a2", TARGET, _obs("one"), _obs("two"), CHANGES) is None  # the same change again
    second, old = store.drift.create_alert("a3", TARGET, _obs("one"), _obs("three"), CHANGES)
    assert old is not None and old.id == "a1" and old.state == "superseded"
    assert [a.id for a in store.drift.open_alerts()] == ["a3"] and store.drift.open_alert_for(TARGET).id == second.id


def test_an_alert_is_not_opened_once_the_baseline_moved_or_recbot_expects_the_change(store: Store) -> None:
    store.drift.remember(TARGET, _obs("one"))
    store.drift.expect(TARGET, _obs("two"))
    assert store.drift.create_alert("a1", TARGET, _obs("one"), _obs("two"), CHANGES) is None  # recbot is applying it
    store.drift.record(TARGET, _obs("two"))
    assert store.drift.create_alert("a2", TARGET, _obs("one"), _obs("three"), CHANGES) is None  # read before it moved
    assert store.drift.open_alerts() == []


def test_ending_an_alert_is_a_compare_and_set_that_can_set_the_baseline(store: Store) -> None:
    store.drift.remember(TARGET, _obs("one"))
    store.drift.create_alert("a1", TARGET, _obs("one"), _obs("two"), CHANGES)
    with ThreadPoolExecutor(8) as pool:
        won = list(
            pool.map(
                lambda u: store.drift.end_alert("a1", "acknowledged", baseline=_obs("two"), decided_by=u),
                [f"U{i}" for i in range(8)],
            )
        )
    assert won.count(True) == 1
    assert store.drift.alert("a1").state == "acknowledged" and store.drift.observed(TARGET) == (_obs("two"), None)


def test_the_watch_lock_has_one_holder(store: Store) -> None:
    with store.drift.watch_lock() as first:
        other = (
            open_store(store.engine.url.render_as_string(hide_password=False))
            if store.engine.dialect.name == "postgresql"
            else store
        )
        try:
            with other.drift.watch_lock() as second:
                assert first and not second
        finally:
            if other is not store:
                other.close()
    with store.drift.watch_lock() as again:
        assert again


def test_recbots_in_schemas_of_their_own_do_not_share_locks(postgres_url: str) -> None:
    """Advisory locks are the whole PostgreSQL database's: two recbots sharing one, each in a
    schema of its own (as every test here), each hold their own drift watch and switch lock."""
    import psycopg

    schema = f"recbot_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        one = open_store(postgres_url)
        two = open_store(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
        try:
            with one.drift.watch_lock() as first, two.drift.watch_lock() as second:
                assert first and second
            with one.switches.lock("A", "live"), two.switches.lock("A", "live", timeout=1):
                pass
        finally:
            one.close()
            two.close()
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_home_viewers_are_remembered_once(store: Store) -> None:
    for user in ("UB", "UA", "UB"):
        store.homes.add(user)
    assert store.homes.all() == ["UA", "UB"]
