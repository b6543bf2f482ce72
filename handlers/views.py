"""View submissions: the edit form and the reject reason."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.approvals import Refused
from bot.services import Services
from handlers.blocks import approval_card, edit_form
from handlers.notify import SLACK_FAILURES, GroupLookup, Notifier, why_failed

log = logging.getLogger(__name__)

INVALID_FORM = ":x: This form is not valid any more. Reopen it with `/recording set`."


def register(app: App, services: Services) -> None:
    @app.view(edit_form.CALLBACK_EDIT)
    def edit_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """Validate before acking (errors go back on the form), then apply after the ack."""
        try:
            metadata = edit_form.FormMetadata.load(view.get("private_metadata"), services.sealer)
        except ValueError:
            ack(response_action="update", view=edit_form.message_view(INVALID_FORM))
            return
        requester = body["user"]["id"]
        if not services.requesters.includes(requester, GroupLookup(client)):
            ack(response_action="update", view=edit_form.message_view(":x: You are not in RECBOT_REQUESTERS."))
            return
        try:
            values = edit_form.read_values(view.get("state"))
        except edit_form.MalformedForm:
            ack(response_action="update", view=edit_form.message_view(edit_form.UNREADABLE))
            return
        proposal, errors = edit_form.to_proposal(values)
        if values.region_of_another_vendor and edit_form.BLOCK_REGION in errors:  # that list is still shown: redrawn
            redrawn = edit_form.form_view(metadata, services.sealer, values, edit_form.current_block_of(view), errors)
            ack(response_action="update", view=redrawn)
            return
        if errors or proposal is None:
            ack(response_action="errors", errors=errors)
            return
        ack(response_action="update", view=edit_form.message_view(edit_form.WORKING))
        outcome = services.changes.submit(metadata.target, metadata.digest, proposal, requester)
        if outcome.kind == "storage_refused":
            current = edit_form.current_block_of(view)
            again = edit_form.storage_refused_view(metadata, services.sealer, values, current, outcome)
            client.views_update(view_id=view["id"], view=again)
            return
        if outcome.request is not None and not Notifier(client, services).post_cards(outcome.request):
            outcome = outcome.without_cards()
        asked = proposal.storage
        try:
            client.views_update(view_id=view["id"], view=edit_form.outcome_view(metadata.target, outcome, asked))
        except SLACK_FAILURES as exc:  # how it ended is known: told directly, not as recbot's failure
            log.warning("could not show the outcome on the form (%s); telling the requester directly", why_failed(exc))
            text = edit_form.outcome_text(metadata.target, outcome, asked)
            Notifier(client, services).tell(requester, f"Slack did not let recbot update your form. {text}")

    @app.view(approval_card.CALLBACK_REJECT)
    def reject_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        request_id = approval_card.read_button_value(view.get("private_metadata"), services.sealer)
        reason = edit_form.read_text(view.get("state"), approval_card.BLOCK_REASON)
        if request_id is None:
            ack(
                response_action="update", view=edit_form.message_view(":x: This form is not genuine; nothing was done.")
            )
            return
        if not reason or len(reason) > approval_card.MAX_REASON:
            why = "Say why, so the requester can fix it." if not reason else approval_card.REASON_TOO_LONG
            ack(response_action="errors", errors={approval_card.BLOCK_REASON: why})
            return
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            row = services.approvals.reject(request_id, user, reason, is_approver=is_approver)
        except Refused as refusal:
            ack(response_action="update", view=edit_form.message_view(f":x: {refusal}"))
            return
        ack()
        Notifier(client, services).request_ended(row)
