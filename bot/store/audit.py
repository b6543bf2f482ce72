"""The audit trail: append only, one row per thing that happened to a target, its
detail already safe to show (keys as fingerprints); read newest first."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from bot.models import EVERY_REGION, FieldChange, Target
from bot.store.engine import aware
from bot.store.schema import audit_events, changes_json
from bot.store.values import AuditEvent, utcnow


class AuditLog:
    """Appends events and reads them back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(
        self,
        event_name: str,
        actor: str,
        target: Target,
        *,
        request_id: str | None = None,
        job_id: str | None = None,
        changes: list[FieldChange] | None = None,
        note: str | None = None,
    ) -> None:
        """Append one event (of a request, or of a job's target); `changes` must already be safe
        (keys as fingerprints)."""
        detail: dict[str, Any] = {"changes": json.loads(changes_json(changes or []))}
        if note:
            detail["note"] = note
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_events).values(
                    at=utcnow(),
                    event=event_name,
                    actor=actor,
                    app_id=target.app_id,
                    entry_point=target.entry_point,
                    region=target.region,
                    request_id=request_id,
                    job_id=job_id,
                    detail=json.dumps(detail),
                )
            )

    def history(self, target: Target, limit: int = 20) -> list[AuditEvent]:
        """The latest `limit` events of a target and of its entry point as a whole
        (its recording switch), newest first."""
        a = audit_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_events)
                .where(
                    a.app_id == target.app_id,
                    a.entry_point == target.entry_point,
                    a.region.in_((target.region, EVERY_REGION)),
                )
                .order_by(a.id.desc())
                .limit(limit)
            ).mappings()
            return [
                AuditEvent(
                    aware(r["at"]),
                    r["event"],
                    r["actor"],
                    target if r["region"] == target.region else Target.every_region(target.app_id, target.entry_point),
                    r["request_id"],
                    json.loads(r["detail"]),
                    r["job_id"],
                )
                for r in rows
            ]

    def latest(self, limit: int = 10) -> list[AuditEvent]:
        """The latest `limit` events of every target, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)).mappings()
            return [
                AuditEvent(
                    aware(r["at"]),
                    r["event"],
                    r["actor"],
                    Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
                    r["request_id"],
                    json.loads(r["detail"]),
                    r["job_id"],
                )
                for r in rows
            ]
