"""The approval card, the reject-reason modal, and the requester's notice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.seal import Sealer
from bot.store.values import RequestRow
from bot.switch import consequence, verb
from handlers.blocks.messages import escape
from handlers.blocks.summary import geography_warning

ACTION_APPROVE = "request_approve"
ACTION_REJECT = "request_reject"
ACTION_CANCEL = "request_cancel"
BLOCK_SUMMARY = "request_summary"
BLOCK_DIFF = "request_diff"
BLOCK_STATUS = "request_status"
BLOCK_PROBE = "request_storage_check"
BLOCK_GEOGRAPHY = "request_geography"
PROBE_ICONS = {"ok": ":white_check_mark:", "refused": ":x:", "unreachable": ":warning:"}
BLOCK_BUTTONS = "request_buttons"
BLOCK_SWITCH = "request_switch"
BLOCK_RESUMES = "request_resumes"

CALLBACK_REJECT = "request_reject_reason"
BLOCK_REASON = "reject_reason"
ACTION_REASON = "reject_reason_input"
MAX_REASON = 500
REASON_TOO_LONG = f"Say it in at most {MAX_REASON} characters."

OUTCOME_ICONS = {
    "applied": ":white_check_mark:",
    "failed": ":x:",
    "rejected": ":no_entry:",
    "expired": ":hourglass:",
    "cancelled": ":leftwards_arrow_with_hook:",
    "stale": ":warning:",
}


def button_value(row: RequestRow, sealer: Sealer) -> str:
    """The request id with a MAC, so a forged id is refused."""
    return sealer.signed("button", row.id)


def read_button_value(value: Any, sealer: Sealer) -> str | None:
    """The request id a genuine button carries, or None."""
    return sealer.read_signed("button", value)


def card_button_value(row: RequestRow, sealer: Sealer, channel: str) -> str:
    """The request id and the channel (or user) the card is posted to, with a MAC: a click
    can be checked against where it came from before recbot knows the card's ts."""
    return sealer.signed("card", f"{row.id}@{channel}")


def read_card_button_value(value: Any, sealer: Sealer) -> tuple[str, str | None] | None:
    """(request id, the channel the card was posted to) of a genuine card button, the channel
    None on a card posted before buttons named it; or None."""
    signed = sealer.read_signed("card", value)
    if signed is not None:
        named, _, channel = signed.rpartition("@")
        return (named, channel) if named else None
    request_id = read_button_value(value, sealer)
    return (request_id, None) if request_id is not None else None


def when(moment: datetime) -> str:
    """A time Slack shows in each reader's own time zone, UTC as the fallback."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def diff_text(row: RequestRow) -> str:
    lines = [f"• {escape(c.label)}: {escape(c.before)} → {escape(c.after)}" for c in row.changes]
    return "\n".join(lines) or "• (no field changes)"


def switch_wanted(row: RequestRow) -> bool | None:
    """What a switch request sets (True: resume), or None for a request of another kind."""
    enabled = (row.spec or {}).get("enabled") if row.kind == "switch" else None
    return enabled if isinstance(enabled, bool) else None


def headline(row: RequestRow) -> str:
    """Who asks for what: a configuration change, or a pause or resume of every stream."""
    enabled = switch_wanted(row)
    if enabled is None:
        return (
            f"*Recording change request* `{row.id}`\n<@{row.requester}> asks to change "
            f"*{escape(row.target.describe())}*"
        )
    return (
        f"*Recording switch request* `{row.id}`\n<@{row.requester}> asks to *{verb(enabled)}* custom recording "
        f"of every stream of *{escape(row.target.describe())}*"
    )


def card(
    row: RequestRow, sealer: Sealer, required: int, channel: str, resumes: str | None = None
) -> list[dict[str, Any]]:
    """The card approvers see in `channel`: who, what, the safe diff, and the decision; while it waits,
    `resumes` (mrkdwn) says that applying it switches recording on where recbot paused it."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "block_id": BLOCK_SUMMARY, "text": {"type": "mrkdwn", "text": headline(row)[:3000]}},
        {"type": "section", "block_id": BLOCK_DIFF, "text": {"type": "mrkdwn", "text": diff_text(row)[:3000]}},
    ]
    enabled = switch_wanted(row)
    if enabled is not None:
        said = escape(consequence(enabled, row.target.entry_point))
        blocks.append(
            {
                "type": "context",
                "block_id": BLOCK_SWITCH,
                "elements": [{"type": "mrkdwn", "text": f"Once applied, {said}"[:3000]}],
            }
        )
    if resumes and row.state == "pending":
        blocks.append(
            {"type": "context", "block_id": BLOCK_RESUMES, "elements": [{"type": "mrkdwn", "text": resumes[:3000]}]}
        )
    if row.probe is not None:
        line = f"{PROBE_ICONS.get(row.probe.verdict, ':warning:')} Storage check: {escape(row.probe.summary)}"
        blocks.append(
            {"type": "context", "block_id": BLOCK_PROBE, "elements": [{"type": "mrkdwn", "text": line[:3000]}]}
        )
    where = row.storage_at
    warning = geography_warning(row.target.region, *where) if where is not None else None
    if warning:
        blocks.append(
            {"type": "context", "block_id": BLOCK_GEOGRAPHY, "elements": [{"type": "mrkdwn", "text": warning}]}
        )
    if row.state == "pending":
        approved = ", ".join(f"<@{u}>" for u in row.approvers) or "nobody yet"
        blocks.append(
            {
                "type": "context",
                "block_id": BLOCK_STATUS,
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Approvals: {len(row.approvers)} of {required} ({approved}). "
                        f"Expires {when(row.expires_at)}. The requester cannot approve.",
                    }
                ],
            }
        )
        value = card_button_value(row, sealer, channel)
        blocks.append(
            {
                "type": "actions",
                "block_id": BLOCK_BUTTONS,
                "elements": [
                    _button("Approve", ACTION_APPROVE, value, "primary"),
                    _button("Reject", ACTION_REJECT, value, "danger"),
                    _button("Cancel (requester)", ACTION_CANCEL, value, None),
                ],
            }
        )
    else:
        blocks.append(
            {
                "type": "context",
                "block_id": BLOCK_STATUS,
                "elements": [{"type": "mrkdwn", "text": outcome_line(row)[:3000]}],
            }
        )
    return blocks


def outcome_line(row: RequestRow) -> str:
    """How a request ended and who decided: an approved request's approvers did not apply or fail it."""
    icon = OUTCOME_ICONS.get(row.state, ":hourglass_flowing_sand:")
    detail = f": {escape(row.result)}" if row.result else ""
    if row.state in ("applied", "failed", "stale") and row.approvers:
        approved = ", ".join(f"<@{u}>" for u in row.approvers)
        return f"{icon} Approved by {approved}; *{row.state.capitalize()}*, {when(row.updated_at)}{detail}"
    who = f" by <@{row.decided_by}>" if row.decided_by else ""
    return f"{icon} *{row.state.capitalize()}*{who}, {when(row.updated_at)}{detail}"


def card_text(row: RequestRow) -> str:
    region = "every region" if row.target.is_every_region else row.target.region
    return f"Recording change request {row.id} for {escape(row.target.entry_point)} ({region}): {row.state}"


def _button(text: str, action_id: str, value: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def requester_notice(row: RequestRow) -> list[dict[str, Any]]:
    """What the requester is told when their request ends."""
    return [
        {
            "type": "section",
            "block_id": BLOCK_SUMMARY,
            "text": {
                "type": "mrkdwn",
                "text": f"Your change request `{row.id}` for *{escape(row.target.describe())}*:\n{outcome_line(row)}",
            },
        },
        {"type": "section", "block_id": BLOCK_DIFF, "text": {"type": "mrkdwn", "text": diff_text(row)[:3000]}},
    ]


def no_card_notice(row: RequestRow) -> str:
    """What the requester is told when no approval card of their request could be posted."""
    return (
        f"Your request `{row.id}` for *{escape(row.target.describe())}* is open, but no approval card could be "
        "posted, so no approver has seen it yet. recbot will try again every sweep; you can cancel it from "
        "recbot's Home tab. If this keeps happening, ask whoever runs recbot to check RECBOT_APPROVAL_CHANNEL "
        "and RECBOT_APPROVERS."
    )


def card_posted_notice(row: RequestRow) -> str:
    """What the requester is told when the cards of their request were posted after all."""
    return f"The approval card of your request `{row.id}` for *{escape(row.target.describe())}* is posted now."


def reject_modal(row: RequestRow, sealer: Sealer) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": CALLBACK_REJECT,
        "title": {"type": "plain_text", "text": "Reject change"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "private_metadata": button_value(row, sealer),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"Reject request `{row.id}` for *{escape(row.target.describe())}*?"},
            },
            {
                "type": "input",
                "block_id": BLOCK_REASON,
                "label": {"type": "plain_text", "text": "Reason (the requester sees it)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ACTION_REASON,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }
