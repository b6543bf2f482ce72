"""The job store's contract, on the embedded SQLite and on the local PostgreSQL: a job and
its targets move only as bot/job_lifecycle.py's tables say, each target is claimed by one
worker of one instance and its outcome recorded once, a target left in flight by a claimer
that died is found for a reconcile and never claimed again, and the sealed secrets are
gone when the job ends."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from bot.job_lifecycle import ENDED_JOB_STATES, TARGET_STATES
from bot.lifecycle import LifecycleError
from bot.models import Target
from bot.seal import Sealer
from bot.store import Store, open_store
from bot.store.schema import job_targets, jobs
from bot.store.values import PlannedTarget, Vote, utcnow

SECRET = "sk-very-secret-0123456789"
CHANGE = {"storage": "new keys", "access_key": "...9876", "bucket": "rec-eu"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = open_store(url)
    yield opened
    opened.close()


def planned(count: int, *, unchanged: int = 0, app_id: str = "A") -> list[PlannedTarget]:
    """`count` targets across the four regions, the first `unchanged` of them already as asked."""
    regions = ["na", "eu", "ap", "cn"]
    return [
        PlannedTarget(
            Target(app_id=app_id, entry_point=f"ep{i // 4}", region=regions[i % 4]),
            {"digest": f"d{i}", "access_key": "...1234"},
            unchanged=i < unchanged,
        )
        for i in range(count)
    ]


def new_job(store: Store, job_id: str = "j1", targets: int = 5, *, state: str = "running", unchanged: int = 0) -> None:
    """A job with `targets` targets, moved by the table from planning up to `state`."""
    store.jobs.create(
        job_id=job_id,
        requester="UALICE",
        change=CHANGE,
        sealed_secrets=b"ciphertext",
        expires_at=utcnow() + timedelta(hours=1),
        targets=planned(targets, unchanged=unchanged),
    )
    path = {
        "planning": [],
        "pending": ["plan"],
        "approved": ["plan", "approve"],
        "running": ["plan", "approve", "start"],
    }
    at = "planning"
    for event, to in zip(path[state], ["pending", "approved", "running"], strict=False):
        assert store.jobs.transition(job_id, at, event)
        at = to


def test_a_job_is_created_planning_with_its_targets_and_reads_back(store: Store) -> None:
    row = store.jobs.create(
        job_id="j1",
        requester="UALICE",
        change=CHANGE,
        sealed_secrets=b"ciphertext",
        expires_at=utcnow() + timedelta(hours=1),
        targets=planned(6, unchanged=2),
        unreadable=1,
    )
    assert (row.state, row.requester, row.change, row.sealed_secrets) == ("planning", "UALICE", CHANGE, b"ciphertext")
    assert (row.target_count, row.unreadable_count, row.version, row.is_open) == (6, 1, 0, True)
    assert row.expires_at > row.created_at and row.expires_at.tzinfo is not None
    rows = store.jobs.targets("j1")
    assert [(r.target.entry_point, r.target.region, r.state) for r in rows] == [
        ("ep0", "na", "unchanged"),
        ("ep0", "eu", "unchanged"),
        ("ep0", "ap", "planned"),
        ("ep0", "cn", "planned"),
        ("ep1", "na", "planned"),
        ("ep1", "eu", "planned"),
    ]
    assert rows[2].seen == {"digest": "d2", "access_key": "...1234"} and rows[2].attempts == 0
    assert rows[2].claimed_by is None and rows[2].claimed_at is None
    assert store.jobs.progress("j1") == {**dict.fromkeys(TARGET_STATES, 0), "planned": 4, "unchanged": 2}
    assert [r.target.entry_point for r in store.jobs.targets("j1", "unchanged")] == ["ep0", "ep0"]


def test_targets_are_added_only_while_the_job_is_planning(store: Store) -> None:
    new_job(store, targets=0, state="planning")
    assert store.jobs.add_targets("j1", planned(3), unreadable=2)
    assert store.jobs.add_targets("j1", planned(2, app_id="B"))
    assert store.jobs.transition("j1", "planning", "plan")
    assert not store.jobs.add_targets("j1", planned(1, app_id="C"))  # the plan is what gets approved
    row = store.jobs.get("j1")
    assert (row.state, row.target_count, row.unreadable_count) == ("pending", 5, 2)
    assert [r.target.app_id for r in store.jobs.targets("j1")] == ["A", "A", "A", "B", "B"]


def test_a_job_moves_by_the_table_as_compare_and_set(store: Store) -> None:
    new_job(store, state="pending")
    version = store.jobs.get("j1").version
    assert not store.jobs.transition("j1", "pending", "approve", version=version - 1)  # someone moved it since
    with pytest.raises(LifecycleError, match="a pending job cannot start"):
        store.jobs.transition("j1", "pending", "start")
    assert store.jobs.get("j1").state == "pending" and store.jobs.get("j1").version == version
    assert store.jobs.transition("j1", "pending", "approve", version=version)
    assert not store.jobs.transition("j1", "pending", "approve")  # the second click loses
    assert store.jobs.transition("j1", "approved", "start")
    assert store.jobs.transition("j1", "running", "pause", reason="Agora answered 401")
    paused = store.jobs.get("j1")
    assert (paused.state, paused.reason, paused.version) == ("paused", "Agora answered 401", version + 3)
    assert not store.jobs.transition("j1", "paused", "resume", unexpired_at=paused.expires_at)  # expired by then
    assert store.jobs.transition("j1", "paused", "resume")
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: store.jobs.transition("j1", "running", "pause"), range(16)))
    assert wins.count(True) == 1


def test_a_jobs_votes_are_its_own(store: Store) -> None:
    """Two approvals needed: a vote on another job does not count towards this one's."""
    new_job(store, "ja", state="pending")
    new_job(store, "jb", state="pending")
    now = utcnow()
    assert store.job_approvals.add("jb", "UBOB", now=now, required=2) == Vote.COUNTED
    assert store.job_approvals.add("ja", "UCAROL", now=now, required=2) == Vote.COUNTED
    assert store.jobs.get("ja").state == "pending"
    assert store.job_approvals.add("ja", "UBOB", now=now, required=2) == Vote.COMPLETED


def test_jobs_waiting_on_a_person_past_their_expiry_are_due(store: Store) -> None:
    new_job(store, "pending", state="pending")
    new_job(store, "paused")
    assert store.jobs.transition("paused", "running", "pause")
    new_job(store, "running")
    later = utcnow() + timedelta(hours=2)
    assert sorted(j.id for j in store.jobs.due_for_expiry(later)) == ["paused", "pending"]
    assert store.jobs.due_for_expiry(utcnow()) == []
    assert [j.id for j in store.jobs.in_state("running", "paused")] == ["running", "paused"]  # newest first


@pytest.mark.parametrize(
    ("state", "event", "end"),
    [
        ("planning", "fail", "failed"),
        ("pending", "reject", "rejected"),
        ("pending", "expire", "expired"),
        ("running", "cancel", "cancelled"),
        ("paused", "expire", "expired"),
    ],
)
def test_secrets_are_sealed_at_rest_and_gone_when_the_job_ends(store: Store, state: str, event: str, end: str) -> None:
    sealer = Sealer(Fernet.generate_key())
    store.jobs.create(
        job_id="j1",
        requester="UALICE",
        change=CHANGE,
        sealed_secrets=sealer.seal(SECRET),
        expires_at=utcnow() + timedelta(hours=1),
        targets=planned(3),
    )
    for at, move in [("planning", "plan"), ("pending", "approve"), ("approved", "start"), ("running", "pause")]:
        if at == state:
            break
        assert store.jobs.transition("j1", at, move)
    assert SECRET not in _every_stored_value(store)
    assert sealer.unseal(store.jobs.get("j1").sealed_secrets) == SECRET
    assert store.jobs.transition("j1", state, event)
    row = store.jobs.get("j1")
    assert (row.state, row.sealed_secrets, row.is_open) == (end, None, False)
    assert end in ENDED_JOB_STATES
    with store.engine.connect() as conn:
        assert conn.execute(select(jobs.c.sealed_secrets)).scalar() is None
    assert [r.state for r in store.jobs.targets("j1")] == ["skipped"] * 3  # never claimed: skipped


def _every_stored_value(store: Store) -> str:
    with store.engine.connect() as conn:
        found = [*conn.execute(select(jobs)).all(), *conn.execute(select(job_targets)).all()]
    return repr(found)


def test_targets_are_claimed_only_from_a_running_job_oldest_first(store: Store) -> None:
    new_job(store, targets=5, unchanged=1, state="approved")
    assert store.jobs.claim("j1", "i1", 10) == []  # approved, not started
    assert store.jobs.transition("j1", "approved", "start")
    first = store.jobs.claim("j1", "i1", 2)
    assert [(r.target.entry_point, r.target.region) for r in first] == [("ep0", "eu"), ("ep0", "ap")]
    assert {(r.state, r.claimed_by, r.attempts) for r in first} == {("in_flight", "i1", 1)}
    assert all(r.claimed_at is not None and r.claimed_at.tzinfo is not None for r in first)
    assert store.jobs.transition("j1", "running", "pause")
    assert store.jobs.claim("j1", "i2", 10) == []  # paused: nothing handed out
    assert store.jobs.transition("j1", "paused", "resume")
    rest = store.jobs.claim("j1", "i2", 10)
    assert [r.target.region for r in rest] == ["cn", "na"] and store.jobs.claim("j1", "i2", 10) == []
    assert store.jobs.progress("j1")["in_flight"] == 4 and store.jobs.progress("j1")["unchanged"] == 1


def test_an_outcome_is_recorded_once_by_its_claimer_only(store: Store) -> None:
    new_job(store, targets=2)
    one, two = store.jobs.claim("j1", "i1", 2)
    assert not store.jobs.record(one.id, "i2", "confirm")  # not its claim
    assert store.jobs.record(one.id, "i1", "confirm", detail="read back: in effect")
    assert not store.jobs.record(one.id, "i1", "fail")  # recorded already: exactly once
    with pytest.raises(LifecycleError, match="reclaim is not an outcome"):
        store.jobs.record(two.id, "i1", "reclaim")
    with pytest.raises(LifecycleError, match="an in_flight target cannot skip"):
        store.jobs.record(two.id, "i1", "skip")
    assert store.jobs.record(two.id, "i1", "find_stale", detail="changed since the plan")
    assert [(r.state, r.detail) for r in store.jobs.targets("j1")] == [
        ("applied", "read back: in effect"),
        ("stale", "changed since the plan"),
    ]


def test_a_job_finishes_only_when_no_target_is_left(store: Store) -> None:
    new_job(store, targets=3, unchanged=1)
    assert not store.jobs.transition("j1", "running", "finish")  # two planned
    claimed = store.jobs.claim("j1", "i1", 5)
    assert not store.jobs.transition("j1", "running", "finish")  # two in flight
    store.jobs.record(claimed[0].id, "i1", "confirm")
    assert not store.jobs.transition("j1", "running", "finish")  # one in flight
    store.jobs.record(claimed[1].id, "i1", "fail", detail="Agora answered 404")
    assert store.jobs.transition("j1", "running", "finish")
    assert store.jobs.get("j1").state == "done" and store.jobs.get("j1").sealed_secrets is None


def test_a_cancel_skips_what_was_never_claimed_and_lets_what_is_in_flight_end(store: Store) -> None:
    new_job(store, targets=5)
    claimed = store.jobs.claim("j1", "i1", 2)
    assert store.jobs.transition("j1", "running", "cancel")
    assert store.jobs.claim("j1", "i1", 5) == []
    assert store.jobs.progress("j1")["skipped"] == 3 and store.jobs.progress("j1")["in_flight"] == 2
    assert all(store.jobs.record(r.id, "i1", "confirm") for r in claimed)  # their PATCHes were sent
    assert store.jobs.progress("j1") == {**dict.fromkeys(TARGET_STATES, 0), "skipped": 3, "applied": 2}


def test_a_target_in_flight_of_a_dead_claimer_is_found_for_reconcile_and_never_claimed_again(store: Store) -> None:
    new_job(store, targets=12)
    dead = store.jobs.claim("j1", "i-dead", 4)  # then the instance is killed: no outcome ever comes
    cutoff = utcnow()
    survivor: list[int] = []
    while batch := store.jobs.claim("j1", "i-live", 3):
        survivor += [r.id for r in batch]
    assert len(survivor) == 8 and not {r.id for r in dead} & set(survivor)  # never handed out as planned
    stranded = store.jobs.stranded(claimed_before=cutoff)
    assert [(r.id, r.claimed_by, r.state) for r in stranded] == [(r.id, "i-dead", "in_flight") for r in dead]
    assert [r.id for r in store.jobs.stranded(claimed_before=cutoff, job_id="j1")] == [r.id for r in dead]
    assert store.jobs.stranded(claimed_before=cutoff, job_id="other") == []
    # The reconcile reads each back: the first shows the change in effect, so it is recorded as applied...
    assert store.jobs.record(dead[0].id, "i-dead", "confirm", detail="reconciled: read back in effect")
    # ... the second shows nothing was sent: one of two reconciles takes it over to send it.
    with ThreadPoolExecutor(4) as pool:
        wins = list(pool.map(lambda who: store.jobs.reclaim(dead[1].id, "i-dead", who), ["r1", "r2", "r3", "r4"]))
    assert wins.count(True) == 1
    taken = next(r for r in store.jobs.targets("j1") if r.id == dead[1].id)
    assert (taken.state, taken.attempts, taken.claimed_by) == ("in_flight", 2, f"r{wins.index(True) + 1}")
    assert not store.jobs.record(dead[1].id, "i-dead", "confirm")  # the dead claimer's word no longer counts
    assert store.jobs.stranded(claimed_before=cutoff) == dead[2:]
    assert store.jobs.claim("j1", "i-live", 10) == []


def test_a_job_whose_stored_change_cannot_be_read_says_so_and_can_still_end(store: Store) -> None:
    new_job(store, targets=1)
    with store.engine.begin() as conn:
        conn.execute(jobs.update().values(change="{not json"))
    row = store.jobs.get("j1")
    assert row.change == {} and row.problem and "change" in row.problem
    assert store.jobs.transition("j1", "running", "fail", reason=row.problem)


ROUNDS = 30
TARGETS = 200


def test_two_instances_claiming_at_once_get_every_target_once(postgres_url: str) -> None:
    """Each round, two instances (engines of their own), two workers each, claim one job's 200
    targets in small batches at once and record each: every target is claimed once, none lost,
    every outcome recorded once, and of the instances' attempts to finish, one wins."""
    instances = [open_store(postgres_url), open_store(postgres_url)]
    try:
        for round_no in range(ROUNDS):
            job_id = f"race{round_no}"
            new_job(instances[0], job_id, targets=TARGETS)
            workers = [(s, f"i{n}-w{w}") for n, s in enumerate(instances) for w in range(2)]
            go = threading.Barrier(len(workers))

            def work(store: Store, claimer: str, job: str = job_id, start: threading.Barrier = go) -> list[int]:
                start.wait()
                got: list[int] = []
                while batch := store.jobs.claim(job, claimer, 7):
                    for target in batch:
                        assert store.jobs.record(target.id, claimer, "confirm"), (claimer, target.id)
                        got.append(target.id)
                return got

            with ThreadPoolExecutor(len(workers)) as pool:
                claims = list(pool.map(lambda w: work(*w), workers))
            where = f"round {round_no}"
            counted = Counter(i for got in claims for i in got)
            assert sorted(counted) == sorted(r.id for r in instances[1].jobs.targets(job_id)), where
            assert set(counted.values()) == {1}, where
            done = instances[1].jobs.progress(job_id)
            assert done["applied"] == TARGETS and done["planned"] == done["in_flight"] == 0, where
            assert {r.attempts for r in instances[1].jobs.targets(job_id)} == {1}, where
            with ThreadPoolExecutor(2) as pool:
                finished = list(pool.map(lambda s, j=job_id: s.jobs.transition(j, "running", "finish"), instances))
            assert finished.count(True) == 1, where
    finally:
        for instance in instances:
            instance.close()
