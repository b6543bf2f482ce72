"""The fleet-wide job service (bot/bulk_jobs.py) directly, on the embedded SQLite against the
Agora fake and moto's S3 server: asking makes one pending job with its keys sealed and a masked
summary (or none: nothing to change, too many targets, storage refused); the storage check runs
once per destination; the approval rules of one change request; each move once; the expiry of
pending jobs only, on an injected clock. And, for any typed keys, the modal's errors never
quote them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.approvals import Refused
from bot.bulk_change import BulkRequest, stored_keys
from bot.bulk_jobs import BulkJobs
from bot.bulk_plan import TooManyTargets
from bot.models import fingerprint
from bot.probe import Prober
from bot.services import Services, build_services
from bot.settings import Settings
from bot.store.values import Vote, utcnow
from handlers.blocks import bulk_form as form
from tests.bulk_helpers import NEW_ACCESS, NEW_SECRET, ROTATION, bulk_state, fleet
from tests.conftest import APP_ID, LIVE_CONFIG, fast_agora
from tests.fakes.agora import AgoraEmulator


def rotation(
    bucket: str = "rec-bucket", access: str = NEW_ACCESS, secret: str = NEW_SECRET, names: list[str] | None = None
) -> BulkRequest:
    """A key rotation of bucket's targets in na (of `names` alone, if given)."""
    targets: dict[str, Any] = {"app_id": APP_ID, "regions": ["na"], "vendor": 1, "bucket": bucket}
    if names is not None:
        targets["entry_points"] = {"kind": "list", "names": names}
    return BulkRequest.model_validate(
        {"targets": targets, "change": {"storage": {"kind": "keys", "access_key": access, "secret_key": secret}}}
    )


HLS_ON = BulkRequest.model_validate({"targets": {"app_id": APP_ID, "regions": ["na"]}, "change": {"hls": True}})


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings, agora=fast_agora(settings))
    yield built
    built.close()


def service(
    services: Services, clock: Clock, *, required: int = 1, prober: Prober | None = None, max_targets: int = 2000
) -> BulkJobs:
    return BulkJobs(
        jobs=services.store.jobs,
        votes=services.store.job_approvals,
        fleet=services.fleet,
        sealer=services.sealer,
        prober=prober or services.prober,
        ttl_seconds=3600,
        required_approvals=required,
        max_targets=max_targets,
        clock=clock,
    )


def test_asking_makes_one_pending_job_with_its_keys_sealed_and_a_masked_summary(services, agora) -> None:
    fleet(agora)
    clock = Clock()
    planned = service(services, clock).ask(rotation(), "UALICE")
    job = planned.job
    assert job is not None and job.state == "pending" and job.requester == "UALICE"
    assert job.target_count == 7 and job.expires_at == clock.now + timedelta(seconds=3600)
    assert job.summary == [
        "7 targets matched: 7 would change, 0 already as asked; 0 unreadable",
        "storage keys: replaced on 7 targets (bucket rec-bucket)",
    ]
    assert job.filter == json.loads(rotation().targets.model_dump_json())
    assert job.change["storage"]["access_key"] == fingerprint(NEW_ACCESS)
    assert NEW_SECRET not in json.dumps(job.change) and NEW_ACCESS not in json.dumps(job.change)
    assert job.sealed_secrets is not None
    assert json.loads(services.sealer.unseal(job.sealed_secrets)) == [NEW_ACCESS, NEW_SECRET]
    assert {t.state for t in services.store.jobs.targets(job.id)} == {"planned"}
    assert agora.calls("PATCH") == []


def test_a_plan_with_nothing_to_change_makes_no_job(services, agora) -> None:
    fleet(agora, [])
    agora.put(APP_ID, "live", "na", {**LIVE_CONFIG, "hlsConfig": {"enabled": True}})
    planned = service(services, Clock()).ask(HLS_ON, "UALICE")
    assert planned.job is None and "nothing to approve" in planned.note and planned.plan.already == 1
    assert services.store.jobs.in_state("planning", "pending") == []


def test_a_filter_matching_nothing_says_so_not_that_all_are_as_asked(services, agora) -> None:
    fleet(agora)
    nothing = service(services, Clock()).ask(rotation(bucket="no-such-bucket"), "UALICE")
    assert nothing.job is None and "No target matches" in nothing.note and "already as asked" not in nothing.note
    names = {"app_id": APP_ID, "regions": ["na"], "entry_points": {"kind": "list", "names": ["ghost"]}}
    ghost = BulkRequest.model_validate({"targets": names, "change": {"hls": True}})
    unread = service(services, Clock()).ask(ghost, "UALICE")
    assert unread.job is None and len(unread.plan.unreadable) == 1
    assert "could be read" in unread.note and "already as asked" not in unread.note
    assert services.store.jobs.in_state("planning", "pending") == []


def test_a_second_job_over_targets_an_open_job_holds_is_refused_until_that_one_ends(services, agora) -> None:
    """One job at a time per target, as one open request per target: two rotations of the same
    targets would leave each to whichever ran last. A job over other targets is not held back."""
    fleet(agora)
    bulk = service(services, Clock())
    first = bulk.ask(rotation(), "UALICE").job
    assert first is not None
    other_keys = rotation(access="AKIAOTHERACCESS999", secret="OTHER-secret-999")
    with pytest.raises(
        Refused, match=rf"7 of the targets this would change are in job `{first.id}`, asked by <@UALICE>"
    ):
        bulk.ask(other_keys, "UCAROL")
    assert [job.id for job in services.store.jobs.in_state("planning", "pending")] == [first.id]
    elsewhere = BulkRequest.model_validate({"targets": {"app_id": APP_ID, "regions": ["eu"]}, "change": {"hls": True}})
    agora.put(APP_ID, "live", "eu", LIVE_CONFIG)
    assert bulk.ask(elsewhere, "UCAROL").job is not None
    bulk.cancel(first.id, "UALICE")
    second = bulk.ask(other_keys, "UCAROL").job
    assert second is not None and second.state == "pending"


def test_more_targets_than_the_maximum_are_refused_and_make_no_job(services, agora) -> None:
    fleet(agora)
    with pytest.raises(TooManyTargets, match="7 targets match, and one job takes at most 6"):
        service(services, Clock(), max_targets=6).ask(rotation(), "UALICE")
    assert services.store.jobs.in_state("planning", "pending") == []


def test_the_approval_rules_of_one_change_and_a_start_made_once(services, agora) -> None:
    fleet(agora)
    bulk = service(services, Clock(), required=2)
    job = bulk.ask(rotation(), "UALICE").job
    assert job is not None
    with pytest.raises(Refused, match="cannot approve your own"):
        bulk.approve(job.id, "UALICE", is_approver=True)
    with pytest.raises(Refused, match="Only the approvers"):
        bulk.approve(job.id, "UMALLORY", is_approver=False)
    first = bulk.approve(job.id, "UBOB", is_approver=True)
    assert (first.vote, first.started, first.job.state) == (Vote.COUNTED, False, "pending")
    assert first.job.approvers == ["UBOB"]
    with pytest.raises(Refused, match="already approved job"):
        bulk.approve(job.id, "UBOB", is_approver=True)
    last = bulk.approve(job.id, "UCAROL", is_approver=True)
    assert last.vote is Vote.COMPLETED and last.started and last.job.state == "running" and last.job.started_at
    assert last.job.decided_by == "UCAROL" and last.job.approvers == ["UBOB", "UCAROL"]
    with pytest.raises(Refused, match="already approved by <@UCAROL> and is being applied"):
        bulk.approve(job.id, "UDAVE", is_approver=True)
    assert not bulk.start(job.id) and bulk.start_approved() == []  # started once, never again


def test_a_job_that_carries_no_keys_is_rejected_as_any_other(services, agora) -> None:
    """Its reason has no keys to hide: nothing is sealed, and nothing is opened to find them."""
    fleet(agora)
    bulk = service(services, Clock())
    job = bulk.ask(HLS_ON, "UALICE").job
    assert job is not None and job.sealed_secrets is None
    ended = bulk.reject(job.id, "UBOB", "not now", is_approver=True)
    assert (ended.state, ended.reason) == ("rejected", "not now")
    assert stored_keys(None) == []


def test_reject_and_cancel_end_it_and_delete_its_keys(services, agora) -> None:
    fleet(agora)
    bulk = service(services, Clock())
    rejected = bulk.ask(rotation(), "UALICE").job
    assert rejected is not None
    with pytest.raises(Refused, match="use Cancel"):
        bulk.reject(rejected.id, "UALICE", "no", is_approver=True)
    with pytest.raises(Refused, match="Only the approvers"):
        bulk.reject(rejected.id, "UMALLORY", "no", is_approver=False)
    ended = bulk.reject(rejected.id, "UBOB", "wrong bucket", is_approver=True)
    assert (ended.state, ended.reason, ended.decided_by, ended.sealed_secrets) == (
        "rejected",
        "wrong bucket",
        "UBOB",
        None,
    )
    with pytest.raises(Refused, match="already rejected by <@UBOB>"):
        bulk.cancel(rejected.id, "UALICE")
    cancelled = bulk.ask(rotation(), "UALICE").job
    assert cancelled is not None
    with pytest.raises(Refused, match="Only the requester"):
        bulk.cancel(cancelled.id, "UBOB")
    ended = bulk.cancel(cancelled.id, "UALICE")
    assert ended.state == "cancelled" and ended.sealed_secrets is None
    assert {t.state for t in services.store.jobs.targets(cancelled.id)} == {"skipped"}


def test_only_pending_jobs_past_their_expiry_expire(services, agora) -> None:
    fleet(agora)
    clock = Clock()
    bulk = service(services, clock)
    due = bulk.ask(rotation(names=["live", "cam0"]), "UALICE").job  # three jobs, over targets of their own
    clock.now += timedelta(seconds=1800)
    later = bulk.ask(rotation(names=["cam1", "cam2"]), "UALICE").job
    running = bulk.ask(rotation(names=["cam3", "cam4"]), "UALICE").job
    assert due is not None and later is not None and running is not None
    bulk.approve(running.id, "UBOB", is_approver=True)
    clock.now += timedelta(seconds=1800)  # the first one's hour is up, the second's is not
    with pytest.raises(Refused, match="has expired"):
        bulk.approve(due.id, "UBOB", is_approver=True)
    (expired,) = bulk.expire_due()
    assert expired.id == due.id and expired.state == "expired" and expired.sealed_secrets is None
    assert bulk.expire_due() == []
    assert bulk.get(later.id).state == "pending" and bulk.get(running.id).state == "running"


def test_a_job_left_approved_is_started_by_the_sweep_once(services, agora) -> None:
    fleet(agora)
    clock = Clock()
    bulk = service(services, clock)
    job = bulk.ask(rotation(), "UALICE").job
    assert job is not None
    services.store.job_approvals.add(job.id, "UBOB", now=utcnow(), required=1)  # its approver's process stopped here
    assert bulk.start_approved() == []  # its approver may be starting it right now
    clock.now += timedelta(minutes=6)
    (started,) = bulk.start_approved()
    assert started.id == job.id and started.state == "running" and started.started_at is not None
    assert bulk.start_approved() == []


BUCKETS_MADE: set[str] = set()


def test_a_job_left_planning_by_a_process_that_stopped_is_failed_with_its_keys_deleted(services, agora) -> None:
    clock = Clock()
    bulk = service(services, clock)
    services.store.jobs.create(  # what ask leaves if its process stops between making the job and sending it
        job_id="stranded",
        requester="UALICE",
        change=rotation().change.stored()[0],
        sealed_secrets=services.sealer.seal("keys"),
        expires_at=clock.now + timedelta(hours=1),
    )
    assert bulk.fail_stranded_plans() == []  # a plan may still be under way
    clock.now += timedelta(minutes=6)
    (failed,) = bulk.fail_stranded_plans()
    assert (failed.id, failed.state, failed.sealed_secrets) == ("stranded", "failed", None)
    assert "interrupted" in (failed.reason or "") and bulk.fail_stranded_plans() == []


@pytest.fixture
def s3(moto_s3: Any) -> Any:
    if "rec-bucket" not in BUCKETS_MADE:  # moto_s3 lives for the session
        moto_s3.bucket("rec-bucket")
        BUCKETS_MADE.add("rec-bucket")
    return moto_s3


def moto_prober(s3: Any, mode: str) -> Prober:
    return Prober(mode, s3_endpoint=s3.url)  # type: ignore[arg-type]


def test_the_storage_check_runs_once_per_destination(services, agora: AgoraEmulator, s3, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.probe")
    keys = s3.user("bulk-writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")
    fleet(agora)
    elsewhere = {**LIVE_CONFIG["storageConfig"], "region": 1}  # the same bucket name in another region
    agora.put(APP_ID, "other", "na", {**LIVE_CONFIG, "storageConfig": elsewhere})
    request = BulkRequest.model_validate(
        {
            "targets": {"app_id": APP_ID, "regions": ["na"], "vendor": 1, "bucket": "rec-bucket"},
            "change": {"storage": {"kind": "keys", "access_key": keys.access, "secret_key": keys.secret}},
        }
    )
    job = service(services, Clock(), prober=moto_prober(s3, "require")).ask(request, "UALICE").job
    assert job is not None and job.target_count == 8
    probes = [r.getMessage() for r in caplog.records if r.name == "bot.probe"]
    assert len(probes) == 2, probes  # 7 targets write to rec-bucket in region 0, 1 in region 1
    checked = [line for line in job.summary if line.startswith("storage check of")]
    assert len(checked) == 2 and checked[0] != checked[1]
    assert all("ok at" in line for line in checked)


def test_a_refused_storage_check_refuses_the_job_unless_it_only_warns(services, agora, s3) -> None:
    keys = s3.user("bulk-wrong", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")
    fleet(agora)
    wrong = rotation(access=keys.access, secret=keys.secret[:-4] + "XXXX")
    said = r"storage check of Amazon S3 bucket rec-bucket \(US_EAST_1 \(0\)\) failed, so no job was made"
    with pytest.raises(Refused, match=said):
        service(services, Clock(), prober=moto_prober(s3, "require")).ask(wrong, "UALICE")
    assert services.store.jobs.in_state("planning", "pending") == []
    warned = service(services, Clock(), prober=moto_prober(s3, "warn")).ask(wrong, "UALICE").job
    assert warned is not None and "SignatureDoesNotMatch" in warned.summary[-1]


CANARY = "KEYCANARY"
typed_key = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40).map(lambda t: CANARY + t)


@given(
    access=typed_key, secret=typed_key, storage=st.sampled_from([form.KEYS, form.STORAGE]), bucket=st.text(max_size=8)
)
def test_the_modals_errors_never_quote_a_typed_key(access: str, secret: str, storage: str, bucket: str) -> None:
    values = {**ROTATION, "storage": storage, "access": access, "secret": secret}
    values |= {"new_vendor": 1, "new_region": 0, "new_bucket": bucket, "now_bucket": bucket}
    request, errors = form.read_request({"values": bulk_state(**values)})
    assert request is not None or errors
    assert not any(CANARY in text for text in errors.values()), errors
