"""Who is in a list of Slack user and user-group IDs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

GroupMembers = Callable[[str], Iterable[str]]


def is_group(slack_id: str) -> bool:
    return slack_id.startswith("S")


class Audience:
    """A set of user IDs and user-group IDs; groups are resolved only when asked,
    so membership changes in Slack take effect at the next click."""

    def __init__(self, ids: Iterable[str], *, empty_means_everyone: bool) -> None:
        self.ids = tuple(ids)
        self._empty_means_everyone = empty_means_everyone

    def includes(self, user: str, members_of: GroupMembers) -> bool:
        if not self.ids:
            return self._empty_means_everyone
        if user in self.ids:
            return True
        for group in filter(is_group, self.ids):
            try:
                if user in set(members_of(group)):
                    return True
            except Exception:  # noqa: BLE001 - a lookup failure must deny, not crash
                log.warning("could not resolve user group %s; treating %s as not a member", group, user)
        return False

    def users(self, members_of: GroupMembers) -> list[str]:
        """Every user ID, groups expanded (for sending cards directly)."""
        found: list[str] = []
        for slack_id in self.ids:
            try:
                members = list(members_of(slack_id)) if is_group(slack_id) else [slack_id]
            except Exception:  # noqa: BLE001
                log.warning("could not resolve user group %s", slack_id)
                continue
            found += [m for m in members if m not in found]
        return found
