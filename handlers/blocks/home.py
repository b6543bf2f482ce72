"""recbot's App Home: what waits for an approver, a person's own requests,
open drift alerts, fleet-wide jobs and the latest changes, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.job_control import JobView
from bot.seal import Sealer
from bot.store.values import AlertRow, AuditEvent, RequestRow, StreamTaskRow, SwitchRow
from handlers.blocks import approval_card, drift_card, job_progress
from handlers.blocks import switch as switch_blocks
from handlers.blocks.messages import fitting, target_name
from handlers.blocks.requests import event_line

CALLBACK_HOME = "recbot_home"
ACTION_APPROVE = "home_approve"
ACTION_REJECT = "home_reject"
ACTION_CANCEL = "home_cancel"
BLOCK_NOTICE = "home_notice"
BLOCK_WAITING = "home_waiting"
BLOCK_OWN = "home_own"
OWN_PREFIX = "home_own_"
BLOCK_ALERTS = "home_alerts"
BLOCK_LATEST = "home_latest"
BLOCK_JOBS = "home_jobs"
WAITING_PREFIX = "home_request_"
# A home tab holds at most 100 blocks; three per waiting request, one per own request shown,
# the rest for the other parts, the jobs section two (tests/test_home.py fills every part to its limit).
MAX_WAITING = 24
MAX_OWN = 3
MAX_LINES = 15
# The mark before the notice line, by how what it reports ended; anything else went wrong.
NOTICE_ICONS = {
    "info": ":information_source:",
    "no_change": ":information_source:",
    "applied": ":white_check_mark:",
    "needs_approval": ":lock:",
}


def notice_icon(kind: str) -> str:
    """The mark before a notice line, by how what it reports ended."""
    return NOTICE_ICONS.get(kind, ":warning:")


@dataclass(frozen=True)
class HomeContent:
    """Everything one person's home shows; `waiting` is None for someone who is not an approver."""

    waiting: list[RequestRow] | None
    own: list[RequestRow]
    alerts: list[AlertRow]
    latest: list[AuditEvent]
    required: int
    paused: list[SwitchRow] = field(default_factory=list)  # entry points recbot paused, or whose switch is unknown
    streams: list[StreamTaskRow] = field(default_factory=list)  # single streams recbot records by task
    pause_needs_approval: bool = False  # RECBOT_APPROVAL_FOR=all: the Pause button says so
    # Fleet-wide jobs running, paused or approved, and the latest ended.
    jobs: list[JobView] = field(default_factory=list)


def _section(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text[:3000]}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def listing(block_id: str, lines: list[str], empty: str) -> dict[str, Any]:
    """At most MAX_LINES whole lines, as many as fit in one section, and the count of the rest."""
    text = fitting(lines, MAX_LINES, lambda n: f"…and {n} more")
    return _section(block_id, text or empty)


def _waiting_blocks(row: RequestRow, sealer: Sealer, required: int) -> list[dict[str, Any]]:
    value = approval_card.button_value(row, sealer)
    return [
        _section(
            f"{WAITING_PREFIX}{row.id}",
            f"`{row.id}` {target_name(row.target)} from <@{row.requester}>, "
            f"{len(row.approvers)} of {required} approvals, expires {approval_card.when(row.expires_at)}\n"
            + approval_card.diff_text(row),
        ),
        {
            "type": "actions",
            "block_id": f"{WAITING_PREFIX}{row.id}_buttons",
            "elements": [
                {
                    "type": "button",
                    "action_id": ACTION_APPROVE,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                    "style": "primary",
                },
                {
                    "type": "button",
                    "action_id": ACTION_REJECT,
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": value,
                    "style": "danger",
                },
            ],
        },
        {"type": "divider"},
    ]


def _own_blocks(own: list[RequestRow], sealer: Sealer, required: int) -> list[dict[str, Any]]:
    """The person's own open requests, each pending one with its Cancel button."""
    if not own:
        return [_section(BLOCK_OWN, "You have no open requests.")]
    blocks = []
    for row in own[:MAX_OWN]:
        line = f"`{row.id}` {target_name(row.target)}: {row.state}, {len(row.approvers)} of {required} approvals"
        if row.state == "pending":
            line += f", expires {approval_card.when(row.expires_at)}"
        block = _section(f"{OWN_PREFIX}{row.id}", line)
        if row.state == "pending":
            block["accessory"] = _cancel_button(row, sealer)
        blocks.append(block)
    if len(own) > MAX_OWN:
        blocks.append(_section(BLOCK_OWN, f"…and {len(own) - MAX_OWN} more: see `/recording pending`."))
    return blocks


def _cancel_button(row: RequestRow, sealer: Sealer) -> dict[str, Any]:
    """Withdraw one's own pending request (the same MAC as the approval card's buttons)."""
    return {
        "type": "button",
        "action_id": ACTION_CANCEL,
        "text": {"type": "plain_text", "text": "Cancel"},
        "value": approval_card.button_value(row, sealer),
        "confirm": {
            "title": {"type": "plain_text", "text": "Cancel the request?"},
            "text": {"type": "plain_text", "text": f"Request {row.id} ends as cancelled; nothing is sent to Agora."},
            "confirm": {"type": "plain_text", "text": "Cancel it"},
            "deny": {"type": "plain_text", "text": "Keep it"},
        },
    }


def home_view(content: HomeContent, sealer: Sealer, notice: str | None = None, kind: str = "info") -> dict[str, Any]:
    """The home tab of one person; `notice` is mrkdwn (whoever wrote it escaped what it quotes),
    with a mark for how it ended (`kind`: an outcome's kind, "info", or anything else for a failure)."""
    blocks: list[dict[str, Any]] = []
    if notice:
        blocks.append(_section(BLOCK_NOTICE, f"{notice_icon(kind)} {notice}"))
    if content.waiting is not None:
        blocks.append(_header(f"Waiting for your approval ({len(content.waiting)})"))
        for row in content.waiting[:MAX_WAITING]:
            blocks += _waiting_blocks(row, sealer, content.required)
        if not content.waiting:
            blocks.append(_section(BLOCK_WAITING, "Nothing waits for you."))
        elif len(content.waiting) > MAX_WAITING:
            more = len(content.waiting) - MAX_WAITING
            blocks.append(_section(BLOCK_WAITING, f"…and {more} more: see `/recording pending`."))
    blocks.append(_header("Your open requests"))
    blocks += _own_blocks(content.own, sealer, content.required)
    blocks.append(_header("Changed outside recbot"))
    blocks.append(
        listing(
            BLOCK_ALERTS,
            [
                f"• {target_name(a.target)}, seen {approval_card.when(a.detected_at)}: "
                + "; ".join(line.removeprefix("• ") for line in drift_card.diff_lines(a))
                for a in content.alerts
            ],
            "No open drift alerts.",
        )
    )
    blocks += switch_blocks.home_blocks(content.paused, content.streams, sealer, content.pause_needs_approval)
    blocks.append(_header("Fleet-wide jobs"))
    blocks.append(listing(BLOCK_JOBS, job_progress.home_lines(content.jobs), "No fleet-wide jobs lately."))
    blocks.append(_header("Latest changes"))
    blocks.append(
        listing(
            BLOCK_LATEST,
            [f"• {target_name(e.target)} " + event_line(e) for e in content.latest],
            "Nothing recorded yet.",
        )
    )
    return {"type": "home", "callback_id": CALLBACK_HOME, "blocks": blocks}


def read_button_value(value: Any, sealer: Sealer) -> str | None:
    """The request id of a genuine home button (the same MAC as the approval card's)."""
    return approval_card.read_button_value(value, sealer)
