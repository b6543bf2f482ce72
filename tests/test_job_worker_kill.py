"""Exactly once per target across instances and a kill -9: two instances on one PostgreSQL
work one job, one here and one in its own process (as `./run --http` runs it). Halfway
through, the process is killed with SIGKILL, whatever it was doing, and started again. Every
round, every target reached Agora with exactly one PATCH, none was skipped, every one is
applied, and the job is done: what the dead one left in flight was reconciled by reading it
back, sent only if nothing had landed."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import bot.jobs
from bot.services import Services
from bot.settings import load_settings
from tests.conftest import fast_agora
from tests.driver import start_bot
from tests.fakes.agora import AgoraEmulator
from tests.test_budget_instances import start_process
from tests.test_job_worker import key, new_job, rotated, state, targets, wait_until

ROUNDS = 4
TARGETS = 60
RATE = "40"  # AGORA_RATE_LIMIT's default: a round's 180 calls take a few seconds, so both instances work on it
# The surviving instance takes a dead claimer's targets over sooner than STRANDED_AFTER, yet
# long after any heartbeat of a live one (every 2 s) is due: a live claimer is never taken for dead.
TAKE_OVER_AFTER = timedelta(seconds=8)


@pytest.fixture
def shared(settings_overrides: dict[str, Any], postgres_url: str) -> dict[str, str]:
    """The settings every instance gets, as environment variables."""
    return {k: str(v) for k, v in settings_overrides.items()} | {
        "DATABASE_URL": postgres_url,
        "RECBOT_SEAL_KEY": Fernet.generate_key().decode(),
        "AGORA_RATE_LIMIT": RATE,
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_job_over_two_instances_patches_every_target_once_through_a_kill_9(
    shared: dict[str, str], agora: AgoraEmulator, tmp_path: Path, monkeypatch, processes
) -> None:
    monkeypatch.setattr(bot.jobs, "STRANDED_AFTER", TAKE_OVER_AFTER)
    settings = load_settings(_env_file=None, **shared)
    here = start_bot(settings, fast_agora(settings))  # first: it creates the schema
    services = here.services
    reconciled = 0
    try:
        processes.append(start_process(shared, _folder(tmp_path, 0))[0])
        for round_no in range(ROUNDS):
            where = f"round {round_no}"
            planned = targets(TARGETS, prefix=f"r{round_no}ep")
            job_id = f"job{round_no}"
            new_job(services, agora, planned, job_id=job_id)
            wait_until(
                lambda j=job_id: sum(agora.landed().values()) >= TARGETS // 2 and _claimed_by_others(services, j),
                f"{where}: the job did not get halfway on both instances",
            )
            processes[-1].send_signal(signal.SIGKILL)
            processes[-1].wait(10)
            processes.append(start_process(shared, _folder(tmp_path, round_no + 1))[0])
            wait_until(lambda j=job_id: state(services, j) == "done", f"{where}: the job did not finish", 60)
            assert agora.patches() == {key(t): 1 for t in planned}, where
            assert all(rotated(agora, t) for t in planned), where
            rows = services.store.jobs.targets(job_id)
            assert [r.state for r in rows] == ["applied"] * len(planned), where
            assert len({r.claimed_by for r in rows}) >= 2, where  # both instances worked on it
            reconciled += sum(r.attempts > 1 for r in rows)
            agora.clear()
    finally:
        here.stop()
    assert reconciled > 0  # the kills left targets in flight, and they were taken over


def _claimed_by_others(services: Services, job_id: str) -> bool:
    """Whether another instance than this one has claimed targets of the job."""
    claimers = {r.claimed_by for r in services.store.jobs.targets(job_id)}
    return bool(claimers - {None, services.jobs.claimer})


def _folder(tmp_path: Path, n: int) -> Path:
    """Each process's own folder, for its log."""
    folder = tmp_path / f"instance{n}"
    folder.mkdir()
    return folder
