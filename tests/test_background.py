"""Periodic tasks: run at their interval, at once when woken, and a burst of wake-ups is one run."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

from bot.background import Failures, Periodic
from handlers.job_notify import JobNotifier

WAIT = 10.0  # generous: these wait for an event, they do not time anything


def test_a_wake_runs_the_task_before_its_interval_ends() -> None:
    ran = threading.Event()
    task = Periodic(3600.0, ran.set, "woken").start()
    try:
        assert not ran.wait(0.2)  # idle: nothing runs before the hour is up
        task.wake()
        assert ran.wait(WAIT)
    finally:
        task.stop()


def test_wake_ups_during_a_run_and_its_gap_make_one_more_run() -> None:
    started, release, runs = threading.Event(), threading.Event(), []

    def slow() -> None:
        runs.append(1)
        started.set()
        release.wait(WAIT)

    task = Periodic(3600.0, slow, "burst", gap=0.05).start()
    try:
        task.wake()
        assert started.wait(WAIT)
        started.clear()
        for _ in range(20):
            task.wake()
        release.set()
        assert started.wait(WAIT)  # the burst is drawn once more...
        started.clear()
        assert not started.wait(0.3)  # ...and only once
        assert len(runs) == 2
    finally:
        task.stop()


def test_stop_ends_a_task_that_waits_for_its_interval() -> None:
    task = Periodic(3600.0, lambda: None, "stopped").start()
    task.stop(timeout=WAIT)
    assert not task._thread.is_alive()


def test_the_workers_reports_wake_the_job_drawer(bot) -> None:
    """A batch or a move is drawn soon, not at the idle interval's end (a minute later)."""
    notifier = JobNotifier(bot.app.client, bot.services)
    woken = []
    notifier._drawer = SimpleNamespace(wake=lambda: woken.append(True))  # type: ignore[assignment]
    notifier.job_moved("J1")
    notifier.worker_paused("J2")
    assert woken == [True, True]


def test_a_task_that_keeps_failing_logs_its_traceback_once_then_a_line_a_minute(caplog) -> None:
    now = [0.0]
    failures = Failures("job-worker", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="bot.background")
    for second in range(0, 125):  # fails every second for two minutes
        now[0] = float(second)
        failures.failed(ConnectionError("database down"))
    failures.succeeded()
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("ERROR", "job-worker failed; it runs again", True),
        ("ERROR", "job-worker is still failing (61 runs in a row; last: ConnectionError)", False),
        ("ERROR", "job-worker is still failing (121 runs in a row; last: ConnectionError)", False),
        ("INFO", "job-worker works again, after 125 failed runs", False),
    ]
    caplog.clear()
    failures.failed(ValueError("once"))  # a new streak: its traceback again
    failures.succeeded()  # one failure and back: nothing more to say
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("job-worker failed; it runs again", True)
    ]


def test_a_periodic_task_that_fails_keeps_running(caplog) -> None:
    runs: list[int] = []
    again = threading.Event()

    def flaky() -> None:
        runs.append(1)
        if len(runs) >= 3:
            again.set()
        raise RuntimeError("boom")

    task = Periodic(0.01, flaky, "flaky").start()
    try:
        assert again.wait(WAIT)
    finally:
        task.stop()
    assert next(r.getMessage() for r in caplog.records if r.name == "bot.background") == "flaky failed; it runs again"
