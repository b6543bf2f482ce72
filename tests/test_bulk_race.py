"""Two bot instances on one PostgreSQL: approvals of one fleet-wide job clicked at once on
both start it exactly once, every target is PATCHed once, every card ends showing the job
done, and the requester is told once that it is being applied."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.settings import load_settings
from handlers.blocks import job_card
from tests.bulk_helpers import CAMERAS, ask, click, dms, fleet, replies, shown
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.test_job_worker import wait_until

ROUNDS = 10
CLICKS = 12
TARGETS = [(APP_ID, name, "na") for name in [*CAMERAS, "live"]]


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{
            **settings_overrides,
            "DATABASE_URL": postgres_url,
            "RECBOT_SEAL_KEY": Fernet.generate_key().decode(),
            "RECBOT_REQUIRED_APPROVALS": "2",
        },
    )


def test_approvals_clicked_at_once_on_two_instances_start_the_job_once(shared_settings, slack, agora, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.bulk_jobs")
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    approvers = ["UBOB", "UCAROL"]
    try:
        with ThreadPoolExecutor(CLICKS) as pool:
            for round_no in range(ROUNDS):
                where = f"round {round_no}"
                fleet(agora)
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)
                slack.clear()
                agora.clear()
                caplog.clear()
                posted = ask(drivers[round_no % 2], slack)
                job_id = next(j.id for j in bots[0].services.store.jobs.in_state("pending"))
                clicks = [(drivers[i % 2], approvers[(i // 2) % 2]) for i in range(CLICKS)]
                list(pool.map(lambda c, p=posted: click(c[0], p, c[1], job_card.ACTION_APPROVE), clicks))
                wait_until(lambda j=job_id: bots[0].services.bulk.get(j).state == "done", f"{where}: done")
                for bot in bots:
                    bot.drain()
                wait_until(lambda p=posted: "*Done*" in shown(slack, p), f"{where}: the card shows the end")
                started = [r for r in caplog.records if r.getMessage() == f"job {job_id} started"]
                assert len(started) == 1, f"{where}: started {len(started)} times"
                assert agora.patches() == dict.fromkeys(TARGETS, 1), f"{where}: {agora.patches()}"
                card = shown(slack, posted)
                assert "applied 7, failed 0, stale 0, skipped 0 of 7" in card, f"{where}: {card}"
                assert job_card.BLOCK_BUTTONS not in card and "<@UBOB>" in card and "<@UCAROL>" in card, where
                told = [d for d in dms(slack) if "being applied" in json.dumps(d.params)]
                assert len(told) == 1, f"{where}: the requester was told {len(told)} times"
                answers = replies(slack)
                assert len(answers) == CLICKS - 1, f"{where}: {answers}"  # all but the click that started it
                assert sum("is counted" in a for a in answers) == 1, f"{where}: {answers}"
                job = bots[1].services.bulk.get(job_id)
                assert job.sealed_secrets is None and sorted(job.approvers) == approvers, where
    finally:
        for bot in bots:
            bot.stop()
