"""The life cycle of a change request as data: every move is (state, event) -> next
state in TRANSITIONS, and nothing else moves a request. The store's compare-and-set
and the approval service both ask `next_state`, the one place a move is refused.
`python -m bot.lifecycle` prints the table as the Mermaid diagram the README shows."""

from __future__ import annotations

import sys

# Insertion order is the order of the diagram and of OPEN_STATES / ENDED_STATES.
TRANSITIONS: dict[tuple[str, str], str] = {
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
STATES: tuple[str, ...] = tuple(dict.fromkeys([START, *(s for s, _ in TRANSITIONS), *TRANSITIONS.values()]))
OPEN_STATES: tuple[str, ...] = tuple(dict.fromkeys(s for s, _ in TRANSITIONS))
ENDED_STATES: tuple[str, ...] = tuple(s for s in STATES if s not in OPEN_STATES)


class LifecycleError(ValueError):
    """An event the table does not allow in that state."""


def next_state(state: str, event: str) -> str:
    """Where `event` takes a request in `state`; LifecycleError saying what is allowed if nowhere."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = [e for s, e in TRANSITIONS if s == state]
        can = f"it can only {', '.join(allowed)}" if allowed else "it has ended and cannot move"
        article = "an" if state[0] in "aeiou" else "a"
        raise LifecycleError(f"{article} {state} request cannot {event}: {can}") from None


def mermaid() -> str:
    """The table as a Mermaid state diagram."""
    lines = ["stateDiagram-v2", f"    [*] --> {START}"]
    lines += [f"    {state} --> {to}: {event}" for (state, event), to in TRANSITIONS.items()]
    lines += [f"    {state} --> [*]" for state in ENDED_STATES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(mermaid())
