"""Interactive components: the edit form's vendor select and the approval card's buttons."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.approvals import Refused
from bot.services import Services
from bot.store import RequestRow
from handlers.blocks import approval_card, edit_form
from handlers.notify import GroupLookup, Notifier

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.action(edit_form.ACTION_VENDOR)
    def vendor_chosen(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Show exactly the chosen vendor's regions, keeping what was typed."""
        ack()
        view = body.get("view") or {}
        try:
            metadata = edit_form.FormMetadata.load(view.get("private_metadata"), services.sealer)
        except ValueError:
            log.warning("vendor select on a view without valid metadata; ignored")
            return
        try:
            values = edit_form.read_values(view.get("state"))
        except edit_form.MalformedForm:
            log.warning("vendor select on a view with unreadable state; ignored")
            return
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=edit_form.form_view(metadata, services.sealer, values, edit_form.current_block_of(view)),
        )

    @app.action(approval_card.ACTION_APPROVE)
    def approve(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        row = _decide(
            body, respond, services, lambda rid: services.approvals.approve(rid, user, is_approver=is_approver)
        )
        if row is not None:
            _after_decision(row, Notifier(client, services), respond)

    @app.action(approval_card.ACTION_REJECT)
    def reject(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Ask for a reason first; the rejection happens when the reason is submitted."""
        ack()
        row = _decide(body, respond, services, services.approvals.pending_request)
        if row is not None:
            client.views_open(trigger_id=body["trigger_id"], view=approval_card.reject_modal(row, services.sealer))

    @app.action(approval_card.ACTION_CANCEL)
    def cancel(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        row = _decide(body, respond, services, lambda rid: services.approvals.cancel(rid, user))
        if row is not None:
            _after_decision(row, Notifier(client, services), respond)


def _decide(
    body: dict[str, Any], respond: Respond, services: Services, decision: Callable[[str], RequestRow]
) -> RequestRow | None:
    """Run `decision` on the request a genuine button names; refusals go to the clicker alone."""
    request_id = _genuine_request(body, services)
    if request_id is None:
        tell(respond, "That button is not a genuine recbot approval button; nothing was done.")
        return None
    try:
        return decision(request_id)
    except Refused as refusal:
        tell(respond, str(refusal))
        return None


def _genuine_request(body: dict[str, Any], services: Services) -> str | None:
    """The request id of a genuine button on that request's own card, else None."""
    actions = body.get("actions") or [{}]
    request_id = approval_card.read_button_value(actions[0].get("value"), services.sealer)
    if request_id is None:
        return None
    container = body.get("container") or {}
    row = services.store.get(request_id)
    if row is None:
        return None
    on_its_card = any(
        ref.ts == container.get("message_ts") and ref.channel == container.get("channel_id") for ref in row.cards
    )
    return request_id if on_its_card else None


def _after_decision(row: RequestRow, notifier: Notifier, respond: Respond) -> None:
    """Announce a move this click made (a click that made none was refused and told)."""
    if row.is_open:
        notifier.refresh_cards(row.id)
        tell(respond, f"Noted. Request `{row.id}` is {row.state}: {notifier.approvals_line(row)}.")
    else:
        notifier.request_ended(row)


def tell(respond: Respond, text: str) -> None:
    """Answer the person who clicked, alone, leaving the card as it is."""
    respond(text=text, response_type="ephemeral", replace_original=False)
