"""Who is in a list of user and user-group IDs: an empty list means nobody or everyone, as said."""

from __future__ import annotations

from bot.access import Audience


def no_groups(group: str) -> list[str]:
    raise AssertionError(f"no group lookup was expected ({group})")


def test_an_empty_list_of_approvers_lets_nobody_in_and_of_requesters_everyone() -> None:
    approvers = Audience((), empty_means_everyone=False)
    requesters = Audience((), empty_means_everyone=True)
    assert not approvers.includes("UANY", no_groups) and requesters.includes("UANY", no_groups)
    assert approvers.users(no_groups) == []


def test_a_group_lookup_that_fails_denies() -> None:
    def failing(group: str) -> list[str]:
        raise OSError("Slack is down")

    audience = Audience(("UBOB", "SADMINS"), empty_means_everyone=False)
    assert audience.includes("UBOB", failing) and not audience.includes("UCAROL", failing)
