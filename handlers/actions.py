"""Interactive components: the edit form's vendor select."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.services import Services
from handlers.blocks import edit_form

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
        values = edit_form.read_values(view.get("state"))
        current = next(
            (b for b in view.get("blocks", []) if b.get("block_id") == edit_form.BLOCK_CURRENT),
            edit_form.current_block_unknown(),
        )
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=edit_form.form_view(metadata, services.sealer, values, current),
        )
