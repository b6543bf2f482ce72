"""What people see of a fleet-wide job while it runs and after it ended, and what they can do
to it, driven with signed Slack requests against the Slack fake and the Agora fake: one
progress message, edited at most once per 2 s of the notifier's clock; the end on it and the
outcome CSV in the requester's DM, once; Pause / Resume / Cancel for the requester and the
approvers only; the requester told when Agora's refusal paused the job; a job left paused
expiring; `/recording jobs`, the App Home and `/recording history` showing jobs; an audit row
per target carrying the job id."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk import WebClient

import bot.jobs
from bot.approvals import Refused
from bot.job_control import JobControl, progress_line
from bot.job_lifecycle import TARGET_STATES
from bot.job_report import outcome_csv
from bot.models import Target
from bot.services import Services, build_services
from bot.settings import Settings
from bot.store.values import JobRow, JobTarget, utcnow
from handlers.blocks import job_card, job_progress
from handlers.job_notify import JobNotifier
from handlers.notify import job_control
from tests.conftest import APP_ID, BOT_TOKEN, fast_agora
from tests.fakes.agora import Fault
from tests.fakes.slack import Call
from tests.job_helpers import (
    NEW_ACCESS,
    NEW_SECRET,
    click_job,
    ephemeral_texts,
    job_button,
    job_state,
    key,
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


def announced(services: Services, job_id: str = "j1") -> bool:
    row = services.store.jobs.get(job_id)
    return row is not None and row.announced_version == row.version


def test_a_job_s_progress_message_is_posted_once_and_ends_with_its_summary_and_csv(
    settings, services, slack, agora
) -> None:
    planned = targets(16)
    new_job(services, agora, planned)
    with running_bot(settings, slack) as (bot, _):
        wait_until(lambda: announced(bot.services), "the end was not announced")
    (posted,) = progress_posts(slack)
    assert posted.params["channel"] == "CAPPROVE"
    final = shown(slack, posted)
    assert final["text"] == "Fleet-wide job j1 (done): 16/16 applied, 0 failed, 0 stale"
    assert not any(b["type"] == "actions" for b in final["blocks"])  # nothing left to click
    (outcome,) = outcome_files(slack)
    assert "Done" in outcome["comment"] and "16/16 applied" in outcome["comment"]
    rows = list(csv.reader(io.StringIO(outcome["content"])))
    assert rows[0] == ["entry point", "region", "outcome", "detail"]
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == sorted((t.entry_point, t.region, "applied") for t in planned)
    everything = slack.payload_text() + outcome["content"]
    assert NEW_SECRET not in everything and NEW_ACCESS not in everything


def test_every_target_s_outcome_is_audited_once_with_the_job_id_and_history_shows_it(
    settings, services, slack, agora
) -> None:
    planned = targets(8)
    new_job(services, agora, planned)
    gone = planned[3]
    del agora.configs[key(gone)]  # Agora answers 404 for it: reported, and the job goes on
    with running_bot(settings, slack) as (bot, driver):
        wait_until(lambda: announced(bot.services), "the end was not announced")
        for t in planned:
            events = [e for e in bot.services.store.audit.history(t, 50) if e.job_id == "j1"]
            assert [e.event for e in events] == ["failed" if t == gone else "applied"], t
            (event,) = events
            assert event.actor == "UALICE" and event.request_id is None
            assert ["Access key", "as found", "...5678"] in event.detail["changes"]
            assert NEW_SECRET not in json.dumps(event.detail) and NEW_ACCESS not in json.dumps(event.detail)
        assert (
            "No such entry point"
            in next(e for e in bot.services.store.audit.history(gone) if e.job_id == "j1").detail["note"]
        )
        driver.command(f"history {planned[0].entry_point} {planned[0].region}")
        history = slack.wait_for("response_url")[-1]
    text = json.dumps(history.params)
    assert "*applied* job `j1` by <@UALICE>" in text and "...5678" in text


class Clock:
    """The notifier's clock, moved by the test alone."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_the_progress_message_is_edited_at_most_once_per_two_seconds_across_notifiers(
    settings, services, slack, agora
) -> None:
    """Two notifiers (as on two instances) hear of a batch every 0.5 s of their clock: between
    them, one edit per 2 s; batches skipped are caught up, and the end waits for its turn."""
    planned = targets(40)
    new_job(services, agora, planned)
    row = services.store.jobs.get("j1")
    assert row is not None and row.started_at is not None
    start = row.started_at
    clock = Clock(start)
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    notifiers = [JobNotifier(client, services, clock, clock.tick), JobNotifier(client, services, clock, clock.tick)]
    jobs = services.store.jobs
    notifiers[0].show("j1")
    (posted,) = progress_posts(slack)
    edits_at: list[datetime] = []
    for batch in range(10):
        for t in jobs.claim("j1", "worker", 4):
            assert jobs.record(t.id, "worker", "confirm", "Applied and confirmed by reading it back.")
        clock.tick(0.5)
        before = len(slack.of("chat.update"))
        notifiers[batch % 2].show("j1")
        if len(slack.of("chat.update")) > before:
            edits_at.append(clock.now)
    assert [(at - start).total_seconds() for at in edits_at] == [2.0, 4.0]
    # As it was at 4 s: 32 done in 4 s, 8 left; what the last batch did waits for the next edit.
    assert (
        shown(slack, posted)["text"] == "Fleet-wide job j1 (running): 32/40 applied, 0 failed, 0 stale, about 1 s left"
    )
    assert jobs.transition("j1", "running", "finish")
    clock.tick(0.5)  # within 2 s of the last edit: the end waits for its turn, then is shown
    notifiers[1].show("j1")
    assert shown(slack, posted)["text"] == "Fleet-wide job j1 (done): 40/40 applied, 0 failed, 0 stale"
    assert clock.now - start == timedelta(seconds=6)  # 2 s after the last edit, at 4 s
    assert len(outcome_files(slack)) == 1
    notifiers[0].show("j1")  # the other instance hears of the end too: announced once
    assert len(outcome_files(slack)) == 1 and len(progress_posts(slack)) == 1


def test_an_edit_drawn_before_the_job_moved_is_drawn_again_so_the_last_one_shows_its_end(
    settings, services, slack, agora
) -> None:
    """One instance draws the running job; before Slack takes that edit, the job is cancelled and
    another instance shows the end. The first edit lands last, so its writer draws the job again."""
    new_job(services, agora, targets(4))
    row = services.store.jobs.get("j1")
    assert row is not None and row.started_at is not None
    clock = Clock(row.started_at)
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    slow, other = JobNotifier(client, services, clock, clock.tick), JobNotifier(client, services, clock, clock.tick)
    slow.show("j1")
    (posted,) = progress_posts(slack)
    cancelled: list[bool] = []

    def meanwhile(call: Call) -> None:
        if not cancelled:
            cancelled.append(True)
            assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UBOB>.")
            other.show("j1", forced=True)

    slack.before["chat.update"] = meanwhile
    clock.tick(2)
    slow.show("j1")
    texts = [c.params["text"] for c in slack.of("chat.update")]
    assert [t.split(":")[0] for t in texts] == [
        "Fleet-wide job j1 (cancelled)",  # the other instance's, landed first
        "Fleet-wide job j1 (running)",  # the slow one's, drawn before the cancel
        "Fleet-wide job j1 (cancelled)",  # drawn again by the slow one: the job had moved
    ]
    assert shown(slack, posted)["text"].startswith("Fleet-wide job j1 (cancelled)")


def test_moves_one_after_another_on_two_instances_are_each_drawn_two_seconds_apart(
    settings, services, slack, agora
) -> None:
    """A pause, a resume and a cancel clicked within a second on two instances: none is skipped,
    each waits for its turn, so Slack gets no two edits of the message within 2 s."""
    new_job(services, agora, targets(4))
    row = services.store.jobs.get("j1")
    assert row is not None and row.started_at is not None
    clock = Clock(row.started_at)
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    notifiers = [JobNotifier(client, services, clock, clock.tick), JobNotifier(client, services, clock, clock.tick)]
    notifiers[0].show("j1")
    (posted,) = progress_posts(slack)
    edits_at: list[datetime] = []
    slack.before["chat.update"] = lambda call: edits_at.append(clock.now)
    jobs = services.store.jobs
    for number, (at, event) in enumerate([("running", "pause"), ("paused", "resume"), ("running", "cancel")]):
        assert jobs.transition("j1", at, event)
        clock.tick(0.3)
        notifiers[number % 2].show("j1", forced=True)
    gaps = [(b - a).total_seconds() for a, b in pairwise(edits_at)]
    assert len(edits_at) == 3 and all(gap >= 2 for gap in gaps), (edits_at, gaps)
    assert shown(slack, posted)["text"].startswith("Fleet-wide job j1 (cancelled)")


def test_requester_and_approver_pause_resume_and_cancel_others_are_refused(settings, services, slack, agora) -> None:
    planned = targets(48)
    new_job(services, agora, planned)
    agora.get_delay = 0.3  # long enough for the clicks to land while it runs
    with running_bot(settings, slack) as (bot, driver):
        wait_until(lambda: len(progress_posts(slack)) == 1, "no progress message")
        (posted,) = progress_posts(slack)
        click_job(driver, slack, posted, "UDAVE", job_progress.ACTION_PAUSE)
        bot.drain()
        assert job_state(bot.services) == "running"
        assert "Only the requester of job `j1` (<@UALICE>) and the approvers" in ephemeral_texts(slack)[-1]

        click_job(driver, slack, posted, "UALICE", job_progress.ACTION_PAUSE)
        bot.drain()
        row = bot.services.store.jobs.get("j1")
        assert row is not None and row.state == "paused" and row.reason == "Paused by <@UALICE>."
        assert row.expires_at > utcnow() + timedelta(seconds=settings.RECBOT_REQUEST_TTL_SECONDS - 60)
        message = shown(slack, posted)
        assert message["text"].startswith("Fleet-wide job j1 (paused)") and "Paused by <@UALICE>." in json.dumps(
            message
        )
        assert job_button(message["blocks"], job_progress.ACTION_RESUME)
        click_job(driver, slack, posted, "UALICE", job_progress.ACTION_PAUSE)  # a double click
        bot.drain()
        assert "Job `j1` is already paused. Paused by <@UALICE>." in ephemeral_texts(slack)[-1]
        wait_until(lambda: bot.services.store.jobs.progress("j1")["in_flight"] == 0, "in flight forever")
        sent = len(agora.calls("PATCH"))
        assert bot.services.store.jobs.progress("j1")["planned"] > 0  # the rest waits

        click_job(driver, slack, posted, "UBOB", job_progress.ACTION_RESUME)  # an approver
        bot.drain()
        assert job_state(bot.services) == "running"
        assert shown(slack, posted)["text"].startswith("Fleet-wide job j1 (running)")
        wait_until(lambda: len(agora.calls("PATCH")) > sent, "nothing sent once resumed")

        click_job(driver, slack, posted, "UDAVE", job_progress.ACTION_CANCEL)
        bot.drain()
        assert job_state(bot.services) == "running"
        click_job(driver, slack, posted, "UCAROL", job_progress.ACTION_CANCEL)  # the other approver
        bot.drain()
        assert job_state(bot.services) == "cancelled"
        click_job(driver, slack, posted, "UALICE", job_progress.ACTION_PAUSE)  # too late: from a stale view
        bot.drain()
        assert "Job `j1` has already ended: cancelled. Cancelled by <@UCAROL>." in ephemeral_texts(slack)[-1]
        wait_until(lambda: announced(bot.services), "the end was not announced")
        counts = bot.services.store.jobs.progress("j1")
        agora.get_delay = 0
    assert 0 < counts["applied"] < len(planned) and counts["skipped"] == len(planned) - counts["applied"]
    assert set(agora.patches().values()) == {1} and len(agora.patches()) == counts["applied"]
    final = shown(slack, posted)
    assert final["text"].startswith("Fleet-wide job j1 (cancelled)") and "Cancelled by <@UCAROL>." in json.dumps(final)
    (outcome,) = outcome_files(slack)
    assert "Cancelled" in outcome["comment"]
    outcomes = [row[2] for row in list(csv.reader(io.StringIO(outcome["content"])))[1:]]
    assert outcomes.count("skipped") == counts["skipped"] and outcomes.count("applied") == counts["applied"]
    assert all("ALICE" not in c.params.get("channel", "") for c in slack.of("chat.postMessage"))  # no pause notice


def test_a_401_from_agora_pauses_the_job_and_tells_the_requester_once(settings, services, slack, agora) -> None:
    new_job(services, agora, targets(12))
    agora.inject(Fault(401, message="credentials revoked", method="PATCH"))
    with running_bot(settings, slack) as (bot, _):
        told = lambda: [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]  # noqa: E731
        wait_until(lambda: len(told()) == 1, "the requester was not told")
        assert job_state(bot.services) == "paused"
        (notice,) = told()
        assert "was paused: Agora refused recbot's credentials (401); paused." in notice.params["text"]
        (posted,) = progress_posts(slack)
        wait_until(lambda: shown(slack, posted)["text"].startswith("Fleet-wide job j1 (paused)"), "not shown paused")
        assert job_button(shown(slack, posted)["blocks"], job_progress.ACTION_RESUME)
        row = bot.services.store.jobs.get("j1")
        assert row is not None and row.expires_at > utcnow() + timedelta(minutes=30)  # waits for a person
    assert len(told()) == 1


def test_a_job_left_paused_expires_and_its_end_is_announced(settings, services, slack, agora) -> None:
    planned = targets(6)
    new_job(services, agora, planned)
    assert services.store.jobs.transition("j1", "running", "pause", expires_at=utcnow() - timedelta(seconds=1))
    with running_bot(settings, slack) as (bot, _):
        wait_until(lambda: announced(bot.services), "the expiry was not announced")
        row = bot.services.store.jobs.get("j1")
        assert row is not None and row.state == "expired" and row.sealed_secrets is None
    (posted,) = progress_posts(slack)
    assert shown(slack, posted)["text"] == "Fleet-wide job j1 (expired): 0/6 applied, 0 failed, 0 stale, 6 not sent"
    (outcome,) = outcome_files(slack)
    assert "left paused past its expiry" in outcome["comment"]
    assert agora.calls("PATCH") == []


def test_recording_jobs_lists_running_and_ended_jobs_with_buttons_for_who_may_act(
    settings, services, slack, agora
) -> None:
    new_job(services, agora, targets(4, "old"), job_id="j0")
    assert services.store.jobs.transition("j0", "running", "cancel", reason="Cancelled by <@UALICE>.")
    new_job(services, agora, targets(4), job_id="j1", state="approved")  # approved: the worker leaves it
    with running_bot(settings, slack) as (_, driver):
        for user, buttons in (("UALICE", True), ("UBOB", True), ("UDAVE", False)):
            before = len(slack.of("response_url"))
            driver.command("jobs", user=user)
            answer = slack.wait_for("response_url", count=before + 1)[-1].params
            blocks = {b.get("block_id"): b for b in answer["blocks"]}
            assert answer["response_type"] == "ephemeral"
            assert "Approved, about to start" in blocks[f"{job_progress.LIST_PREFIX}j1"]["text"]["text"]
            assert "Cancelled" in blocks[f"{job_progress.LIST_PREFIX}j0"]["text"]["text"]
            assert (f"{job_progress.LIST_PREFIX}j1_buttons" in blocks) is buttons, user
            assert f"{job_progress.LIST_PREFIX}j0_buttons" not in blocks  # ended: nothing to do
        before = len(slack.of("response_url"))
        driver.command("jobs now")  # acked on arrival: its answer comes after
        slack.wait_for("response_url", count=before + 1)
        assert "`/recording jobs` takes no arguments." in ephemeral_texts(slack)[-1]


def test_the_app_home_shows_the_jobs(settings, services, slack, agora) -> None:
    new_job(services, agora, targets(4), state="approved")
    with running_bot(settings, slack) as (_, driver):
        driver.home_opened("UALICE")
        wait_until(lambda: slack.home("UALICE") is not None, "no home")
    home = slack.home("UALICE")
    assert home is not None
    (jobs,) = [b for b in home["blocks"] if b.get("block_id") == "home_jobs"]
    assert "`j1` by <@UALICE>: 0/4 applied, 0 failed, 0 stale" in jobs["text"]["text"]


def job(state: str = "running", started: datetime | None = None) -> JobRow:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    return JobRow("j1", "UALICE", state, {}, None, 0, 0, now, now, now, None, 1, started_at=started)


def counts(**by_state: int) -> dict[str, int]:
    return {state: by_state.get(state, 0) for state in TARGET_STATES}


def test_the_progress_figures_and_their_time_left() -> None:
    started = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    now = started + timedelta(seconds=40)
    figures = counts(applied=400, failed=3, stale=2, planned=373, in_flight=22)
    assert progress_line(job(started=started), figures, now) == "400/800 applied, 3 failed, 2 stale, about 39 s left"
    assert progress_line(job("paused", started), figures, now) == "400/800 applied, 3 failed, 2 stale"
    none_done = counts(planned=10, unchanged=2)
    assert progress_line(job(started=started), none_done, now) == "0/10 applied, 0 failed, 0 stale, 2 already as asked"
    last = counts(applied=10, failed=1, in_flight=1)  # one Agora did not answer: read back later
    assert progress_line(job(started=started), last, now) == "10/12 applied, 1 failed, 0 stale, 1 in flight"
    one_to_send = counts(applied=10, planned=1, in_flight=1)
    assert progress_line(job(started=started), one_to_send, now).endswith("s left")
    ended = counts(applied=5, skipped=4, in_flight=1)
    assert progress_line(job("cancelled", started), ended, now) == (
        "5/10 applied, 0 failed, 0 stale, 4 not sent, 1 still in flight"
    )


@given(st.dictionaries(st.sampled_from(TARGET_STATES), st.integers(0, 10_000)), st.integers(0, 100_000))
def test_the_figures_count_every_target_to_change_and_promise_no_time_before_one_is_done(
    given_counts: dict[str, int], elapsed: int
) -> None:
    figures = counts(**given_counts)
    started = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    line = progress_line(job(started=started), figures, started + timedelta(seconds=elapsed))
    total = sum(figures.values()) - figures["unchanged"]
    assert line.startswith(
        f"{figures['applied']}/{total} applied, {figures['failed']} failed, {figures['stale']} stale"
    )
    done = figures["applied"] + figures["failed"] + figures["stale"]
    assert ("left" in line) == bool(done and figures["planned"])
    assert line.endswith(f", {figures['in_flight']} in flight") == bool(
        done and not figures["planned"] and figures["in_flight"]
    )


def test_the_outcome_csv_neutralises_formulas() -> None:
    now = utcnow()
    rows = [
        JobTarget(
            1,
            "j1",
            Target.model_construct(app_id=APP_ID, entry_point=name, region="na"),
            {},
            state,
            1,
            None,
            None,
            detail,
            now,
        )
        for name, state, detail in [
            ('=HYPERLINK("http://x")', "applied", "Applied and confirmed by reading it back."),
            ("+cmd", "failed", "-Refused by Agora: @SUM(1)"),
            ("live", "in_flight", None),
        ]
    ]
    lines = list(csv.reader(io.StringIO(outcome_csv(rows))))
    assert lines[1:] == [
        ['\'=HYPERLINK("http://x")', "na", "applied", "Applied and confirmed by reading it back."],
        ["'+cmd", "na", "failed", "'-Refused by Agora: @SUM(1)"],
        ["live", "na", "in flight", ""],
    ]


def test_a_person_s_move_is_one_compare_and_set_and_a_forged_job_is_refused(services, agora) -> None:
    new_job(services, agora, targets(2))
    control = JobControl(services.store.jobs, services.store.job_progress, ttl_seconds=600)
    with pytest.raises(Refused, match="There is no job `nope`"):
        control.move("nope", "pause", "UALICE", is_approver=False)
    with pytest.raises(Refused, match="Only the requester"):
        control.move("j1", "cancel", "UDAVE", is_approver=False)
    assert control.move("j1", "cancel", "UDAVE", is_approver=True).state == "cancelled"
    with pytest.raises(Refused, match=r"already ended: cancelled\. Cancelled by <@UDAVE>\."):
        control.move("j1", "cancel", "UALICE", is_approver=False)


def test_targets_a_dead_claimer_left_in_flight_in_a_cancelled_job_are_read_back_not_sent(
    settings, services, slack, agora, monkeypatch
) -> None:
    monkeypatch.setattr(bot.jobs, "STRANDED_AFTER", timedelta(seconds=0.5))
    landed, untouched, elsewhere = planned = targets(3)
    new_job(services, agora, planned)
    assert len(services.store.jobs.claim("j1", "dead-instance", 10)) == 3
    rotated_config = agora.config(*key(landed))
    rotated_config["storageConfig"] |= {"accessKey": NEW_ACCESS, "secretKey": NEW_SECRET}
    agora.put(*key(landed), rotated_config)  # its PATCH landed before its claimer died
    changed = agora.config(*key(elsewhere))
    changed["mp4Config"] = {"enabled": False}
    agora.put(*key(elsewhere), changed)  # someone else changed it
    assert services.store.jobs.transition("j1", "running", "cancel", reason="Cancelled by <@UALICE>.")
    with running_bot(settings, slack) as (bot_, _):
        wait_until(lambda: announced(bot_.services), "the end was not announced")
        found = {key(t.target): (t.state, t.detail) for t in bot_.services.store.jobs.targets("j1")}
        audited = [e.event for t in planned for e in bot_.services.store.audit.history(t) if e.job_id == "j1"]
    assert found == {
        key(landed): ("applied", "Applied (found in effect by reading it back after the job ended)."),
        key(untouched): ("failed", "Not sent: the job ended (cancelled) before it was."),
        key(elsewhere): ("stale", "Changed since the plan read it, so left as it is."),
    }
    assert agora.calls("PATCH") == [] and sorted(audited) == ["applied", "failed", "stale"]
    (outcome,) = outcome_files(slack)
    assert "1/3 applied, 1 failed, 1 stale" in outcome["comment"] and "in flight" not in outcome["content"]


def test_a_job_done_with_a_target_failed_or_stale_is_not_shown_as_a_success(services, agora) -> None:
    """Done means no target is left to work on, not that every one applied: with one failed, the
    progress message, the lists and the approval card mark it with a warning, not a green check."""
    new_job(services, agora, targets(3))
    jobs = services.store.jobs
    first, *rest = jobs.claim("j1", "worker", 3)
    assert jobs.record(first.id, "worker", "fail", "Refused by Agora: 404.")
    for t in rest:
        assert jobs.record(t.id, "worker", "confirm", "Applied and confirmed by reading it back.")
    assert jobs.transition("j1", "running", "finish")
    job = jobs.get("j1")
    assert job is not None
    view = job_control(services).view(job)
    heading = json.dumps(job_progress.progress_blocks(view, services.sealer))
    listed = json.dumps(job_progress.jobs_list([view], services.sealer, set()))
    card = job_card.status_line(job, 1, view.counts)
    for shown_as in (heading, listed, card):
        assert ":warning:" in shown_as and ":white_check_mark:" not in shown_as, shown_as
    clean = replace(view, counts={**view.counts, "failed": 0, "applied": 3})
    assert ":white_check_mark: Done" in json.dumps(job_progress.progress_blocks(clean, services.sealer))
    assert ":white_check_mark:" in job_card.status_line(job, 1, clean.counts)


def test_a_job_awaiting_approval_is_listed_without_buttons(services, agora) -> None:
    """An approver who lost the card finds the job in `/recording jobs` (deciding it stays on its
    card and the App Home's rules); nobody can pause or cancel it from the list."""
    new_job(services, agora, targets(2))
    services.store.jobs.create(
        job_id="j2",
        requester="UCAROL",
        change={"hls": True},
        sealed_secrets=None,
        expires_at=utcnow() + timedelta(hours=1),
    )
    assert services.store.jobs.transition("j2", "planning", "plan")
    views = job_control(services).overview()
    assert [(v.job.id, v.job.state) for v in views] == [("j2", "pending"), ("j1", "running")]
    blocks = job_progress.jobs_list(views, services.sealer, {"j1", "j2"})
    text = json.dumps(blocks)
    assert ":lock: Awaiting approval* `j2` by <@UCAROL>" in text
    buttons = [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons and all(job_progress.read_button_value(v, services.sealer) == "j1" for v in buttons)
