"""A fleet-wide job's life cycle and its targets' are the tables in bot/job_lifecycle.py:
the states they name, open and ended, and any other move refused in one place, saying
what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.job_lifecycle import (
    ENDED_JOB_STATES,
    ENDED_TARGET_STATES,
    JOB_TRANSITIONS,
    OPEN_JOB_STATES,
    OPEN_TARGET_STATES,
    TARGET_TRANSITIONS,
    job_mermaid,
    next_job_state,
    next_target_state,
    target_mermaid,
)
from bot.lifecycle import LifecycleError


def test_the_job_table_names_the_states_open_and_ended() -> None:
    assert OPEN_JOB_STATES == ("planning", "pending", "approved", "running", "paused")
    assert set(ENDED_JOB_STATES) == {"done", "cancelled", "failed", "expired", "rejected"}
    assert all(state in OPEN_JOB_STATES for state, _ in JOB_TRANSITIONS)


def test_a_job_runs_pauses_resumes_and_ends_as_the_table_says() -> None:
    path = ["plan", "approve", "start", "pause", "resume", "finish"]
    state = "planning"
    for event in path:
        state = next_job_state(state, event)
    assert state == "done"
    assert next_job_state("paused", "expire") == "expired"  # a job left paused expires like a request
    for open_state in ("planning", "pending", "approved", "running", "paused"):
        assert next_job_state(open_state, "cancel") == "cancelled"


def test_the_target_table_names_the_states_open_and_ended() -> None:
    assert OPEN_TARGET_STATES == ("planned", "in_flight")
    assert set(ENDED_TARGET_STATES) == {"unchanged", "skipped", "applied", "failed", "stale"}
    assert {to for (state, _), to in TARGET_TRANSITIONS.items() if state == "in_flight"} == {
        "applied",
        "failed",
        "stale",
        "in_flight",
    }


def test_a_move_outside_the_tables_is_refused_saying_what_is_allowed() -> None:
    with pytest.raises(LifecycleError, match="a pending job cannot start: it can only approve, reject, cancel, expire"):
        next_job_state("pending", "start")
    with pytest.raises(LifecycleError, match="a done job cannot resume: it has ended and cannot move"):
        next_job_state("done", "resume")
    with pytest.raises(LifecycleError, match="a paused job cannot finish: it can only resume, cancel, expire"):
        next_job_state("paused", "finish")  # finishing is for a running job only
    only = "it can only find_unchanged, claim, skip"
    with pytest.raises(LifecycleError, match=f"a planned target cannot confirm: {only}"):
        next_target_state("planned", "confirm")  # an outcome only for a target in flight
    with pytest.raises(LifecycleError, match="an applied target cannot claim: it has ended and cannot move"):
        next_target_state("applied", "claim")  # never applied twice


def test_python_m_prints_both_diagrams_from_the_tables() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bot.job_lifecycle"], capture_output=True, text=True, check=True
    ).stdout
    assert shown == job_mermaid() + "\n" + target_mermaid()
    assert "    in_flight --> in_flight: reclaim\n" in target_mermaid()
    assert "    [*] --> planning\n" in job_mermaid() and "    done --> [*]\n" in job_mermaid()
