"""Telling people about change requests: cards, in-place updates, the requester's notice."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

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


class Notifier:
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
            except SlackApiError as exc:
                log.error("could not post the card of request %s to %s: %s", row.id, channel, exc.response.get("error"))
                continue
            cards.append(CardRef(posted["channel"], posted["ts"]))
        self._services.approvals.attach_cards(row.id, cards)
        now = self._services.approvals.get(row.id)
        if not now.is_open:  # it ended (expired) while the cards were being posted
            self.refresh_cards(now)
        if not cards:
            self.tell(
                row.requester,
                f"Request `{row.id}` is open, but no approval card could be posted. "
                "Ask whoever runs recbot to check RECBOT_APPROVAL_CHANNEL and RECBOT_APPROVERS.",
            )

    def refresh_cards(self, row: RequestRow) -> None:
        for ref in row.cards:
            try:
                self._client.chat_update(
                    channel=ref.channel, ts=ref.ts, text=approval_card.card_text(row), blocks=self._card(row)
                )
            except SlackApiError as exc:
                log.error("could not update a card of request %s: %s", row.id, exc.response.get("error"))

    def request_ended(self, row: RequestRow) -> None:
        """Update every card in place and tell the requester directly."""
        self.refresh_cards(row)
        try:
            self._client.chat_postMessage(
                channel=row.requester, text=approval_card.card_text(row), blocks=approval_card.requester_notice(row)
            )
        except SlackApiError as exc:
            log.error("could not tell the requester of %s: %s", row.id, exc.response.get("error"))

    def tell(self, user: str, text: str) -> None:
        try:
            self._client.chat_postMessage(channel=user, text=text)
        except SlackApiError as exc:
            log.error("could not message %s: %s", user, exc.response.get("error"))

    def _card(self, row: RequestRow) -> list[dict]:
        return approval_card.card(row, self._services.sealer, self._services.approvals.required_approvals)
