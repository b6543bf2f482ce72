"""Telling people about change requests: cards, in-place updates, the requester's notice."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.services import Services
from bot.store import CardRef, RequestRow
from handlers.blocks import approval_card

log = logging.getLogger(__name__)


class GroupLookup:
    """Resolves a user-group ID with `usergroups.users.list`, at the moment it is asked."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def __call__(self, group_id: str) -> Iterable[str]:
        return self._client.usergroups_users_list(usergroup=group_id)["users"]


# Each pass writes the cards from the row as it is then; a pass is needed only
# when the row moved during the previous one, which a few approvals can do.
MAX_CARD_PASSES = 5
SLACK_FAILURES = (SlackApiError, SlackClientError, OSError)


class Notifier:
    """Posts and updates approval cards and tells requesters. Call it only for
    a move this process made: then the last card write shows the latest state."""

    def __init__(self, client: WebClient, services: Services) -> None:
        self._client = client
        self._services = services

    def post_cards(self, row: RequestRow) -> None:
        """To the approval channel, or to each approver directly when none is set."""
        settings = self._services.settings
        if settings.RECBOT_APPROVAL_CHANNEL:
            channels = [settings.RECBOT_APPROVAL_CHANNEL]
        else:
            channels = [u for u in self._services.approvers.users(GroupLookup(self._client)) if u != row.requester]
        cards = []
        for channel in channels:
            try:
                posted = self._client.chat_postMessage(
                    channel=channel, text=approval_card.card_text(row), blocks=self._card(row)
                )
            except SLACK_FAILURES as exc:
                log.error("could not post the card of request %s to %s: %s", row.id, channel, _why(exc))
                continue
            cards.append(CardRef(posted["channel"], posted["ts"]))
        self._services.approvals.attach_cards(row.id, cards)
        # Whoever moved the request while the cards were being posted found no cards to update.
        self.refresh_cards(row.id, shown=row.version)
        if not cards:
            self.tell(
                row.requester,
                f"Request `{row.id}` is open, but no approval card could be posted. "
                "Ask whoever runs recbot to check RECBOT_APPROVAL_CHANNEL and RECBOT_APPROVERS.",
            )

    def refresh_cards(self, request_id: str, shown: int | None = None) -> None:
        """Write every card from the request as it is at write time, and again
        if it moved meanwhile, so the last write Slack keeps is the latest state."""
        for _ in range(MAX_CARD_PASSES):
            row = self._services.approvals.get(request_id)
            if row.version == shown:
                return
            for ref in row.cards:
                try:
                    self._client.chat_update(
                        channel=ref.channel, ts=ref.ts, text=approval_card.card_text(row), blocks=self._card(row)
                    )
                except SLACK_FAILURES as exc:
                    log.error("could not update a card of request %s: %s", row.id, _why(exc))
            shown = row.version
        log.warning("the cards of request %s kept moving; left at version %s", request_id, shown)

    def request_ended(self, row: RequestRow) -> None:
        """Update every card in place and tell the requester directly."""
        self.refresh_cards(row.id)
        try:
            self._client.chat_postMessage(
                channel=row.requester, text=approval_card.card_text(row), blocks=approval_card.requester_notice(row)
            )
        except SLACK_FAILURES as exc:
            log.error("could not tell the requester of %s: %s", row.id, _why(exc))

    def tell(self, user: str, text: str) -> None:
        try:
            self._client.chat_postMessage(channel=user, text=text)
        except SLACK_FAILURES as exc:
            log.error("could not message %s: %s", user, _why(exc))

    def approvals_line(self, row: RequestRow) -> str:
        return f"{len(row.approvers)} of {self._services.approvals.required_approvals} approvals"

    def _card(self, row: RequestRow) -> list[dict]:
        return approval_card.card(row, self._services.sealer, self._services.approvals.required_approvals)


def _why(exc: Exception) -> str:
    """Slack's error code, or the kind of failure; never a payload."""
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__
