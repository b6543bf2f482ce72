"""The life cycle of a fleet-wide job and of each of its targets as data, as
bot/lifecycle.py does for one request: every move of a job or a target row is
(state, event) -> next state in JOB_TRANSITIONS or TARGET_TRANSITIONS, refused in
`next_job_state` / `next_target_state` otherwise. `python -m bot.job_lifecycle`
prints both as the Mermaid diagrams the README shows."""

from __future__ import annotations

import sys

from bot.lifecycle import Table, diagram, move, states_of

# Insertion order is the order of the diagram and of the state tuples.
JOB_TRANSITIONS: Table = {
    ("planning", "plan"): "pending",  # every matched target read: the plan awaits approval
    ("planning", "fail"): "failed",  # the plan could not be made
    ("planning", "cancel"): "cancelled",
    ("pending", "approve"): "approved",  # the last approval needed was counted
    ("pending", "reject"): "rejected",
    ("pending", "cancel"): "cancelled",
    ("pending", "expire"): "expired",
    ("approved", "start"): "running",  # workers may claim its targets from now on
    ("approved", "cancel"): "cancelled",
    ("running", "pause"): "paused",  # by a person, or by Agora refusing the credentials
    ("running", "finish"): "done",  # no target left planned or in flight
    ("running", "cancel"): "cancelled",
    ("running", "fail"): "failed",
    ("paused", "resume"): "running",
    ("paused", "cancel"): "cancelled",
    ("paused", "expire"): "expired",  # left paused too long, like a request left pending
}
JOB_START = "planning"
JOB_STATES, OPEN_JOB_STATES, ENDED_JOB_STATES = states_of(JOB_TRANSITIONS, JOB_START)

TARGET_TRANSITIONS: Table = {
    ("planned", "find_unchanged"): "unchanged",  # the plan read it already as asked: nothing to send
    ("planned", "claim"): "in_flight",  # a worker took it; marked before its PATCH is sent
    ("planned", "skip"): "skipped",  # the job ended before it was claimed
    ("in_flight", "confirm"): "applied",  # Agora's read-back shows the change in effect
    ("in_flight", "fail"): "failed",
    ("in_flight", "find_stale"): "stale",  # it changed after the plan read it: left as it is
    ("in_flight", "reclaim"): "in_flight",  # its claimer died and the read-back shows nothing sent
}
TARGET_START = "planned"
TARGET_STATES, OPEN_TARGET_STATES, ENDED_TARGET_STATES = states_of(TARGET_TRANSITIONS, TARGET_START)


def next_job_state(state: str, event: str) -> str:
    """Where `event` takes a job in `state`; LifecycleError saying what is allowed if nowhere."""
    return move(JOB_TRANSITIONS, "job", state, event)


def next_target_state(state: str, event: str) -> str:
    """Where `event` takes a job's target in `state`; LifecycleError saying what is allowed if nowhere."""
    return move(TARGET_TRANSITIONS, "target", state, event)


def job_mermaid() -> str:
    """The job table as a Mermaid state diagram."""
    return diagram(JOB_TRANSITIONS, JOB_START)


def target_mermaid() -> str:
    """The target table as a Mermaid state diagram."""
    return diagram(TARGET_TRANSITIONS, TARGET_START)


if __name__ == "__main__":
    sys.stdout.write(job_mermaid() + "\n" + target_mermaid())
