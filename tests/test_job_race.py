"""Two bot instances on one PostgreSQL, each running its job worker and its job notifier:
Pause, Resume and Cancel clicked at once on both while a job runs, round after round. Every
target is PATCHed at most once (exactly once when the job ends done), the one progress
message ends showing how the job ended, and the requester is told of the end once."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.job_lifecycle import ENDED_JOB_STATES
from bot.settings import load_settings
from handlers.blocks import job_progress
from handlers.job_notify import DRAIN_SECONDS
from tests.conftest import SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.slack import Call
from tests.job_helpers import key, new_job, outcome_files, progress_posts, shown, targets, wait_until


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


ROUNDS = 12
TARGETS = 40
PAUSE, RESUME, CANCEL = job_progress.ACTION_PAUSE, job_progress.ACTION_RESUME, job_progress.ACTION_CANCEL
# (instance, who, button): the requester and both approvers, on both instances at once.
CLICKS = [(0, "UALICE", PAUSE), (1, "UBOB", PAUSE), (0, "UBOB", RESUME), (1, "UALICE", RESUME), (0, "UCAROL", PAUSE)]


def press(driver: SlackDriver, posted: Call, user: str, action_id: str, value: str) -> None:
    """A click on the progress message, whatever buttons the clicker's client shows now."""
    action = {"action_id": action_id, "value": value, "block_id": job_progress.BLOCK_BUTTONS}
    message = {"ts": posted.params["_ts"], "blocks": posted.params["blocks"]}
    assert driver.block_action(user, action, message=message, channel=posted.params["channel"]).status_code == 200


def test_pause_resume_and_cancel_at_once_on_two_instances(shared_settings, slack, agora) -> None:
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    services = bots[0].services
    agora.get_delay = 0.05  # a job lasts long enough for the clicks to land while it runs
    # Slack takes each edit a while, some longer than others: an edit drawn first may land last.
    jitter = random.Random(19)
    slack.before["chat.update"] = lambda call: time.sleep(jitter.random() * 0.2)
    ends: dict[str, int] = {}
    try:
        with ThreadPoolExecutor(len(CLICKS) + 1) as pool:
            for round_no in range(ROUNDS):
                job_id, where = f"r{round_no}", f"round {round_no}"
                planned = targets(TARGETS, prefix=f"r{round_no}ep")
                agora.clear()
                new_job(services, agora, planned, job_id=job_id)
                wait_until(lambda j=job_id: len(progress_posts(slack, j)) == 1, f"{where}: no progress message")
                (posted,) = progress_posts(slack, job_id)
                value = job_progress.button_value(job_id, services.sealer)
                clicks = [*CLICKS, (1, "UALICE", CANCEL)] if round_no % 2 == 0 else CLICKS
                list(pool.map(lambda c, p=posted, v=value: press(drivers[c[0]], p, c[1], c[2], v), clicks))
                for bot in bots:
                    bot.drain()
                if services.store.jobs.get(job_id).state == "paused":  # let it finish
                    press(drivers[round_no % 2], posted, "UALICE", RESUME, value)
                row = services.store.jobs.get(job_id)
                wait_until(lambda j=job_id: announced(services, j), f"{where}: the end was not announced")
                time.sleep(DRAIN_SECONDS * 3)  # any edit still being drawn lands before the message is read
                row = services.store.jobs.get(job_id)
                assert row is not None and row.state in ENDED_JOB_STATES, where
                ends[row.state] = ends.get(row.state, 0) + 1
                patches = agora.patches()
                assert all(count == 1 for count in patches.values()), f"{where}: {patches}"
                counts = services.store.jobs.progress(job_id)
                assert len(patches) == counts["applied"] and counts["in_flight"] == 0, f"{where}: {counts}"
                if row.state == "done":
                    assert set(patches) == {key(t) for t in planned}, where
                assert len(progress_posts(slack, job_id)) == 1, where
                final = shown(slack, posted)
                assert final["text"].startswith(f"Fleet-wide job {job_id} ({row.state}): "), f"{where}: {final['text']}"
                assert not any(b["type"] == "actions" for b in final["blocks"]), where
                (outcome,) = outcome_files(slack, job_id=job_id)
                assert outcome["content"].count("\n") == TARGETS + 1, where
                told = [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                assert told == [], f"{where}: the requester was sent {json.dumps([c.params for c in told])}"
                audited = [e for t in planned for e in services.store.audit.history(t, 10) if e.job_id == job_id]
                assert sorted(e.event for e in audited) == ["applied"] * counts["applied"], where
    finally:
        for bot in bots:
            bot.stop()
    assert ends.get("cancelled", 0) > 0 and ends.get("done", 0) > 0, ends  # both ends were raced


def announced(services: Any, job_id: str) -> bool:
    row = services.store.jobs.get(job_id)
    return row is not None and row.state in ENDED_JOB_STATES and row.announced_version == row.version
