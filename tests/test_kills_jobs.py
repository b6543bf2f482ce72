"""Gaps a mutation spot check found in the tests of fleet-wide jobs' Slack side (issue 19):
a vote is counted only on a pending, unexpired job; a job approved but not started can be
cancelled; a posted progress message is never claimed for posting again; a job that never ran
gets no outcome CSV; `/recording jobs` lists only the latest ended jobs; the requester is not
told of a pause that a resume undid; only the homes a job concerns are redrawn at its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta

import pytest
from slack_sdk import WebClient

from bot.job_control import JobControl
from bot.models import RecordingConfig
from bot.observation import observe
from bot.services import Services, build_services
from bot.settings import Settings
from bot.store.values import CardRef, PlannedTarget, Vote, utcnow
from handlers.job_notify import JobNotifier
from recbot.app import sweep_jobs
from tests.conftest import BOT_TOKEN, LIVE_CONFIG, fast_agora
from tests.fakes.slack import FakeSlack
from tests.job_helpers import ROTATE, new_job, outcome_files, progress_posts, targets


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings, agora=fast_agora(settings))
    yield built
    built.close()


def client_of(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


def pending_job(services: Services, job_id: str = "j1", requester: str = "UALICE") -> None:
    """A job awaiting approval for an hour, as asking leaves it."""
    live = RecordingConfig.model_validate(LIVE_CONFIG)
    public, keys = ROTATE.stored()
    services.store.jobs.create(
        job_id=job_id,
        requester=requester,
        change=public,
        sealed_secrets=services.sealer.seal(keys) if keys else None,
        expires_at=utcnow() + timedelta(hours=1),
        targets=[PlannedTarget(t, asdict(observe(live, services.sealer.digest_key))) for t in targets(2)],
    )
    assert services.store.jobs.transition(job_id, "planning", "plan", summary=json.dumps(["2 targets matched"]))


def test_a_vote_on_a_job_past_its_expiry_or_no_longer_pending_is_not_counted(services) -> None:
    """The vote's own compare-and-set, for a click that read the job pending just before it ended."""
    votes, jobs = services.store.job_approvals, services.store.jobs
    pending_job(services, "late")
    row = jobs.get("late")
    assert row is not None
    assert votes.add("late", "UBOB", now=row.expires_at, required=1) is Vote.CLOSED
    pending_job(services, "rejected")
    assert jobs.transition("rejected", "pending", "reject", decided_by="UCAROL", reason="wrong bucket")
    assert votes.add("rejected", "UBOB", now=utcnow(), required=1) is Vote.CLOSED
    for job_id, state in (("late", "pending"), ("rejected", "rejected")):
        now = jobs.get(job_id)
        assert now is not None and (now.state, now.approvers, now.started_at) == (state, [], None), job_id


def test_a_job_approved_but_not_started_is_cancelled_by_its_requester(services, agora) -> None:
    new_job(services, agora, targets(4), state="approved")  # its approver's process stopped before starting it
    control = JobControl(services.store.jobs, services.store.job_progress, ttl_seconds=3600)
    ended = control.move("j1", "cancel", "UALICE", is_approver=False)
    assert (ended.state, ended.reason, ended.sealed_secrets) == ("cancelled", "Cancelled by <@UALICE>.", None)
    assert {t.state for t in services.store.jobs.targets("j1")} == {"skipped"}


def test_a_posted_progress_message_is_never_claimed_for_posting_again(services, agora) -> None:
    """Two notifiers that both read the job before its message was posted: the second posts none."""
    new_job(services, agora, targets(4))
    progress = services.store.job_progress
    token = progress.claim_post("j1", stale_before=utcnow() - timedelta(minutes=1))
    assert token is not None
    progress.posted("j1", token, CardRef("CAPPROVE", "1.000100"), utcnow())
    assert progress.claim_post("j1", stale_before=utcnow() - timedelta(minutes=1)) is None
    assert progress.claim_post("j1", stale_before=utcnow() + timedelta(hours=1)) is None


def test_a_job_that_never_ran_gets_no_progress_message_or_outcome_csv_from_the_sweep(services, slack) -> None:
    """Rejected, cancelled or expired while pending: its cards and the requester's DM say so; there
    is no outcome to send."""
    pending_job(services, "rejected")
    assert services.store.jobs.transition("rejected", "pending", "reject", decided_by="UBOB", reason="no")
    pending_job(services, "cancelled")
    assert services.store.jobs.transition("cancelled", "pending", "cancel", decided_by="UALICE", reason="withdrawn")
    sweep_jobs(services, JobNotifier(client_of(slack), services))
    for job_id in ("rejected", "cancelled"):
        assert outcome_files(slack, job_id=job_id) == [] and progress_posts(slack, job_id) == [], job_id
    assert services.store.job_progress.unannounced_ends() == []


def test_recording_jobs_lists_the_open_jobs_and_only_the_latest_ended_ones(services, agora) -> None:
    for n in range(7):
        new_job(services, agora, targets(1, f"ended{n}-"), job_id=f"e{n}")
        assert services.store.jobs.transition(f"e{n}", "running", "cancel", reason="Cancelled by <@UALICE>.")
    new_job(services, agora, targets(1, "open"), job_id="open")
    control = JobControl(services.store.jobs, services.store.job_progress, ttl_seconds=3600)
    assert [v.job.id for v in control.overview(ended=5)] == ["open", "e6", "e5", "e4", "e3", "e2"]


def test_a_pause_the_requester_was_not_yet_told_of_and_that_was_undone_is_not_told(services, agora, slack) -> None:
    new_job(services, agora, targets(4))
    jobs = services.store.jobs
    assert jobs.transition("j1", "running", "pause", reason="Agora refused recbot's credentials (401).")
    notifier = JobNotifier(client_of(slack), services)
    notifier.worker_paused("j1")
    assert jobs.transition("j1", "paused", "resume", reason="Resumed by <@UBOB>.")  # before the notice was drawn
    notifier.drain()
    told = [c.params.get("text", "") for c in slack.of("chat.postMessage") if c.params.get("channel") == "UALICE"]
    assert not any("was paused" in text for text in told), told


def test_a_job_s_end_redraws_only_the_open_homes_it_concerns(services, agora, slack) -> None:
    new_job(services, agora, targets(2))  # approved by UBOB
    for user in ("UALICE", "UBOB", "UDAVE"):  # UDAVE opened their home, and has nothing to do with the job
        services.store.homes.add(user)
    assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UALICE>.")
    JobNotifier(client_of(slack), services).announce_end("j1")
    published = sorted(c.params["user_id"] for c in slack.of("views.publish"))
    assert published == ["UALICE", "UBOB"]
