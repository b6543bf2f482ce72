"""A fleet-wide job as people see it while it runs and after: its one progress message (figures,
why it paused or ended, Pause / Resume / Cancel), the requester's notices, and the
`/recording jobs` list."""

from __future__ import annotations

from typing import Any

from bot.job_control import JobView, mover
from bot.seal import Sealer
from bot.store.values import JobRow
from handlers.blocks.approval_card import when
from handlers.blocks.messages import escape, escape_keeping_mentions

ACTION_PAUSE = "job_pause"
ACTION_RESUME = "job_resume"
ACTION_CANCEL = "job_cancel"
BLOCK_STATUS = "job_status"
BLOCK_FIGURES = "job_figures"
BLOCK_BUTTONS = "job_buttons"
BLOCK_LIST = "jobs_list"
LIST_PREFIX = "jobs_job_"
MAX_LISTED = 15  # a message holds 50 blocks: two per job, and the heading
MAX_SUMMARY_LINES = 5

STATE_WORDS = {
    "pending": ":lock: Awaiting approval",
    "approved": ":hourglass_flowing_sand: Approved, about to start",
    "running": ":arrows_counterclockwise: Running",
    "paused": ":double_vertical_bar: Paused",
    "done": ":white_check_mark: Done",
    "cancelled": ":leftwards_arrow_with_hook: Cancelled",
    "failed": ":x: Failed",
    "expired": ":hourglass: Expired",
}


def button_value(job_id: str, sealer: Sealer) -> str:
    """The job id with a MAC, so a forged id is refused."""
    return sealer.signed("job", job_id)


def read_button_value(value: Any, sealer: Sealer) -> str | None:
    """The job id a genuine job button carries, or None."""
    return sealer.read_signed("job", value)


def _state(view: JobView) -> str:
    """The job's state in words; a job done with targets failed or stale is not marked as a success."""
    job, counts = view.job, view.counts
    if job.state == "done" and (counts.get("failed", 0) or counts.get("stale", 0)):
        return ":warning: Done, not every target applied"
    return STATE_WORDS.get(job.state, job.state)


def _reason(job: JobRow) -> str:
    """Why it paused or ended, as mrkdwn: Agora's words inert, the person who moved it named."""
    if not job.reason or job.state == "running":
        return ""
    moved_by = mover(job.reason)
    return escape_keeping_mentions(job.reason, [moved_by] if moved_by else [])


def progress_text(view: JobView) -> str:
    """The message's plain text (notifications, and where blocks are not shown)."""
    return f"Fleet-wide job {view.job.id} ({view.job.state}): {view.line}"


def progress_blocks(view: JobView, sealer: Sealer) -> list[dict[str, Any]]:
    """The progress message: what the job does, its figures, why it stopped, and the buttons
    for what can still be done to it (the clicker's right is checked on the click)."""
    job = view.job
    heading = f"*{_state(view)}*: fleet-wide job `{escape(job.id)}` requested by <@{job.requester}>"
    summary = [f"• {escape(line)}" for line in job.summary[:MAX_SUMMARY_LINES]]
    figures = view.line + (f"\n{_reason(job)}" if _reason(job) else "")
    if job.state == "paused":
        figures += f"\nIf nobody resumes it, it expires {when(job.expires_at)}."
    blocks = [
        _section(BLOCK_STATUS, "\n".join([heading, *summary])),
        _section(BLOCK_FIGURES, figures),
    ]
    buttons = job_buttons(job, sealer)
    if buttons:
        blocks.append({"type": "actions", "block_id": BLOCK_BUTTONS, "elements": buttons})
    return blocks


def job_buttons(job: JobRow, sealer: Sealer) -> list[dict[str, Any]]:
    """Pause or Resume, and Cancel, as the job's state allows; none once it ended."""
    value = button_value(job.id, sealer)
    buttons = []
    if job.state == "running":
        buttons.append(_button(ACTION_PAUSE, "Pause", value))
    if job.state == "paused":
        buttons.append(_button(ACTION_RESUME, "Resume", value, style="primary"))
    if job.state in ("approved", "running", "paused"):
        cancel = _button(ACTION_CANCEL, "Cancel", value, style="danger")
        cancel["confirm"] = {
            "title": {"type": "plain_text", "text": "Cancel the job?"},
            "text": {
                "type": "plain_text",
                "text": f"Job {job.id[:100]} ends as cancelled: targets not sent yet are left as they are.",
            },
            "confirm": {"type": "plain_text", "text": "Cancel it"},
            "deny": {"type": "plain_text", "text": "Keep it"},
        }
        buttons.append(cancel)
    return buttons


def paused_notice(job: JobRow) -> str:
    """The requester's notice that the worker paused their job, and what they can do (mrkdwn)."""
    return (
        f":double_vertical_bar: Your fleet-wide job `{escape(job.id)}` was paused: {escape(job.reason or '')}\n"
        "Resume it once that is fixed, or cancel it, from its progress message or `/recording jobs`; "
        f"left paused, it expires {when(job.expires_at)}."
    )


def end_notice(view: JobView) -> str:
    """The requester's notice of the end, sent with the outcome CSV (mrkdwn)."""
    reason = f" {_reason(view.job)}" if _reason(view.job) else ""
    return (
        f"{_state(view)}: your fleet-wide job `{escape(view.job.id)}`: {view.line}.{reason}\n"
        "The outcome of every target is in this CSV."
    )


def jobs_list(views: list[JobView], sealer: Sealer, may_act: set[str]) -> list[dict[str, Any]]:
    """`/recording jobs`: running, paused and approved jobs, then the latest ended, each with its
    figures, and its buttons for whoever may act on it (`may_act`: their job ids)."""
    if not views:
        return [_section(BLOCK_LIST, "No fleet-wide jobs are running, and none ended lately.")]
    shown = views[:MAX_LISTED]
    more = f" (the first {MAX_LISTED} shown)" if len(views) > MAX_LISTED else ""
    blocks = [_section(BLOCK_LIST, f"*Fleet-wide jobs: {len(views)}*{more}")]
    for view in shown:
        job = view.job
        line = f"*{_state(view)}* `{escape(job.id)}` by <@{job.requester}>: {view.line}"
        if _reason(job):
            line += f"\n{_reason(job)}"
        blocks.append(_section(f"{LIST_PREFIX}{job.id}", line))
        buttons = job_buttons(job, sealer) if job.id in may_act else []
        if buttons:
            blocks.append({"type": "actions", "block_id": f"{LIST_PREFIX}{job.id}_buttons", "elements": buttons})
    return blocks


def home_lines(views: list[JobView]) -> list[str]:
    """One line per job for the App Home."""
    return [f"• *{_state(v)}* `{escape(v.job.id)}` by <@{v.job.requester}>: {v.line}" for v in views]


def _section(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": block_id[:255], "text": {"type": "mrkdwn", "text": text[:3000]}}


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style:
        button["style"] = style
    return button
