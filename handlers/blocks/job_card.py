"""A fleet-wide job in Slack: the plan card in the requester's direct messages, the one approval
card of the whole job (drawn from the job row in any state), the reject-reason modal and the
requester's notices. Keys appear only as fingerprints: the plan and the job row hold no other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bot.bulk_plan import EVERY_REGION_ASKED, Plan, PlanRow
from bot.bulk_targets import TargetFilter
from bot.job_control import mover
from bot.seal import Sealer
from bot.store.values import JobRow
from handlers.blocks.approval_card import when
from handlers.blocks.messages import code, escape, escape_keeping_mentions, fitting

# Prefixed job_card_: a running job's progress message (handlers/blocks/job_progress.py) has job_ ids of its own.
ACTION_APPROVE = "job_card_approve"
ACTION_REJECT = "job_card_reject"
ACTION_CANCEL = "job_card_cancel"
ACTION_CANCEL_PLAN = "job_card_plan_cancel"
BLOCK_SUMMARY = "job_card_summary"
BLOCK_PLAN = "job_card_plan"
BLOCK_ROWS = "job_card_rows"
BLOCK_UNREADABLE = "job_card_unreadable"
BLOCK_SILENCED = "job_card_silenced"
BLOCK_STATUS = "job_card_status"
BLOCK_BUTTONS = "job_card_buttons"
CALLBACK_REJECT = "job_card_reject_reason"
BLOCK_REASON = "job_card_reject_reason"
ACTION_REASON = "job_card_reject_reason_input"
MAX_REASON = 500
REASON_TOO_LONG = f"Say it in at most {MAX_REASON} characters."
FIRST_ROWS = 10  # rows of the plan on its card; the CSV has every one
NAMED_UNREADABLE = 10

ICONS = {
    "done": ":white_check_mark:",
    "failed": ":x:",
    "rejected": ":no_entry:",
    "expired": ":hourglass:",
    "cancelled": ":leftwards_arrow_with_hook:",
    "paused": ":double_vertical_bar:",
}
SHOWN_COUNTS = ("applied", "failed", "stale", "skipped")


def _section(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "context", "block_id": block_id, "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}
    button["value"] = value
    if style:
        button["style"] = style
    return button


def card_value(job: JobRow, sealer: Sealer, channel: str) -> str:
    """The job id and where its card is posted, with a MAC: a forged or replayed button is refused."""
    return sealer.signed("jobcard", f"{job.id}@{channel}")


def read_card_value(value: Any, sealer: Sealer) -> tuple[str, str] | None:
    """(job id, the channel its card was posted to) of a genuine card button, or None."""
    signed = sealer.read_signed("jobcard", value)
    job_id, _, channel = (signed or "").rpartition("@")
    return (job_id, channel) if job_id and channel else None


def job_value(job_id: str, sealer: Sealer) -> str:
    """A job id with a MAC (the plan card's Cancel, the reject modal)."""
    return sealer.signed("job", job_id)


def read_job_value(value: Any, sealer: Sealer) -> str | None:
    return sealer.read_signed("job", value)


def _row_line(row: PlanRow) -> str:
    changes = "; ".join(f"{escape(c.label)}: {escape(c.before)} → {escape(c.after)}" for c in row.changes)
    return f"• {code(row.target.entry_point)} ({row.target.region}): {changes}"


def counts_line(plan: Plan) -> str:
    line = (
        f"*{len(plan.rows)}* matched: *{len(plan.changing)}* would change, *{plan.already}* already as asked, "
        f"*{len(plan.unreadable)}* unreadable"
    )
    return line + (f"; {plan.absent} with no configuration in a region asked" if plan.absent else "")


def plan_card(plan: Plan, job: JobRow | None, note: str, sealer: Sealer) -> list[dict[str, Any]]:
    """The requester's plan: the counts, the first rows that would change, the unreadable named,
    and what happens next (the job awaiting approval, with Cancel; or why there is none)."""
    head = f"*Plan of your fleet-wide change*: {escape(plan.request.targets.describe())}\n{counts_line(plan)}"
    blocks = [_section(BLOCK_SUMMARY, head)]
    changing = plan.changing
    if changing:
        head = "*Would change*"
        lines = [_row_line(row) for row in changing]
        rows = fitting(lines, FIRST_ROWS, lambda n: f"…and {n} more: every row is in the CSV.", limit=2899 - len(head))
        blocks.append(_section(BLOCK_ROWS, f"{head}\n{rows}"))
    if plan.silenced:
        said = f":warning: {plan.silenced} of them record now and would record nothing once changed (MP4 and HLS off)."
        blocks.append(_context(BLOCK_SILENCED, said))
    if plan.unreadable:
        head = "*Could not be read* (left out of the job)"
        named = [
            f"• {code(lost.name)} ({lost.region or EVERY_REGION_ASKED}): {escape(lost.why)}" for lost in plan.unreadable
        ]
        text = fitting(named, NAMED_UNREADABLE, lambda n: f"…and {n} more in the CSV.", limit=2899 - len(head))
        blocks.append(_section(BLOCK_UNREADABLE, f"{head}\n{text}"))
    if job is None:
        blocks.append(_context(BLOCK_STATUS, f":information_source: {escape(note)}"))
        return blocks
    blocks.append(
        _context(
            BLOCK_STATUS,
            f":lock: Job `{job.id}` awaits approval: sent to the approvers, expires {when(job.expires_at)}. "
            "Nothing is sent to Agora before it is approved. The full plan is in the CSV.",
        )
    )
    cancel = _button("Cancel this job", ACTION_CANCEL_PLAN, job_value(job.id, sealer))
    blocks.append({"type": "actions", "block_id": BLOCK_BUTTONS, "elements": [cancel]})
    return blocks


def plan_text(plan: Plan) -> str:
    return f"Plan of your fleet-wide change: {len(plan.rows)} matched, {len(plan.changing)} would change"


def planning_text(request_text: str) -> str:
    return f":hourglass_flowing_sand: Planning your fleet-wide change ({escape(request_text)}): reading every target…"


def described(job: JobRow) -> str:
    """The job's filter in a line, as stored."""
    try:
        return TargetFilter.model_validate(job.filter or {}).describe()
    except ValidationError:
        return "the targets its plan read"


def progress_text(counts: Mapping[str, int], total: int) -> str:
    """How far it got: e.g. "applied 5, failed 1, stale 0, skipped 0 of 8 (2 already as asked)"."""
    shown = ", ".join(f"{name} {counts.get(name, 0)}" for name in SHOWN_COUNTS)
    already = counts.get("unchanged", 0)
    return f"{shown} of {total}" + (f" ({already} already as asked)" if already else "")


def status_line(job: JobRow, required: int, counts: Mapping[str, int] | None) -> str:
    """What the job is now, who decided, and how far it got once started."""
    approved = ", ".join(f"<@{u}>" for u in job.approvers)
    progress = f": {progress_text(counts, job.target_count)}" if counts is not None else ""
    reason = f" {_reason(job)}" if job.reason else ""
    if job.state == "pending":
        return (
            f"Approvals: {len(job.approvers)} of {required} ({approved or 'nobody yet'}). "
            f"Expires {when(job.expires_at)}. The requester cannot approve."
        )
    if job.state in ("approved", "running"):
        return f":arrows_counterclockwise: Approved by {approved}; *being applied*{progress}"
    if job.state == "paused":
        return f"{ICONS['paused']} Approved by {approved}; *Paused*{progress}.{reason}"
    icon = ICONS.get(job.state, ":grey_question:")
    if job.state == "done" and counts and (counts.get("failed", 0) or counts.get("stale", 0)):
        icon = ":warning:"  # done, but not every target applied: not marked as a success
    if job.started_at is not None:
        return f"{icon} Approved by {approved}; *{job.state.capitalize()}*, {when(job.updated_at)}{progress}.{reason}"
    who = f" by <@{job.decided_by}>" if job.decided_by and job.state != "expired" else ""
    return f"{icon} *{job.state.capitalize()}*{who}, {when(job.updated_at)}.{reason}"


def _reason(job: JobRow) -> str:
    """Why it paused or ended, inert as mrkdwn but for the person recbot's own words name as having
    moved it ("Paused by <@U123>."); a rejection's reason is typed, so it names nobody."""
    moved_by = mover(job.reason) if job.reason and job.state != "rejected" else None
    return escape_keeping_mentions(job.reason or "", [moved_by] if moved_by else [])


def headline(job: JobRow) -> str:
    return (
        f"*Fleet-wide change* `{job.id}`\n<@{job.requester}> asks for one change to the *{job.target_count}* "
        f"targets matched by {escape(described(job))}"
    )


def card(
    job: JobRow, sealer: Sealer, required: int, channel: str, counts: Mapping[str, int] | None
) -> list[dict[str, Any]]:
    """The approval card in `channel`: who asks what, the plan's masked summary, and the decision
    while pending, or the job's state and progress (`counts` once it started)."""
    plan = "\n".join(f"• {escape(line)}" for line in job.summary) or "• (no summary)"
    blocks = [_section(BLOCK_SUMMARY, headline(job)), _section(BLOCK_PLAN, plan)]
    blocks.append(_context(BLOCK_STATUS, status_line(job, required, counts)))
    if job.state == "pending":
        value = card_value(job, sealer, channel)
        buttons = [
            _button("Approve", ACTION_APPROVE, value, "primary"),
            _button("Reject", ACTION_REJECT, value, "danger"),
            _button("Cancel (requester)", ACTION_CANCEL, value),
        ]
        blocks.append({"type": "actions", "block_id": BLOCK_BUTTONS, "elements": buttons})
    return blocks


def card_text(job: JobRow) -> str:
    return f"Fleet-wide change {job.id} of {job.target_count} targets: {job.state}"


def requester_notice(job: JobRow, required: int, counts: Mapping[str, int] | None) -> list[dict[str, Any]]:
    """What the requester is told when a decision moved their job."""
    text = f"Your fleet-wide change `{job.id}` ({escape(described(job))}):\n{status_line(job, required, counts)}"
    return [_section(BLOCK_SUMMARY, text)]


def no_card_notice(job: JobRow) -> str:
    return (
        f"Your fleet-wide change `{job.id}` awaits approval, but no approval card could be posted, so no approver "
        "has seen it. Cancel it from the plan above and ask again later; if this keeps happening, ask whoever "
        "runs recbot to check RECBOT_APPROVAL_CHANNEL and RECBOT_APPROVERS."
    )


def reject_modal(job: JobRow, sealer: Sealer) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": CALLBACK_REJECT,
        "title": {"type": "plain_text", "text": "Reject change"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "private_metadata": job_value(job.id, sealer),
        "blocks": [
            _section(BLOCK_SUMMARY, f"Reject fleet-wide change `{job.id}` of {job.target_count} targets?"),
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
