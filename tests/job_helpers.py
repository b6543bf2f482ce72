"""Helpers for what people see of fleet-wide jobs: a running job made as the approval flow
leaves it, and its progress message, buttons and outcome files read from the Slack fake."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from bot.bulk_change import Change
from bot.models import RecordingConfig, Target
from bot.observation import observe
from bot.services import Services
from bot.settings import Settings
from bot.store.values import PlannedTarget, utcnow
from handlers.blocks import job_progress
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import Call, FakeSlack

NEW_ACCESS = "AKIANEWACCESS5678"
NEW_SECRET = "NEWSECRET-abc-123-rotated"
ROTATE = Change.model_validate({"storage": {"kind": "keys", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}})
REGIONS = ("na", "eu", "ap", "cn")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout  # a generous bound that only catches what never gets there
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def targets(count: int, prefix: str = "ep") -> list[Target]:
    return [Target(app_id=APP_ID, entry_point=f"{prefix}{i // 4}", region=REGIONS[i % 4]) for i in range(count)]


def key(t: Target) -> tuple[str, str, str]:
    return (t.app_id, t.entry_point, t.region)


def new_job(
    services: Services,
    agora: AgoraEmulator,
    planned: list[Target],
    *,
    job_id: str = "j1",
    requester: str = "UALICE",
    state: str = "running",
    change: Change = ROTATE,
) -> None:
    """A job of `change` over `planned` (each held by Agora as LIVE_CONFIG when the plan read it),
    moved as approval and the start leave it: to `state`, "approved" or "running"."""
    live = RecordingConfig.model_validate(LIVE_CONFIG)
    for t in planned:
        agora.put(t.app_id, t.entry_point, t.region, LIVE_CONFIG)
    jobs = services.store.jobs
    public, keys = change.stored()
    jobs.create(
        job_id=job_id,
        requester=requester,
        change=public,
        sealed_secrets=services.sealer.seal(keys) if keys else None,
        expires_at=utcnow() + timedelta(hours=1),
        targets=[PlannedTarget(t, asdict(observe(live, services.sealer.digest_key))) for t in planned],
    )
    assert jobs.transition(job_id, "planning", "plan", summary=json.dumps([f"{len(planned)} targets matched"]))
    assert jobs.transition(job_id, "pending", "approve", decided_by="UBOB")
    if state == "running":
        assert jobs.transition(job_id, "approved", "start", started_at=utcnow())


def job_state(services: Services, job_id: str = "j1") -> str:
    row = services.store.jobs.get(job_id)
    assert row is not None
    return row.state


def progress_posts(slack: FakeSlack, job_id: str = "j1") -> list[Call]:
    """The progress messages posted for `job_id`."""
    return [c for c in slack.of("chat.postMessage") if c.params.get("text", "").startswith(f"Fleet-wide job {job_id} ")]


def shown(slack: FakeSlack, posted: Call) -> dict[str, Any]:
    """The progress message as Slack shows it now (its last edit)."""
    return slack.message(posted.params["channel"], posted.params["_ts"])


def job_button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element["action_id"] == action_id:
                return element
    raise AssertionError(f"no {action_id} button in {blocks}")


def click_job(driver: SlackDriver, slack: FakeSlack, posted: Call, user: str, action_id: str) -> None:
    """Click a button of the progress message: as Slack shows it now, or as it was first posted
    (a button stays valid: the job's state decides what a click does)."""
    blocks = shown(slack, posted)["blocks"]
    try:
        found = job_button(blocks, action_id)
    except AssertionError:  # a click from a client that had not redrawn it yet
        found = job_button(posted.params["blocks"], action_id)
    action = {**found, "block_id": job_progress.BLOCK_BUTTONS}
    message = {"ts": posted.params["_ts"], "blocks": blocks}
    assert driver.block_action(user, action, message=message, channel=posted.params["channel"]).status_code == 200


def outcome_files(slack: FakeSlack, user: str = "UALICE", job_id: str = "j1") -> list[dict[str, Any]]:
    """The outcome CSVs sent into `user`'s direct messages for `job_id`, with their comment."""
    found = []
    for call in slack.of("files.completeUploadExternal"):
        if call.params.get("channel_id") != "D" + user.removeprefix("U"):
            continue
        listed = json.loads(call.params["files"]) if isinstance(call.params.get("files"), str) else call.params["files"]
        for item in listed:
            stored = slack.files[item["id"]]
            if stored.get("filename") == f"job-{job_id}-outcome.csv":
                found.append({**stored, "comment": call.params.get("initial_comment", "")})
    return found


def ephemeral_texts(slack: FakeSlack) -> list[str]:
    return [json.dumps(c.params, ensure_ascii=False) for c in slack.of("response_url")]


@contextmanager
def running_bot(settings: Settings, slack: FakeSlack) -> Iterator[tuple[RunningBot, SlackDriver]]:
    """The bot started after the test made its job (so its worker finds the job as made), and a driver of it."""
    bot = start_bot(settings, fast_agora(settings))
    try:
        yield bot, SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    finally:
        bot.stop()
