"""The drift alert: a configuration changed outside recbot, with Acknowledge and Revert."""

from __future__ import annotations

from typing import Any

from bot.seal import Sealer
from bot.store.values import AlertRow
from handlers.blocks.approval_card import when
from handlers.blocks.messages import escape, target_name

ACTION_ACKNOWLEDGE = "drift_acknowledge"
ACTION_REVERT = "drift_revert"
BLOCK_SUMMARY = "drift_summary"
BLOCK_DIFF = "drift_diff"
BLOCK_STATUS = "drift_status"
BLOCK_BUTTONS = "drift_buttons"
KEYS_LABEL = "Storage keys"

ENDED_ICONS = {"acknowledged": ":ballot_box_with_check:", "resolved": ":white_check_mark:", "superseded": ":repeat:"}


def button_value(alert: AlertRow, sealer: Sealer, channel: str) -> str:
    """The alert id and the channel (or user) the card is posted to, with a MAC: a forged id
    is refused, and a click can be checked against where it came from before recbot knows
    the card's ts."""
    return sealer.signed("drift-card", f"{alert.id}@{channel}")


def read_button_value(value: Any, sealer: Sealer) -> tuple[str, str | None] | None:
    """(alert id, the channel the card was posted to) of a genuine button, the channel None
    on a card posted before buttons named it; or None."""
    signed = sealer.read_signed("drift-card", value)
    if signed is not None:
        named, _, channel = signed.rpartition("@")
        return (named, channel) if named else None
    alert_id = sealer.read_signed("drift", value)
    return (alert_id, None) if alert_id is not None else None


def diff_lines(alert: AlertRow) -> list[str]:
    """`field: before -> after` for every field, keys only as changed or unchanged."""
    lines = [
        f"• {escape(c.label)}: {escape(c.before)} → {escape(c.after)}" for c in alert.changes if c.label != KEYS_LABEL
    ]
    keys_changed = any(c.label == KEYS_LABEL for c in alert.changes)
    lines.append(f"• {KEYS_LABEL}: {'changed' if keys_changed else 'unchanged'}")
    return lines


def card(alert: AlertRow, sealer: Sealer, channel: str) -> list[dict[str, Any]]:
    """What approvers see in `channel`: the target, what changed outside recbot, and what they can do."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": BLOCK_SUMMARY,
            "text": {
                "type": "mrkdwn",
                "text": f":rotating_light: *Changed outside recbot:* {target_name(alert.target)}\n"
                f"Seen {when(alert.detected_at)}. No recbot request made this change, so it had no approval.",
            },
        },
        {"type": "section", "block_id": BLOCK_DIFF, "text": {"type": "mrkdwn", "text": "\n".join(diff_lines(alert))}},
    ]
    if alert.is_open:
        value = button_value(alert, sealer, channel)
        blocks.append(
            {
                "type": "actions",
                "block_id": BLOCK_BUTTONS,
                "elements": [
                    _button("Acknowledge", ACTION_ACKNOWLEDGE, value, "primary"),
                    _button("Revert", ACTION_REVERT, value, "danger"),
                ],
            }
        )
        status = "Acknowledge keeps the change (approvers). Revert opens the form with the previous values."
    else:
        who = f" by <@{alert.decided_by}>" if alert.decided_by else ""
        icon = ENDED_ICONS.get(alert.state, ":information_source:")
        status = f"{icon} *{alert.state.capitalize()}*{who}, {when(alert.updated_at)}: {escape(alert.note or '')}"
    blocks.append({"type": "context", "block_id": BLOCK_STATUS, "elements": [{"type": "mrkdwn", "text": status}]})
    return blocks


def card_text(alert: AlertRow) -> str:
    return f"Changed outside recbot: {escape(alert.target.entry_point)} ({alert.target.region}): {alert.state}"


def _button(text: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
        "style": style,
    }
