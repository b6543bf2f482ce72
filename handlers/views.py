"""View submissions: the edit form."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.services import Services
from handlers.blocks import edit_form

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.view(edit_form.CALLBACK_EDIT)
    def edit_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """Validate before acking (errors go back on the form), then apply after the ack."""
        try:
            metadata = edit_form.FormMetadata.load(view.get("private_metadata"), services.sealer)
        except ValueError:
            ack(
                response_action="update",
                view=edit_form.message_view(":x: This form is not valid any more. Reopen it with `/recording set`."),
            )
            return
        proposal, errors = edit_form.to_proposal(edit_form.read_values(view.get("state")))
        if errors or proposal is None:
            ack(response_action="errors", errors=errors)
            return
        ack(
            response_action="update",
            view=edit_form.message_view(":hourglass_flowing_sand: Checking the live configuration and applying…"),
        )
        requester = body["user"]["id"]
        outcome = services.changes.submit(metadata.target, metadata.digest, proposal, requester)
        client.views_update(view_id=view["id"], view=edit_form.outcome_view(metadata.target, outcome))
