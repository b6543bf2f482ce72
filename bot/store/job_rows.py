"""Stored job and target rows to values and back (bot/store/jobs.py moves them): a row
that cannot be read is named, not raised, so a sweep can still end it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, insert, select

from bot.job_lifecycle import TARGET_START, next_target_state
from bot.models import Target
from bot.store.engine import aware
from bot.store.schema import job_approvals, job_targets
from bot.store.values import CardRef, JobRow, JobTarget, PlannedTarget, utcnow

PLANNED = TARGET_START


def insert_targets(conn: Connection, job_id: str, targets: Sequence[PlannedTarget]) -> None:
    if not targets:
        return
    now, unchanged = utcnow(), next_target_state(PLANNED, "find_unchanged")
    conn.execute(
        insert(job_targets),
        [
            {
                "job_id": job_id,
                "app_id": p.target.app_id,
                "region": p.target.region,
                "entry_point": p.target.entry_point,
                "seen": json.dumps(p.seen),
                "state": unchanged if p.unchanged else PLANNED,
                "updated_at": now,
            }
            for p in targets
        ],
    )


def cards_json(cards: Sequence[CardRef]) -> str:
    return json.dumps([[c.channel, c.ts] for c in cards])


def _cards(text: str | None) -> list[CardRef]:
    """Stored card references; a damaged list reads as none (nothing to update)."""
    try:
        found = json.loads(text or "[]")
        return [CardRef(str(channel), str(ts)) for channel, ts in found]
    except (ValueError, TypeError):
        return []


def _json(text: str | None, kind: type) -> Any:
    """Stored JSON of `kind`, or None if missing or damaged: shown as unknown, never raised."""
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, kind) else None


def job_row(r: Any, approvers: Sequence[str] = ()) -> JobRow:
    """A stored job; a change that cannot be read is named in `problem`, so a sweep can end it."""
    problem = None
    try:
        change = json.loads(r["change"])
        if not isinstance(change, dict):
            raise TypeError
    except (ValueError, TypeError) as exc:
        change, problem = {}, f"its stored change could not be read ({type(exc).__name__})"
    progress = _cards(f"[{r['progress_ref']}]" if r["progress_ref"] else None)
    summary = _json(r["summary"], list) or []
    return JobRow(
        id=r["id"],
        requester=r["requester"],
        state=r["state"],
        change=change,
        sealed_secrets=r["sealed_secrets"],
        target_count=r["target_count"],
        unreadable_count=r["unreadable_count"],
        created_at=aware(r["created_at"]),
        updated_at=aware(r["updated_at"]),
        expires_at=aware(r["expires_at"]),
        reason=r["reason"],
        version=r["version"],
        problem=problem,
        cards=_cards(r["cards"]),
        approvers=list(approvers),
        decided_by=r["decided_by"],
        filter=_json(r["filter"], dict),
        summary=[str(line) for line in summary],
        started_at=aware(r["started_at"]) if r["started_at"] is not None else None,
        progress_ref=progress[0] if progress else None,
        progress_at=aware(r["progress_at"]) if r["progress_at"] is not None else None,
        announced_version=r["announced_version"],
    )


def target_row(r: Any) -> JobTarget:
    try:
        seen = json.loads(r["seen"])
    except ValueError:
        seen = {}  # a reconcile then finds it changed, and leaves it as it is (stale)
    return JobTarget(
        id=r["id"],
        job_id=r["job_id"],
        target=Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
        seen=seen if isinstance(seen, dict) else {},
        state=r["state"],
        attempts=r["attempts"],
        claimed_by=r["claimed_by"],
        claimed_at=aware(r["claimed_at"]) if r["claimed_at"] is not None else None,
        detail=r["detail"],
        updated_at=aware(r["updated_at"]),
    )


def read_jobs(conn: Connection, query: Select[Any]) -> list[JobRow]:
    """The jobs `query` selects, in its order, each with its approvers in the order they approved."""
    found = conn.execute(query).mappings().all()
    approved_by: dict[str, list[str]] = {}
    if found:
        a = job_approvals.c
        voters = select(a.job_id, a.approver).where(a.job_id.in_([r["id"] for r in found])).order_by(a.at)
        for job_id, approver in conn.execute(voters):
            approved_by.setdefault(job_id, []).append(approver)
    return [job_row(r, approved_by.get(r["id"], [])) for r in found]
