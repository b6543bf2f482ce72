"""The job worker on the embedded SQLite against the Agora fake: each target of a running job
is read, PATCHed only if it is still as the plan saw it, read back and recorded once; a target
refused by Agora fails and the job goes on; Agora refusing recbot, or not answering properly
five times in a row, pauses the job; a PATCH whose answer was lost is confirmed by its
read-back, never sent twice; and a target left in flight by a dead claimer is reconciled by
reading it back, while one whose claimer is alive but slow is left to it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

import bot.jobs
from bot.bulk_change import Change
from bot.jobs import JobRunner
from bot.models import Target
from bot.seal import Sealer
from bot.services import Services, build_services
from bot.settings import Settings
from bot.store.schema import jobs as jobs_table
from bot.store.values import utcnow
from tests.conftest import APP_ID, LIVE_CONFIG, fast_agora
from tests.fakes.agora import AgoraEmulator, Fault
from tests.job_helpers import NEW_ACCESS, NEW_SECRET, ROTATE, key, new_job, targets, wait_until


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings, agora=fast_agora(settings))
    yield built
    built.close()


@contextmanager
def working(runner: JobRunner) -> Iterator[JobRunner]:
    """The runner's worker and heartbeat running, stopped as a shutdown stops them."""
    tasks = runner.start()
    try:
        yield runner
    finally:
        for task in tasks:
            task.stop()


def rotated(agora: AgoraEmulator, t: Target) -> bool:
    storage = agora.config(t.app_id, t.entry_point, t.region)["storageConfig"]
    return (storage["accessKey"], storage["secretKey"]) == (NEW_ACCESS, NEW_SECRET)


def state(services: Services, job_id: str = "j1") -> str:
    row = services.store.jobs.get(job_id)
    assert row is not None
    return row.state


def outcomes(services: Services, job_id: str = "j1") -> dict[tuple[str, str, str], tuple[str, str | None]]:
    return {key(r.target): (r.state, r.detail) for r in services.store.jobs.targets(job_id)}


def test_every_target_is_patched_once_read_back_and_the_job_done(services, agora) -> None:
    planned = targets(12)
    new_job(services, agora, planned)
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    assert agora.patches() == {key(t): 1 for t in planned}
    assert all(rotated(agora, t) for t in planned)
    assert set(outcomes(services).values()) == {("applied", "Applied and confirmed by reading it back.")}
    row = services.store.jobs.get("j1")
    assert row is not None and row.sealed_secrets is None  # purged when it ended
    rows = services.store.jobs.targets("j1")
    assert {(r.attempts, r.claimed_by) for r in rows} == {(1, services.jobs.claimer)}
    storage = agora.config(APP_ID, "ep0", "na")["storageConfig"]
    assert (storage["vendor"], storage["region"], storage["bucket"]) == (1, 0, "rec-bucket")  # only the keys


def test_a_target_changed_since_the_plan_is_stale_and_not_overwritten(services, agora) -> None:
    planned = targets(4)
    new_job(services, agora, planned)
    moved = planned[1]
    elsewhere = {**LIVE_CONFIG, "hlsConfig": {"enabled": True}}
    agora.put(moved.app_id, moved.entry_point, moved.region, elsewhere)  # after the plan read it
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    assert agora.patches() == {key(t): 1 for t in planned if t != moved}
    assert agora.config(moved.app_id, moved.entry_point, moved.region) == elsewhere
    found = outcomes(services)
    assert found[key(moved)] == ("stale", "Changed since the plan read it, so left as it is.")
    assert [s for s, _ in found.values()].count("applied") == 3


def test_a_target_agora_answers_404_for_fails_and_the_job_goes_on(services, agora) -> None:
    planned = targets(8)
    new_job(services, agora, planned)
    gone = planned[2]
    del agora.configs[key(gone)]  # deleted in Agora after the plan
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    found = outcomes(services)
    gone_state, detail = found.pop(key(gone))
    assert gone_state == "failed" and detail is not None and detail.startswith("Refused by Agora: No such entry point")
    assert {s for s, _ in found.values()} == {"applied"}
    assert agora.patches() == {key(t): 1 for t in planned if t != gone}


def test_a_redirect_pauses_the_job_naming_the_setting_and_sends_nothing_more(services, agora) -> None:
    planned = targets(12)
    new_job(services, agora, planned)
    agora.inject(*[Fault(307, {"Location": "https://elsewhere.example/"}, method="PATCH")] * 50)
    with working(services.jobs):
        wait_until(lambda: state(services) == "paused", "the job was not paused")
        row = services.store.jobs.get("j1")
        assert row is not None and row.reason is not None and "check AGORA_API_URL" in row.reason
        time.sleep(1.0)  # targets claimed with the redirected one finish
        sent = len(agora.calls("PATCH"))
        time.sleep(1.5)
        assert len(agora.calls("PATCH")) == sent  # nothing more is sent while it is paused
    assert sent < len(planned) and agora.landed() == {}


def test_a_403_pauses_the_job_as_a_401_does(services, agora) -> None:
    new_job(services, agora, targets(6))
    agora.inject(Fault(403, message="Forbidden", method="PATCH"))
    with working(services.jobs):
        wait_until(lambda: state(services) == "paused", "the job was not paused")
        row = services.store.jobs.get("j1")
        assert row is not None and row.reason is not None and "refused recbot's credentials (403)" in row.reason


def test_a_401_pauses_the_job_and_once_resumed_every_target_lands_once(services, agora, monkeypatch) -> None:
    monkeypatch.setattr(bot.jobs, "STRANDED_AFTER", timedelta(seconds=1))
    planned = targets(12)
    new_job(services, agora, planned)
    agora.inject(Fault(401, message="credentials revoked", method="PATCH"))
    with working(services.jobs):
        wait_until(lambda: state(services) == "paused", "the job was not paused")
        row = services.store.jobs.get("j1")
        assert row is not None and row.reason is not None and "refused recbot's credentials (401)" in row.reason
        time.sleep(1.0)  # targets claimed with the refused one, and sent before it was refused, finish
        sent = len(agora.calls("PATCH"))
        time.sleep(1.5)
        assert len(agora.calls("PATCH")) == sent  # nothing more is sent while it is paused
        assert services.store.jobs.progress("j1")["planned"] > 0  # no claim: the rest waits for a resume
        assert services.store.jobs.transition("j1", "paused", "resume")
        wait_until(lambda: state(services) == "done", "the resumed job did not finish")
    assert agora.landed() == {key(t): 1 for t in planned}  # the refused one sent again, once it landed
    assert {s for s, _ in outcomes(services).values()} == {"applied"}


def test_five_server_errors_in_a_row_pause_the_job_with_nothing_sent(services, agora) -> None:
    planned = targets(8)
    new_job(services, agora, planned)
    agora.inject(*[Fault(503, message="upstream overloaded", method="GET")] * 100)
    with working(services.jobs):
        wait_until(lambda: state(services) == "paused", "the job was not paused")
    row = services.store.jobs.get("j1")
    assert row is not None and row.reason is not None
    assert "5 times in a row" in row.reason and "server error (503: upstream overloaded)" in row.reason
    assert agora.calls("PATCH") == []
    assert services.store.jobs.progress("j1")["applied"] == 0


def test_a_patch_whose_answer_is_lost_is_confirmed_by_its_read_back_not_sent_twice(services, agora) -> None:
    planned = targets(4)
    new_job(services, agora, planned)
    agora.inject(Fault(drops=True, method="PATCH"))
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    assert agora.patches() == {key(t): 1 for t in planned}
    assert [c.status for c in agora.calls("PATCH")].count(0) == 1  # one answer was lost
    assert {s for s, _ in outcomes(services).values()} == {"applied"}


LEFT_BY_A_DEAD_CLAIMER = {
    # what happened to the target before its claimer died -> (PATCHes now, its outcome)
    "nothing sent": (1, "applied"),
    "its PATCH landed": (0, "applied"),
    "changed elsewhere": (0, "stale"),
}


@pytest.mark.parametrize("before", LEFT_BY_A_DEAD_CLAIMER)
def test_a_target_left_in_flight_by_a_dead_claimer_is_reconciled_by_read_back(
    services, agora, monkeypatch, before: str
) -> None:
    monkeypatch.setattr(bot.jobs, "STRANDED_AFTER", timedelta(seconds=0.5))
    (target,) = planned = targets(1)
    new_job(services, agora, planned)
    assert len(services.store.jobs.claim("j1", "dead-instance", 10)) == 1
    config: dict[str, Any] = agora.config(*key(target))
    if before == "its PATCH landed":
        config["storageConfig"] |= {"accessKey": NEW_ACCESS, "secretKey": NEW_SECRET}
    elif before == "changed elsewhere":
        config["mp4Config"] = {"enabled": False}
    agora.put(*key(target), config)
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    patches, end = LEFT_BY_A_DEAD_CLAIMER[before]
    assert len(agora.calls("PATCH")) == patches
    (row,) = services.store.jobs.targets("j1")
    assert (row.state, row.attempts, row.claimed_by) == (end, 2, services.jobs.claimer)
    if end == "applied":
        assert rotated(agora, target)
    else:
        assert agora.config(*key(target)) == config


def test_a_slow_claimer_alive_keeps_its_target_from_a_reconcile(services, agora, monkeypatch, settings) -> None:
    """Each read takes longer than a claim may go unrefreshed: the first runner's heartbeat keeps
    its targets its own, so a second runner on the same database never sends them again."""
    monkeypatch.setattr(bot.jobs, "STRANDED_AFTER", timedelta(seconds=0.6))
    monkeypatch.setattr(bot.jobs, "HEARTBEAT_SECONDS", 0.1)
    planned = targets(2)
    new_job(services, agora, planned)
    agora.get_delay = 1.0
    other = build_services(settings, agora=fast_agora(settings))
    try:
        with working(services.jobs):
            wait_until(lambda: services.store.jobs.progress("j1")["in_flight"] == 2, "nothing was claimed")
            with working(other.jobs):
                wait_until(lambda: state(services) == "done", "the job did not finish")
    finally:
        other.close()
    assert agora.patches() == {key(t): 1 for t in planned}
    rows = services.store.jobs.targets("j1")
    assert {(r.state, r.attempts, r.claimed_by) for r in rows} == {("applied", 1, services.jobs.claimer)}


def test_a_heartbeat_refreshes_only_its_claimers_targets_still_in_flight(services, agora) -> None:
    new_job(services, agora, targets(3))
    jobs = services.store.jobs
    mine, theirs = jobs.claim("j1", "me", 2), jobs.claim("j1", "them", 1)
    assert jobs.record(mine[1].id, "me", "confirm")
    later = utcnow()
    assert jobs.heartbeat("me", [t.id for t in mine + theirs]) == 1  # its other one ended; theirs is not its
    assert [t.id for t in jobs.stranded(claimed_before=later)] == [theirs[0].id]
    assert jobs.heartbeat("me", []) == 0


def test_a_job_whose_keys_cannot_be_opened_fails_with_nothing_sent(services, agora) -> None:
    new_job(services, agora, targets(4))
    other_key = Sealer(Fernet.generate_key())
    _, keys = ROTATE.stored()
    assert keys is not None
    with services.store.engine.begin() as conn:  # as if RECBOT_SEAL_KEY was changed since
        conn.execute(update(jobs_table).values(sealed_secrets=other_key.seal(keys)))
    with working(services.jobs):
        wait_until(lambda: state(services) == "failed", "the job did not fail")
    row = services.store.jobs.get("j1")
    assert row is not None and row.reason is not None and "another RECBOT_SEAL_KEY" in row.reason
    assert NEW_SECRET not in row.reason and row.sealed_secrets is None
    assert agora.calls("PATCH") == [] and services.store.jobs.progress("j1")["skipped"] == 4


def test_a_change_of_formats_only_sends_no_keys_and_leaves_the_storage(services, agora) -> None:
    planned = targets(4)
    new_job(services, agora, planned, change=Change(hls=True))
    assert services.store.jobs.get("j1").sealed_secrets is None  # nothing to seal
    with working(services.jobs):
        wait_until(lambda: state(services) == "done", "the job did not finish")
    assert [c.json() for c in agora.calls("PATCH")] == [{"hlsConfig": {"enabled": True}}] * 4
    for t in planned:
        config = agora.config(*key(t))
        assert config["hlsConfig"] == {"enabled": True} and config["storageConfig"] == LIVE_CONFIG["storageConfig"]


def test_a_watcher_hears_of_every_batch_and_of_the_job_s_end(services, agora) -> None:
    """What people see of a job is redrawn from the worker's word: after each batch, and after
    the move that ends it; a watcher that fails does not stop the job."""
    heard: list[tuple[str, str]] = []
    services.jobs.watch(lambda job_id: heard.append((job_id, state(services, job_id))))
    services.jobs.watch(lambda job_id: 1 / 0)
    planned = targets(bot.jobs.WORKERS * 2)
    new_job(services, agora, planned)
    with working(services.jobs):
        wait_until(lambda: state(services) == "done" and ("j1", "done") in heard, "the watcher never heard the end")
    batches = [moment for moment in heard if moment == ("j1", "running")]
    assert len(batches) >= 2 and heard[-1] == ("j1", "done")
    assert agora.patches() == {key(t): 1 for t in planned}
