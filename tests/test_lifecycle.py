"""The request life cycle is the table in bot/lifecycle.py: the store moves a request
only as it says, and refuses any other move in one place, saying what is allowed."""

from __future__ import annotations

import pytest

from bot.lifecycle import ENDED_STATES, OPEN_STATES, TRANSITIONS, LifecycleError, next_state
from bot.store import Store
from tests.test_store import new_request, store  # noqa: F401 - the store fixture


def test_the_table_names_the_states_open_and_ended() -> None:
    assert OPEN_STATES == ("pending", "approved", "applying")
    assert set(ENDED_STATES) == {"applied", "failed", "stale", "rejected", "expired", "cancelled"}
    assert all(state in OPEN_STATES for state, _ in TRANSITIONS)


def test_an_event_the_table_does_not_allow_is_refused_saying_what_is() -> None:
    assert next_state("approved", "claim") == "applying"
    with pytest.raises(
        LifecycleError, match="a pending request cannot claim: it can only approve, reject, cancel, expire"
    ):
        next_state("pending", "claim")
    with pytest.raises(LifecycleError, match="an applied request cannot fail: it has ended and cannot move"):
        next_state("applied", "fail")


@pytest.mark.parametrize(("path", "end"), [(["approve", "claim", "confirm"], "applied"), (["reject"], "rejected")])
def test_the_store_moves_a_request_as_the_table_says(store: Store, path: list[str], end: str) -> None:  # noqa: F811
    row = new_request(store)
    state = row.state
    for event in path:
        assert store.requests.transition(row.id, state, event)
        state = store.requests.get(row.id).state
    assert state == end and store.requests.get(row.id).sealed_patch is None  # ended: secrets gone


def test_the_store_refuses_a_move_outside_the_table_and_changes_nothing(store: Store) -> None:  # noqa: F811
    row = new_request(store)
    with pytest.raises(LifecycleError):
        store.requests.transition(row.id, "pending", "confirm")
    after = store.requests.get(row.id)
    assert (after.state, after.version, after.sealed_patch) == ("pending", row.version, b"ciphertext")
