"""Who approved a fleet-wide job, and where its approval cards are: a vote is counted, and the
last one needed approves the job, in one transaction (as RequestStore.add_approval does for a
request), so of any approvals at once on any instances exactly one completes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.job_lifecycle import next_job_state
from bot.store.job_rows import cards_json
from bot.store.schema import job_approvals, jobs
from bot.store.values import CardRef, Vote, utcnow

PENDING = "pending"


class JobApprovals:
    """The votes on pending jobs, and the jobs' card places."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, job_id: str, approver: str, *, now: datetime, required: int) -> Vote:
        """Count one approver's vote on a pending, unexpired job, and approve the job in the same
        transaction when it was the last one needed (`decided_by` the approver)."""
        c = jobs.c
        try:
            with self.engine.begin() as conn:
                # Locks the row (PostgreSQL) or the database (SQLite) until commit: votes queue here.
                claimed = conn.execute(
                    update(jobs)
                    .where(c.id == job_id, c.state == PENDING, c.expires_at > now)
                    .values(version=c.version + 1, updated_at=utcnow())
                )
                if claimed.rowcount != 1:
                    return Vote.CLOSED
                conn.execute(insert(job_approvals).values(job_id=job_id, approver=approver, at=utcnow()))
                count = conn.execute(
                    select(func.count()).select_from(job_approvals).where(job_approvals.c.job_id == job_id)
                ).scalar_one()
                if count < required:
                    return Vote.COUNTED
                conn.execute(
                    update(jobs)
                    .where(c.id == job_id)
                    .values(state=next_job_state(PENDING, "approve"), decided_by=approver)
                )
                return Vote.COMPLETED
        except IntegrityError:  # the primary key (job, approver): a repeat; the whole transaction rolled back
            return Vote.REPEAT

    def set_cards(self, job_id: str, cards: Sequence[CardRef]) -> None:
        """Remember where a job's approval cards are, to redraw them in place."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(cards=cards_json(cards)))
