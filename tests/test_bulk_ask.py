"""`/recording bulk` end to end with signed Slack requests: the modal, every field's bad input
refused on the modal saying what is valid (nothing made), requesters only, the plan in the
requester's DM (card and CSV, keys only as fingerprints, formula cells neutralised), too many
targets, nothing to change, "Change these" on the fleet table, and the approval rules on the
job's one card: no self-approval, approvers only, N-of-M, a repeat vote, reject with a reason,
cancel, expiry; once approved the worker applies it, and no secret is anywhere."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.models import fingerprint
from bot.settings import load_settings
from bot.store.schema import audit_events, job_approvals, job_targets, jobs
from handlers.blocks import bulk_form as form
from handlers.blocks import fleet as fleet_blocks
from handlers.blocks import job_card
from tests.bulk_helpers import (
    CAMERAS,
    NEW_ACCESS,
    NEW_SECRET,
    ROTATION,
    ask,
    bulk_state,
    cards,
    click,
    dms,
    fleet,
    open_bulk,
    plan_update,
    replies,
    shown,
)
from tests.conftest import ACCESS_KEY, APP_ID, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.fakes.slack import FakeSlack
from tests.test_job_worker import wait_until

EVERY_STATE = ("planning", "pending", "approved", "running", "paused", "done", "cancelled", "failed", "rejected")


def all_jobs(bot: RunningBot) -> list[Any]:
    return bot.services.store.jobs.in_state(*EVERY_STATE, "expired")


@pytest.fixture
def overrides() -> dict[str, str]:
    """Settings a test changes (it parametrizes this fixture)."""
    return {}


@pytest.fixture
def running(settings_overrides: dict[str, Any], overrides: dict[str, str]) -> Iterator[RunningBot]:
    """The bot with the test's `overrides`."""
    settings = load_settings(_env_file=None, **{**settings_overrides, **overrides})
    bot = start_bot(settings, fast_agora(settings))
    yield bot
    bot.stop()


@pytest.fixture
def drive(running: RunningBot, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(running.url, SIGNING_SECRET, slack.response_url())


def test_bulk_opens_the_modal_at_once_filled_with_the_app_and_default_region(drive, slack, agora) -> None:
    view = open_bulk(drive, slack, text="bulk --app OTHERAPP")
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks[form.BLOCK_APP]["element"]["initial_value"] == "OTHERAPP"
    assert [o["value"] for o in blocks[form.BLOCK_REGIONS]["element"]["initial_options"]] == ["na"]
    assert agora.calls() == []  # nothing is read before the modal is submitted


@pytest.mark.parametrize("overrides", [{"RECBOT_REQUESTERS": "UALICE"}])
def test_only_requesters_may_open_or_submit_it(drive, slack, running) -> None:
    drive.command("bulk", user="UMALLORY")
    said = slack.wait_for("response_url")[-1]
    assert "not in RECBOT_REQUESTERS" in json.dumps(said.params)
    assert slack.of("views.open") == []
    view = open_bulk(drive, slack)  # a requester's modal, submitted by someone else
    answer = drive.submit("UMALLORY", view, bulk_state(**ROTATION))
    assert "not in RECBOT_REQUESTERS" in json.dumps(answer.json())
    running.drain()
    assert all_jobs(running) == [] and dms(slack) == []


BAD_INPUT = [
    ({"app": "has space"}, form.BLOCK_APP, "App ID"),
    ({"regions": ()}, form.BLOCK_REGIONS, "cn, ap, na, eu"),
    ({"entry": form.PATTERN, "entry_text": ""}, form.BLOCK_ENTRY_TEXT, "* matches any run"),
    ({"entry": form.PATTERN, "entry_text": "live\u0007"}, form.BLOCK_ENTRY_TEXT, "* matches any run"),
    ({"entry": form.LIST, "entry_text": ""}, form.BLOCK_ENTRY_TEXT, "one a line"),
    ({"entry": form.LIST, "entry_text": "live\n.."}, form.BLOCK_ENTRY_TEXT, "Entry point names are"),
    ({"now_bucket": "a" * 300}, form.BLOCK_NOW_BUCKET, "A bucket is 1-"),
    ({"storage": form.KEEP}, form.BLOCK_MP4, "Choose at least one change"),
    ({"now_vendor": None}, form.BLOCK_NOW_VENDOR, "choose the vendor and bucket"),
    ({"now_bucket": ""}, form.BLOCK_NOW_BUCKET, "choose the vendor and bucket"),
    ({"access": ""}, form.BLOCK_ACCESS_KEY, "Enter the new access key"),
    ({"secret": NEW_ACCESS}, form.BLOCK_SECRET_KEY, "the same"),
    ({"secret": "s\u00e9cret-rotated"}, form.BLOCK_SECRET_KEY, "printable ASCII"),  # under its own field
    ({"storage": form.STORAGE, "new_vendor": None, "new_bucket": "b"}, form.BLOCK_NEW_VENDOR, "vendor"),
    ({"storage": form.STORAGE, "new_vendor": 1, "new_bucket": ""}, form.BLOCK_NEW_BUCKET, "bucket"),
    (
        {"storage": form.STORAGE, "new_vendor": 1, "new_region": None, "new_bucket": "b-bucket"},
        form.BLOCK_NEW_REGION,
        "Choose one of Amazon S3's regions",
    ),
    (
        {"storage": form.STORAGE, "new_vendor": 1, "new_region": 999, "new_bucket": "b-bucket"},
        form.BLOCK_NEW_REGION,
        "is not one of",
    ),
    (
        {"storage": form.STORAGE, "new_vendor": 1, "new_region": 0, "new_bucket": "Bad_Bucket!"},
        form.BLOCK_NEW_BUCKET,
        "Amazon",
    ),
]


@pytest.mark.parametrize(("values", "block", "said"), BAD_INPUT)
def test_bad_input_is_refused_on_its_field_saying_what_is_valid(drive, slack, agora, running, values, block, said):
    view = open_bulk(drive, slack)
    answer = drive.submit("UALICE", view, bulk_state(**{**ROTATION, **values}))
    body = answer.json()
    assert body["response_action"] == "errors" and block in body["errors"], body
    assert said in body["errors"][block], body
    assert NEW_SECRET not in answer.text and NEW_ACCESS not in answer.text
    running.drain()
    assert all_jobs(running) == [] and agora.calls() == [] and dms(slack) == []


def test_a_key_rotation_is_planned_approved_once_and_applied_with_no_secret_anywhere(
    drive, slack, agora, running, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet(agora, [*CAMERAS, "=HYPERLINK(1)"])
    posted = ask(drive, slack)
    # The requester: "planning…" at once, then the plan card in its place, and the CSV.
    planning = dms(slack)[0]
    assert "Planning" in planning.params["text"]
    plan = json.dumps(plan_update(slack).params)
    assert "*8* matched: *8* would change, *0* already as asked, *0* unreadable" in plan
    assert job_card.ACTION_CANCEL_PLAN in plan
    (upload,) = [f for f in slack.files.values() if f.get("channel") == "DALICE"]
    rows = list(csv.DictReader(io.StringIO(upload["content"])))
    assert len(rows) == 8 and {r["access_key"] for r in rows} == {fingerprint(ACCESS_KEY)}
    assert "'=HYPERLINK(1)" in {r["entry_point"] for r in rows}  # a formula cell, neutralised
    assert all(fingerprint(NEW_ACCESS) in r["changes"] for r in rows)
    # One approval card for the whole job, its masked summary.
    card = shown(slack, posted)
    assert "storage keys: replaced on 8 targets (bucket rec-bucket)" in card
    assert "Approvals: 0 of 1" in card
    (job,) = all_jobs(running)
    assert job.state == "pending" and job.sealed_secrets is not None and job.target_count == 8
    # The requester cannot approve; a non-approver neither.
    click(drive, posted, "UALICE", job_card.ACTION_APPROVE)
    running.drain()  # each refusal told before the next click: in order
    click(drive, posted, "UMALLORY", job_card.ACTION_APPROVE)
    running.drain()
    told = replies(slack)
    assert "cannot approve your own" in told[0] and "Only the approvers" in told[1]
    assert running.services.bulk.get(job.id).state == "pending" and agora.patches() == {}
    # An approver approves: it starts, and the worker PATCHes every target once.
    click(drive, posted, "UBOB", job_card.ACTION_APPROVE)
    _wait_for_end(running, job.id)
    assert set(agora.patches().values()) == {1} and len(agora.patches()) == 8
    for name in [*CAMERAS, "live"]:
        storage = agora.config(APP_ID, name, "na")["storageConfig"]
        assert (storage["accessKey"], storage["secretKey"]) == (NEW_ACCESS, NEW_SECRET)
    running.drain()
    ended = running.services.bulk.get(job.id)
    assert ended.state == "done" and ended.sealed_secrets is None and ended.started_at is not None
    wait_until(lambda: "*Done*" in shown(slack, posted), "the worker's watcher redraws the card at the end")
    assert "applied 8" in shown(slack, posted)
    assert job_card.BLOCK_BUTTONS not in shown(slack, posted)
    approved = [d for d in dms(slack) if "being applied" in json.dumps(d.params)]
    assert len(approved) == 1 and "<@UBOB>" in json.dumps(approved[0].params)
    _assert_no_secret(slack, caplog, running)


def _wait_for_end(bot: RunningBot, job_id: str) -> None:
    wait_until(lambda: not bot.services.bulk.get(job_id).is_open, "the job ended")


def _assert_no_secret(slack: FakeSlack, caplog: pytest.LogCaptureFixture, bot: RunningBot) -> None:
    secrets = (NEW_ACCESS, NEW_SECRET, ACCESS_KEY, SECRET_KEY)
    sent = slack.payload_text() + "".join(str(f.get("content")) for f in slack.files.values())
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    with bot.services.store.engine.connect() as conn:
        tables = (jobs, job_targets, job_approvals, audit_events)
        stored = "\n".join(str(tuple(row)) for table in tables for row in conn.execute(select(table)))
    for secret in secrets:
        assert secret not in sent and secret not in logged and secret not in stored, secret


@pytest.mark.parametrize("overrides", [{"RECBOT_REQUIRED_APPROVALS": "2"}])
def test_two_approvals_are_needed_and_a_repeat_vote_is_refused(drive, slack, agora, running) -> None:
    fleet(agora)
    posted = ask(drive, slack)
    (job,) = all_jobs(running)
    click(drive, posted, "UBOB", job_card.ACTION_APPROVE)
    running.drain()
    assert "Approvals: 1 of 2 (<@UBOB>)" in shown(slack, posted)
    assert "Your approval of job" in replies(slack)[-1] and "it needs 2 in all" in replies(slack)[-1]
    click(drive, posted, "UBOB", job_card.ACTION_APPROVE)
    running.drain()
    assert "already approved" in replies(slack)[-1]
    assert running.services.bulk.get(job.id).state == "pending" and agora.patches() == {}
    click(drive, posted, "UCAROL", job_card.ACTION_APPROVE)
    _wait_for_end(running, job.id)
    assert len(agora.patches()) == 7 and set(agora.patches().values()) == {1}


def reject_modal(drive, slack, agora, running) -> tuple[Any, Any, dict[str, Any]]:
    """A job asked for, and an approver's click on its Reject (the requester's and a
    non-approver's refused at once, no reason asked): its card, the job, the reason modal."""
    fleet(agora)
    posted = ask(drive, slack)
    (job,) = all_jobs(running)
    for who, refusal in (("UALICE", "use Cancel"), ("UMALLORY", "Only the approvers")):
        told = len(slack.of("response_url"))
        click(drive, posted, who, job_card.ACTION_REJECT)
        assert refusal in slack.wait_for("response_url", count=told + 1)[-1].params["text"]
    assert len(slack.of("views.open")) == 1  # the modal the job was asked in
    click(drive, posted, "UBOB", job_card.ACTION_REJECT)
    modal = slack.wait_for("views.open", count=2)[-1]
    return posted, job, slack.view(modal.params["_view_id"])


def reason(text: str) -> dict[str, Any]:
    return {job_card.BLOCK_REASON: {job_card.ACTION_REASON: {"value": text}}}


def test_an_approver_rejects_with_a_reason(drive, slack, agora, running) -> None:
    posted, job, view = reject_modal(drive, slack, agora, running)
    empty = drive.submit("UBOB", view, reason(" "))
    assert "Say why" in empty.json()["errors"][job_card.BLOCK_REASON]
    assert drive.submit("UBOB", view, reason("wrong bucket <!channel>")).status_code == 200
    running.drain()
    ended = running.services.bulk.get(job.id)
    assert ended.state == "rejected" and ended.sealed_secrets is None and ended.decided_by == "UBOB"
    card = shown(slack, posted)
    assert "*Rejected* by <@UBOB>" in card and "wrong bucket &lt;!channel&gt;" in card
    assert job_card.BLOCK_BUTTONS not in card
    assert any("Rejected" in json.dumps(d.params) for d in dms(slack))
    click(drive, posted, "UCAROL", job_card.ACTION_APPROVE)
    running.drain()
    assert "already rejected by <@UBOB>" in replies(slack)[-1] and agora.patches() == {}


def test_a_reason_quoting_the_jobs_keys_shows_neither_and_a_long_one_is_refused(drive, slack, agora, running) -> None:
    posted, job, view = reject_modal(drive, slack, agora, running)
    long = drive.submit("UBOB", view, reason("x" * 501))
    assert "at most 500 characters" in long.json()["errors"][job_card.BLOCK_REASON]
    assert running.services.bulk.get(job.id).state == "pending"
    drive.submit("UBOB", view, reason(f"secret {NEW_SECRET} with {NEW_ACCESS} is the test pair".ljust(500, ".")))
    running.drain()
    ended = running.services.bulk.get(job.id)
    assert ended.state == "rejected" and ended.reason is not None  # 500 characters: the most, accepted
    assert ended.reason.startswith("secret [redacted] with [redacted] is the test pair...")
    seen = [shown(slack, posted), *(json.dumps(d.params) for d in dms(slack))]
    assert "is the test pair" in seen[0] and not any(NEW_SECRET in t or NEW_ACCESS in t for t in seen)


def test_only_the_requester_cancels_while_it_is_pending(drive, slack, agora, running) -> None:
    fleet(agora)
    posted = ask(drive, slack)
    (job,) = all_jobs(running)
    click(drive, posted, "UBOB", job_card.ACTION_CANCEL)
    running.drain()
    assert "Only the requester can cancel" in replies(slack)[-1]
    click(drive, posted, "UALICE", job_card.ACTION_CANCEL)
    running.drain()
    ended = running.services.bulk.get(job.id)
    assert ended.state == "cancelled" and ended.sealed_secrets is None
    assert "*Cancelled* by <@UALICE>" in shown(slack, posted)
    assert [t.state for t in running.services.store.jobs.targets(job.id)] == ["skipped"] * 7


def test_a_pending_job_past_its_expiry_is_expired_by_the_sweep(drive, slack, agora, running) -> None:
    fleet(agora)
    posted = ask(drive, slack)
    (job,) = all_jobs(running)
    with running.services.store.engine.begin() as conn:  # its expiry passed: the sweep's clock is the real one
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(expires_at=job.created_at))
    wait_until(lambda: "*Expired*" in shown(slack, posted), "the card shows the expiry")
    ended = running.services.bulk.get(job.id)
    assert ended.state == "expired" and ended.sealed_secrets is None
    wait_until(lambda: any("Expired" in json.dumps(d.params) for d in dms(slack)), "the requester is told")
    click(drive, posted, "UBOB", job_card.ACTION_APPROVE)
    running.drain()
    assert "already expired" in replies(slack)[-1] and agora.patches() == {}


@pytest.mark.parametrize("overrides", [{"RECBOT_BULK_MAX_TARGETS": "3"}])
def test_more_targets_than_a_job_takes_are_refused_saying_how_to_narrow_it(drive, slack, agora, running) -> None:
    fleet(agora)
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(**ROTATION))
    said = json.dumps(plan_update(slack).params)
    assert "7 targets match, and one job takes at most 3" in said and "Narrow the filter" in said
    running.drain()
    assert all_jobs(running) == [] and cards(slack) == [] and agora.calls("PATCH") == []


def test_a_second_job_over_the_same_targets_is_refused_naming_who_asked_the_first(drive, slack, agora, running):
    fleet(agora)
    ask(drive, slack)
    view = open_bulk(drive, slack, "UDAVE")
    drive.submit("UDAVE", view, bulk_state(**ROTATION))
    refused = plan_update(slack, "UDAVE").params
    said = refused["blocks"][0]["text"]["text"]
    assert "asked by <@UALICE> and pending: one job at a time per target" in said  # a mention, not escaped text
    assert "&lt;@" not in said and "Nothing was planned" in said
    running.drain()
    assert len(all_jobs(running)) == 1


@pytest.mark.parametrize("hls", [form.UNCHANGED, form.ON])
def test_a_plan_that_would_stop_recording_says_so(drive, slack, agora, running, hls) -> None:
    fleet(agora)  # each records MP4, not HLS
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(mp4=form.OFF, hls=hls))
    said = json.dumps(plan_update(slack).params)
    warned = "7 of them record now and would record nothing once changed (MP4 and HLS off)" in said
    assert warned is (hls == form.UNCHANGED)  # HLS on instead: still recording, nothing to say
    running.drain()
    assert len(all_jobs(running)) == 1  # warned, not refused


def test_agoras_words_in_a_plan_that_failed_are_shown_inert(drive, slack, agora, running) -> None:
    fleet(agora)
    agora.inject(Fault(400, message="<!channel> *look* <https://x.example|here>", path="/fls/entry_points"))
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(**ROTATION))
    said = plan_update(slack).params["blocks"][0]["text"]["text"]
    assert "Nothing was planned: the entry points could not be listed" in said
    assert "&lt;!channel&gt;" in said and "<!channel>" not in said and "<https://" not in said
    running.drain()
    assert all_jobs(running) == []


def test_a_plan_with_nothing_to_change_makes_no_job(drive, slack, agora, running) -> None:
    fleet(agora)
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(mp4=form.ON))  # every one records MP4 already
    said = json.dumps(plan_update(slack).params)
    assert "*7* matched: *0* would change, *7* already as asked" in said and "no job was made" in said
    running.drain()
    assert all_jobs(running) == [] and cards(slack) == []


@pytest.mark.parametrize(
    ("error", "values", "said"),
    [
        ("internal_error", ROTATION, "(internal_error); the plan card above has the counts, and the job's outcome CSV"),
        ("missing_scope", ROTATION, "(missing_scope); trying again will not help"),
        ("internal_error", {"mp4": form.ON}, "(internal_error); the plan card above has the counts."),  # no job
    ],
)
def test_a_plan_csv_slack_did_not_take_is_told_in_the_dm(drive, slack, agora, running, error, values, said) -> None:
    fleet(agora)
    slack.errors["files.getUploadURLExternal"] = error
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(**values))
    plan_update(slack)
    running.drain()
    told = [json.dumps(d.params) for d in dms(slack) if "CSV was not sent" in json.dumps(d.params)]
    assert len(told) == 1 and said in told[0], [d.params for d in dms(slack)]
    assert ("outcome CSV" in told[0]) is (values is ROTATION and error == "internal_error")
    assert len(all_jobs(running)) == (1 if values is ROTATION else 0)  # the plan stands; only its file is lost


def test_the_approval_card_is_posted_when_neither_the_csv_nor_the_word_of_it_reaches_the_dm(
    drive, slack, agora, running
) -> None:
    fleet(agora)
    slack.errors["files.getUploadURLExternal"] = "internal_error"
    # From the upload on, the requester's DM refuses posts: the word that the CSV was lost fails too.
    slack.before["files.getUploadURLExternal"] = lambda _: slack.refused_channels.update(UALICE="channel_not_found")
    posted = ask(drive, slack)
    assert "Approvals: 0 of 1" in shown(slack, posted) and len(all_jobs(running)) == 1


def test_unreadable_targets_are_named_on_the_plan(drive, slack, agora, running) -> None:
    fleet(agora)
    view = open_bulk(drive, slack)
    drive.submit("UALICE", view, bulk_state(entry=form.LIST, entry_text="cam1\nghost", hls=form.ON))
    said = json.dumps(plan_update(slack).params)
    assert "*1* matched: *1* would change" in said and "*1* unreadable" in said
    assert "ghost" in said and "no entry point of this name" in said


def test_change_these_opens_the_modal_with_the_tables_app_and_regions(drive, slack, agora, running) -> None:
    fleet(agora, ["cam0"], region="eu")
    drive.command("list all")
    table = slack.wait_for("response_url", count=3)[-1]
    block = next(b for b in table.params["blocks"] if b.get("block_id") == form.BLOCK_CHANGE_THESE)
    action = block["elements"][0]
    assert drive.block_action("UALICE", action, message={"ts": "1.1", "blocks": []}, channel="CRUN").ok
    opened = slack.wait_for("views.open")[-1]
    blocks = {b.get("block_id"): b for b in opened.params["view"]["blocks"]}
    assert blocks[form.BLOCK_APP]["element"]["initial_value"] == APP_ID
    assert [o["value"] for o in blocks[form.BLOCK_REGIONS]["element"]["initial_options"]] == ["cn", "ap", "na", "eu"]
    forged = {**action, "value": action["value"][:-2] + "xx"}
    drive.block_action("UALICE", forged, message={"ts": "1.1", "blocks": []}, channel="CRUN")
    running.drain()
    assert "not a genuine" in replies(slack)[-1] and len(slack.of("views.open")) == 1
    assert fleet_blocks.BLOCK_PAGES in json.dumps(table.params)


@pytest.mark.parametrize("overrides", [{"RECBOT_APPROVAL_CHANNEL": None}])
def test_without_an_approval_channel_each_approver_but_the_requester_gets_the_card(drive, slack, agora, running):
    fleet(agora)
    view = open_bulk(drive, slack, user="UBOB")
    drive.submit("UBOB", view, bulk_state(**ROTATION))
    (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UCAROL")
    running.drain()
    assert not any(job_card.ACTION_APPROVE in json.dumps(c.params) for c in dms(slack, "UBOB"))
    (job,) = all_jobs(running)
    click(drive, posted, "UCAROL", job_card.ACTION_APPROVE)
    _wait_for_end(running, job.id)
    assert len(agora.patches()) == 7


def test_the_requester_cancels_from_the_plan_in_their_dm(drive, slack, agora, running) -> None:
    fleet(agora)
    posted = ask(drive, slack)
    (job,) = all_jobs(running)
    plan = plan_update(slack)
    buttons = next(b for b in plan.params["blocks"] if b.get("block_id") == job_card.BLOCK_BUTTONS)["elements"]
    message = {"ts": plan.params["ts"], "blocks": plan.params["blocks"]}
    drive.block_action("UMALLORY", buttons[0], message=message, channel="DALICE")
    running.drain()
    assert "Only the requester" in replies(slack)[-1] and running.services.bulk.get(job.id).state == "pending"
    drive.block_action("UALICE", buttons[0], message=message, channel="DALICE")
    running.drain()
    assert running.services.bulk.get(job.id).state == "cancelled"
    assert "*Cancelled* by <@UALICE>" in shown(slack, posted)
    forged = {**buttons[0], "value": job_card.job_value(job.id, running.services.sealer) + "x"}
    drive.block_action("UALICE", forged, message=message, channel="DALICE")
    running.drain()
    assert "not a genuine" in replies(slack)[-1]


def test_a_new_storage_shows_the_chosen_vendors_regions_and_is_planned_for_every_target(drive, slack, agora, running):
    fleet(agora)
    view = open_bulk(drive, slack)
    region = next(b for b in view["blocks"] if b.get("block_id") == form.BLOCK_NEW_REGION)
    assert region["type"] == "context" and "Choose the new vendor" in json.dumps(region)
    chosen = {form.BLOCK_NEW_VENDOR: {form.ACTION_NEW_VENDOR: {"selected_option": {"value": "1"}}}}
    vendor = next(b for b in view["blocks"] if b.get("block_id") == form.BLOCK_NEW_VENDOR)["element"]
    drive.block_action(
        "UALICE", {**vendor, "block_id": form.BLOCK_NEW_VENDOR}, view={**view, "state": {"values": chosen}}
    )
    update = slack.wait_for("views.update")[-1]
    redrawn = slack.view(update.params["view_id"])
    region = next(b for b in redrawn["blocks"] if b.get("block_id") == form.BLOCK_NEW_REGION)
    assert region["element"]["action_id"] == f"{form.ACTION_NEW_REGION}_1" and "US_EAST_1 (0)" in json.dumps(region)
    assert [b.get("block_id") for b in redrawn["blocks"]] == [b.get("block_id") for b in view["blocks"]]
    storage = {"new_vendor": 1, "new_region": 3, "new_bucket": "new-bucket", "access": NEW_ACCESS, "secret": NEW_SECRET}
    posted = len(cards(slack))
    drive.submit("UALICE", redrawn, bulk_state(mp4=form.OFF, storage=form.STORAGE, **storage))
    card = slack.wait_for("chat.postMessage", count=posted + 1, where=lambda c: c.params.get("channel") == "CAPPROVE")
    said = json.dumps(card[-1].params)
    assert "MP4: off for 7 targets" in said and "bucket new-bucket, access key" in said and NEW_ACCESS not in said
