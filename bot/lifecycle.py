"""The life cycle of a change request as data: every move is (state, event) -> next
state in TRANSITIONS, and nothing else moves a request. The store's compare-and-set
and the approval service both ask `next_state`, the one place a move is refused.
`python -m bot.lifecycle` prints the table as the Mermaid diagram the README shows.
A fleet-wide job's tables (bot/job_lifecycle.py) use the same `move` and `diagram`."""

from __future__ import annotations

import sys

Table = dict[tuple[str, str], str]

# Insertion order is the order of the diagram and of OPEN_STATES / ENDED_STATES.
TRANSITIONS: Table = {
    ("pending", "approve"): "approved",  # the last approval needed was counted
    ("pending", "reject"): "rejected",
    ("pending", "cancel"): "cancelled",  # by the requester
    ("pending", "expire"): "expired",
    ("approved", "claim"): "applying",  # one process claims it to send it to Agora
    ("applying", "confirm"): "applied",  # Agora's read-back shows it in effect
    ("applying", "fail"): "failed",
    ("applying", "find_stale"): "stale",  # the live configuration changed after the request was made
}

START = "pending"


def states_of(table: Table, start: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A table's states, those open (some event moves them) and those ended, in the table's order."""
    states = tuple(dict.fromkeys([start, *(s for s, _ in table), *table.values()]))
    open_states = tuple(dict.fromkeys(s for s, _ in table))
    return states, open_states, tuple(s for s in states if s not in open_states)


STATES, OPEN_STATES, ENDED_STATES = states_of(TRANSITIONS, START)


class LifecycleError(ValueError):
    """An event the table does not allow in that state."""


def move(table: Table, noun: str, state: str, event: str) -> str:
    """Where `event` takes a `noun` in `state`; LifecycleError saying what is allowed if nowhere."""
    try:
        return table[(state, event)]
    except KeyError:
        allowed = [e for s, e in table if s == state]
        can = f"it can only {', '.join(allowed)}" if allowed else "it has ended and cannot move"
        article = "an" if state[0] in "aeiou" else "a"
        raise LifecycleError(f"{article} {state} {noun} cannot {event}: {can}") from None


def next_state(state: str, event: str) -> str:
    """Where `event` takes a request in `state`; LifecycleError saying what is allowed if nowhere."""
    return move(TRANSITIONS, "request", state, event)


def diagram(table: Table, start: str) -> str:
    """A table as a Mermaid state diagram."""
    lines = ["stateDiagram-v2", f"    [*] --> {start}"]
    lines += [f"    {state} --> {to}: {event}" for (state, event), to in table.items()]
    lines += [f"    {state} --> [*]" for state in states_of(table, start)[2]]
    return "\n".join(lines) + "\n"


def mermaid() -> str:
    """The request table as a Mermaid state diagram."""
    return diagram(TRANSITIONS, START)


if __name__ == "__main__":
    sys.stdout.write(mermaid())
