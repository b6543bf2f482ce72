"""`/recording history` and `/recording pending` listings."""

from __future__ import annotations

from typing import Any

from bot.drift import OUTSIDE
from bot.models import Target
from bot.store.values import AuditEvent, RequestRow
from bot.switching import UNANSWERED
from handlers.blocks.messages import escape, target_name, text_blocks


def history(target: Target, events: list[AuditEvent]) -> list[dict[str, Any]]:
    if not events:
        return text_blocks(f"No recorded changes for {target_name(target)}.")
    lines = [f"*Latest {len(events)} events for* {target_name(target)}"]
    lines += [f"• {event_line(event)}" for event in events]
    return _chunked(lines)


EVENT_NAMES = {
    "changed_outside": "changed outside recbot",
    "drift_acknowledged": "outside change acknowledged",
    "drift_resolved": "outside change resolved",
    "paused": "paused custom recording of every stream",
    "resumed": "resumed custom recording of every stream",
    "stream_on": "single stream recording started",
    "stream_off": "single stream recording stopped",
    UNANSWERED: "no usable answer from Agora: it may or may not have taken effect",
}
# Events that did not do what they list: the list is what was asked, and the stored note says why.
NOT_DONE = frozenset({"failed", UNANSWERED, "stale", "rejected", "expired", "cancelled"})
MAX_NOTE = 300


def _actor(actor: str) -> str:
    if actor == OUTSIDE:
        return "someone outside recbot (Agora Console or the API)"
    return "recbot" if actor == "recbot" else f"<@{actor}>"


def event_line(event: AuditEvent) -> str:
    """One audit event: when, what, which request (or job), who, and the safe diff; for one that did
    not do what it lists (failed, no answer, rejected...), what was asked and the stored note."""
    changes = "; ".join(f"{escape(c[0])}: {escape(c[1])} → {escape(c[2])}" for c in event.detail.get("changes", []))
    request = f" `{event.request_id}`" if event.request_id else ""
    if event.job_id:  # one target of a fleet-wide job
        request = f" job `{escape(event.job_id)}`"
    name = EVENT_NAMES.get(event.event, event.event.replace("_", " "))
    line = f"{event.at:%Y-%m-%d %H:%M} UTC *{name}*{request} by {_actor(event.actor)}"
    if event.event not in NOT_DONE:
        return line + (f": {changes}" if changes else "")
    note = str(event.detail.get("note") or "")
    note = note if len(note) <= MAX_NOTE else note[: MAX_NOTE - 1] + "…"
    return line + (f" (asked: {changes})" if changes else "") + (f": {escape(note)}" if note else "")


def pending(rows: list[RequestRow]) -> list[dict[str, Any]]:
    if not rows:
        return text_blocks("No open change requests.")
    lines = [f"*{len(rows)} open change request(s)*"]
    for row in rows:
        lines.append(
            f"• `{row.id}` {target_name(row.target)} by <@{row.requester}>, {row.state}, "
            f"{len(row.approvers)} approval(s), expires {row.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return _chunked(lines)


def _chunked(lines: list[str]) -> list[dict[str, Any]]:
    """Section blocks of at most 3000 characters each."""
    blocks: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        if len(chunk) + len(line) + 1 > 3000:
            blocks += text_blocks(chunk)
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:3000]
    return (blocks + text_blocks(chunk))[:50]
