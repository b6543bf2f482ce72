"""Picked, not typed: a region select and an entry-point select that searches
the app's entry points, in a modal (`/recording set`) or a message (`get`)."""

from __future__ import annotations

from typing import Any

from bot.catalog import API_REGIONS
from bot.seal import Sealer
from handlers.blocks.edit_form import TITLE
from handlers.blocks.messages import escape

BLOCK_PICK = "pick"
ACTION_ENTRY_POINT = "entry_point_pick"
ACTION_REGION = "region_pick"
CALLBACK_PICK = "recording_pick"


def block_id(verb: str, app_id: str, sealer: Sealer) -> str:
    """`pick.<verb>.<app>.<tag>`: what the options and the choice need, unforgeable."""
    return f"{BLOCK_PICK}." + sealer.signed("pick", f"{verb}.{app_id}")


def read_block_id(value: Any, sealer: Sealer) -> tuple[str, str] | None:
    """(verb, app id) of a genuine picker block id, or None."""
    if not isinstance(value, str) or not value.startswith(BLOCK_PICK + "."):
        return None
    text = sealer.read_signed("pick", value.removeprefix(BLOCK_PICK + "."))
    verb, _, app_id = (text or "").partition(".")
    if verb not in ("get", "set") or not app_id:
        return None
    return verb, app_id


def chosen_region(state: Any, block: str, default: str) -> str:
    """The region the picker's region select holds, or `default`."""
    values = state.get("values", {}) if isinstance(state, dict) else {}
    selected = (values.get(block, {}).get(ACTION_REGION) or {}).get("selected_option") or {}
    region = selected.get("value") if isinstance(selected, dict) else None
    return region if region in API_REGIONS else default


def picker_blocks(verb: str, app_id: str, region: str, sealer: Sealer) -> list[dict[str, Any]]:
    regions = [
        {"text": {"type": "plain_text", "text": f"{code} ({name})"}, "value": code}
        for code, name in API_REGIONS.items()
    ]
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"Choose the region, then the entry point of App ID `{escape(app_id)}` "
                "(type part of its name to search).",
            },
        },
        {
            "type": "actions",
            "block_id": block_id(verb, app_id, sealer),
            "elements": [
                {
                    "type": "static_select",
                    "action_id": ACTION_REGION,
                    "options": regions,
                    "initial_option": next(o for o in regions if o["value"] == region),
                },
                {
                    "type": "external_select",
                    "action_id": ACTION_ENTRY_POINT,
                    "placeholder": {"type": "plain_text", "text": "Entry point"},
                    "min_query_length": 0,
                },
            ],
        },
    ]


def picker_modal(app_id: str, region: str, sealer: Sealer) -> dict[str, Any]:
    """Opened by `/recording set` without an entry point; becomes the form once one is chosen."""
    return {
        "type": "modal",
        "callback_id": CALLBACK_PICK,
        "title": {"type": "plain_text", "text": TITLE},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": picker_blocks("set", app_id, region, sealer),
    }


def options(names: list[str]) -> list[dict[str, Any]]:
    """Entry point names as select options (Slack: at most 100, text up to 75 characters)."""
    return [{"text": {"type": "plain_text", "text": name[:75]}, "value": name} for name in names[:100]]
