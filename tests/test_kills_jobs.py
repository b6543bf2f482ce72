"""Gaps a mutation spot check found in the tests of fleet-wide jobs' Slack side (issue 19):
a vote is counted only on a pending, unexpired job; a job approved but not started can be
cancelled; a posted progress message is never claimed for posting again; a job that never ran
gets no outcome CSV; `/recording jobs` lists only the latest ended jobs; the requester is not
told of a pause that a resume undid; only the homes a job concerns are redrawn at its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.approvals import Refused
from bot.bulk_jobs import BulkJobs
from bot.job_control import JobControl
from bot.models import RecordingConfig
from bot.observation import observe
from bot.services import Services, build_services
from bot.settings import Settings, load_settings
from bot.store.values import CardRef, PlannedTarget, Vote, utcnow
from handlers.blocks import bulk_form, job_card, job_progress
from handlers.job_notify import JobNotifier
from recbot.app import sweep_jobs
from tests.bulk_helpers import fleet
from tests.conftest import BOT_TOKEN, LIVE_CONFIG, fast_agora
from tests.fakes.slack import Call, FakeSlack
from tests.job_helpers import (
    ROTATE,
    click_job,
    ephemeral_texts,
    job_button,
    new_job,
    outcome_files,
    progress_posts,
    running_bot,
    shown,
    targets,
    wait_until,
)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings, agora=fast_agora(settings))
    yield built
    built.close()


def client_of(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


def pending_job(services: Services, job_id: str = "j1", summary: tuple[str, ...] = ("2 targets matched",)) -> None:
    """A job awaiting approval for an hour, as asking leaves it."""
    live = RecordingConfig.model_validate(LIVE_CONFIG)
    public, keys = ROTATE.stored()
    services.store.jobs.create(
        job_id=job_id,
        requester="UALICE",
        change=public,
        sealed_secrets=services.sealer.seal(keys) if keys else None,
        expires_at=utcnow() + timedelta(hours=1),
        targets=[PlannedTarget(t, asdict(observe(live, services.sealer.digest_key))) for t in targets(2)],
    )
    assert services.store.jobs.transition(job_id, "planning", "plan", summary=json.dumps(list(summary)))


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


def test_a_person_s_pause_and_resume_redraw_the_job_s_approval_cards(settings, services, slack, agora) -> None:
    new_job(services, agora, targets(48))
    card = client_of(slack).chat_postMessage(channel="CAPPROVE", text="Fleet-wide change j1 of 48 targets: running")
    services.store.job_approvals.set_cards("j1", [CardRef(card["channel"], card["ts"])])
    agora.get_delay = 0.3  # long enough for the clicks to land while it runs
    with running_bot(settings, slack) as (bot, driver):
        wait_until(lambda: len(progress_posts(slack)) == 1, "no progress message")
        (posted,) = progress_posts(slack)
        click_job(driver, slack, posted, "UALICE", job_progress.ACTION_PAUSE)
        bot.drain()
        paused = slack.message(card["channel"], card["ts"])
        assert paused["text"] == "Fleet-wide change j1 of 48 targets: paused"
        assert "Paused by <@UALICE>." in json.dumps(paused["blocks"])
        assert not any("is now paused" in text for text in ephemeral_texts(slack))  # the message clicked shows it
        resume = {**job_button(shown(slack, posted)["blocks"], job_progress.ACTION_RESUME), "block_id": "jobs_list"}
        assert driver.block_action("UBOB", resume, message={"ts": "9.000900", "blocks": []}).ok  # from elsewhere
        bot.drain()
        assert "Job `j1` is now running." in ephemeral_texts(slack)[-1]
        assert slack.message(card["channel"], card["ts"])["text"] == "Fleet-wide change j1 of 48 targets: running"
        click_job(driver, slack, posted, "UBOB", job_progress.ACTION_CANCEL)
        bot.drain()
        agora.get_delay = 0


@pytest.fixture
def some_requesters(settings_overrides: dict[str, Any]) -> Settings:
    return load_settings(_env_file=None, **{**settings_overrides, "RECBOT_REQUESTERS": "UALICE"})


def test_change_these_clicked_by_someone_not_a_requester_opens_nothing(some_requesters, slack, agora) -> None:
    fleet(agora, ["cam0"])
    with running_bot(some_requesters, slack) as (bot, driver):
        driver.command("list all")
        table = slack.wait_for("response_url", count=3)[-1]
        block = next(b for b in table.params["blocks"] if b.get("block_id") == bulk_form.BLOCK_CHANGE_THESE)
        assert driver.block_action("UMALLORY", block["elements"][0], message={"ts": "1.1", "blocks": []}).ok
        bot.drain()
        assert "not in RECBOT_REQUESTERS" in ephemeral_texts(slack)[-1]
        assert slack.of("views.open") == []


HOSTILE = "Agora said <!channel> <https://evil.example|log in> & *more*"


def test_why_a_job_paused_is_shown_inert_on_its_progress_message_and_in_the_requester_s_notice(services, agora) -> None:
    """A worker's pause quotes Agora's words: no mention, channel-wide ping or link from them."""
    new_job(services, agora, targets(2))
    assert services.store.jobs.transition("j1", "running", "pause", reason=HOSTILE)
    row = services.store.jobs.get("j1")
    assert row is not None
    view = JobControl(services.store.jobs, services.store.job_progress, ttl_seconds=3600).view(row)
    for shown_text in (
        json.dumps(job_progress.progress_blocks(view, services.sealer)),
        job_progress.paused_notice(row),
    ):
        assert "<!channel>" not in shown_text and "<https://evil.example" not in shown_text, shown_text
        assert "&lt;!channel&gt;" in shown_text and "&amp;" in shown_text, shown_text


def test_the_approval_card_shows_the_plan_s_lines_and_a_rejection_s_reason_inert(services) -> None:
    """A plan's lines carry what Agora holds (a bucket) and the storage check's words; a rejection's
    reason is typed: no mention, channel-wide ping or link from any of them."""
    pending_job(services, summary=(f"storage keys: replaced on 2 targets (bucket {HOSTILE})",))
    reason = "Cancelled by <@UDAVE>. " + HOSTILE  # typed by the approver who rejects it
    assert services.store.jobs.transition("j1", "pending", "reject", decided_by="UBOB", reason=reason)
    row = services.store.jobs.get("j1")
    assert row is not None
    shown_text = json.dumps(job_card.card(row, services.sealer, 1, "CAPPROVE", None))
    assert "<!channel>" not in shown_text and "<https://evil.example" not in shown_text and "<@UDAVE>" not in shown_text
    assert "&lt;!channel&gt;" in shown_text


def test_an_end_whose_announcer_stopped_holding_its_claim_is_announced_by_a_later_sweep(services, agora, slack) -> None:
    new_job(services, agora, targets(2))
    assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UALICE>.")
    assert services.store.job_progress.claim_end("j1") is not None  # its announcer stopped right after
    notifier = JobNotifier(client_of(slack), services)
    sweep_jobs(services, notifier)  # the claim is fresh: its holder may be announcing it now
    assert outcome_files(slack) == []
    sweep_jobs(services, notifier, orphan_age=timedelta(0))  # as a sweep does once the claim is stale
    (outcome,) = outcome_files(slack)
    assert "Cancelled by <@UALICE>." in outcome["comment"]
    assert services.store.job_progress.unannounced_ends() == []


def test_a_pause_the_worker_made_redraws_the_job_s_approval_cards(services, agora, slack) -> None:
    """Agora refused recbot's credentials: the cards say paused, as the progress message does."""
    new_job(services, agora, targets(2))
    client = client_of(slack)
    card = client.chat_postMessage(channel="CAPPROVE", text="Fleet-wide change j1 of 2 targets: running")
    services.store.job_approvals.set_cards("j1", [CardRef(card["channel"], card["ts"])])
    assert services.store.jobs.transition("j1", "running", "pause", reason="Agora refused recbot's credentials.")
    notifier = JobNotifier(client, services)
    notifier.worker_paused("j1")
    notifier.drain()
    shown_card = slack.message(card["channel"], card["ts"])
    assert shown_card["text"] == "Fleet-wide change j1 of 2 targets: paused"
    assert "Agora refused recbot's credentials." in json.dumps(shown_card["blocks"])


def test_an_end_whose_outcome_csv_slack_refused_is_announced_by_the_next_sweep(services, agora, slack) -> None:
    new_job(services, agora, targets(2))
    assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UALICE>.")
    notifier = JobNotifier(client_of(slack), services)
    slack.errors["files.completeUploadExternal"] = "internal_error"  # Slack's trouble, which may pass
    assert not notifier.announce_end("j1")
    assert services.store.job_progress.unannounced_ends() == ["j1"]
    refused = len(outcome_files(slack))  # the upload Slack answered with an error
    del slack.errors["files.completeUploadExternal"]
    sweep_jobs(services, notifier)
    assert len(outcome_files(slack)) == refused + 1 and services.store.job_progress.unannounced_ends() == []
    sweep_jobs(services, notifier)
    assert len(outcome_files(slack)) == refused + 1


def test_a_job_that_moved_while_its_progress_message_was_posted_is_shown_as_it_is_now(services, agora, slack) -> None:
    new_job(services, agora, targets(4))
    moved: list[bool] = []

    def paused_meanwhile(call: Call) -> None:
        if call.params.get("text", "").startswith("Fleet-wide job j1 ") and not moved:
            moved.append(True)
            assert services.store.jobs.transition("j1", "running", "pause", reason="Paused by <@UBOB>.")

    slack.before["chat.postMessage"] = paused_meanwhile
    JobNotifier(client_of(slack), services).show("j1")
    (posted,) = progress_posts(slack)
    assert posted.params["text"].startswith("Fleet-wide job j1 (running)")  # drawn before it moved
    assert shown(slack, posted)["text"].startswith("Fleet-wide job j1 (paused)")


def test_a_posting_that_failed_after_its_claim_was_taken_over_frees_only_its_own_claim(services, agora) -> None:
    """A poster that stalled past STALE_POST_CLAIM is taken over; when its post then fails, the
    release it makes must leave the new holder's claim alone, or a third caller posts a second message."""
    new_job(services, agora, targets(2))
    progress = services.store.job_progress
    stalled = progress.claim_post("j1", stale_before=utcnow() - timedelta(minutes=1))
    taker = progress.claim_post("j1", stale_before=utcnow() + timedelta(seconds=1))  # the stalled one is stale
    assert stalled is not None and taker is not None and taker != stalled
    progress.release_post("j1", stalled)
    assert progress.claim_post("j1", stale_before=utcnow() - timedelta(minutes=1)) is None


class SteppingClock:
    """The service's clock: each reading the next of `times` (the last one from then on)."""

    def __init__(self, *times: datetime) -> None:
        self.times = list(times)

    def __call__(self) -> datetime:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def test_a_decision_that_reaches_the_store_after_the_job_expired_is_refused(services) -> None:
    """Read as pending just before its expiry, then decided at it: expired, not rejected or cancelled."""
    pending_job(services, "rejected")
    pending_job(services, "cancelled")
    for job_id in ("rejected", "cancelled"):
        row = services.store.jobs.get(job_id)
        assert row is not None
        clock = SteppingClock(row.expires_at - timedelta(seconds=1), row.expires_at)
        bulk = BulkJobs(
            jobs=services.store.jobs,
            votes=services.store.job_approvals,
            fleet=services.fleet,
            sealer=services.sealer,
            prober=services.prober,
            ttl_seconds=3600,
            required_approvals=1,
            max_targets=2000,
            clock=clock,
        )
        with pytest.raises(Refused, match="has expired"):
            if job_id == "rejected":
                bulk.reject(job_id, "UBOB", "wrong bucket", is_approver=True)
            else:
                bulk.cancel(job_id, "UALICE")
        now = services.store.jobs.get(job_id)
        assert now is not None and (now.state, now.decided_by) == ("pending", None), job_id


def test_an_announcement_that_failed_after_its_claim_was_taken_over_frees_only_its_own_claim(services, agora) -> None:
    """As for posting: a stalled announcer's release leaves the new holder's claim, so the end is announced once."""
    new_job(services, agora, targets(2))
    assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UALICE>.")
    progress = services.store.job_progress
    stalled = progress.claim_end("j1")
    taker = progress.claim_end("j1", stale_before=utcnow() + timedelta(seconds=1))
    assert stalled is not None and taker is not None and taker != stalled
    progress.release_end("j1", stalled)
    assert progress.claim_end("j1") is None
    progress.finish_end("j1", stalled)  # nor does it end the new holder's announcement
    assert progress.unannounced_ends() == ["j1"]
    progress.finish_end("j1", taker)
    assert progress.unannounced_ends() == []
