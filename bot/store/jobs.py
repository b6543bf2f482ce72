"""Fleet-wide jobs and their targets. A job moves by the job table (bot/job_lifecycle.py)
as a compare-and-set UPDATE. Workers of any instance claim a running job's planned
targets, marked in flight in the claiming transaction (on PostgreSQL `FOR UPDATE SKIP
LOCKED`: two never get the same one), and record each one's outcome once. A target left
in flight by a claimer that died is never claimed again as planned: it is listed for a
reconcile by read-back. Ending a job skips what was never claimed and deletes its secrets."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, insert, select, update
from sqlalchemy.engine import Engine

from bot.job_lifecycle import (
    ENDED_JOB_STATES,
    ENDED_TARGET_STATES,
    JOB_START,
    JOB_TRANSITIONS,
    OPEN_JOB_STATES,
    OPEN_TARGET_STATES,
    TARGET_STATES,
    next_job_state,
    next_target_state,
)
from bot.lifecycle import LifecycleError
from bot.store.job_rows import PLANNED, insert_targets, read_jobs, target_row
from bot.store.schema import job_targets, jobs
from bot.store.values import JobRow, JobTarget, PlannedTarget, utcnow

IN_FLIGHT = next_target_state(PLANNED, "claim")
SKIPPED = next_target_state(PLANNED, "skip")
EXPIRING = tuple(state for state, event in JOB_TRANSITIONS if event == "expire")


class JobStore:
    """Jobs, their target rows, and the claims of workers on them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Told how many targets an end skipped (the metrics count them); set by the composition.
        self.on_skipped: Callable[[int], None] = lambda count: None

    def create(
        self,
        *,
        job_id: str,
        requester: str,
        change: dict[str, Any],
        sealed_secrets: bytes | None,
        expires_at: datetime,
        targets: Sequence[PlannedTarget] = (),
        unreadable: int = 0,
    ) -> JobRow:
        """Insert a job in planning with its targets; `change` is plain JSON with no secret,
        `sealed_secrets` ciphertext (deleted when the job ends)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    requester=requester,
                    state=JOB_START,
                    change=json.dumps(change),
                    sealed_secrets=sealed_secrets,
                    target_count=len(targets),
                    unreadable_count=unreadable,
                    created_at=now,
                    updated_at=now,
                    expires_at=expires_at,
                )
            )
            insert_targets(conn, job_id, targets)
        row = self.get(job_id)
        assert row is not None
        return row

    def add_targets(self, job_id: str, targets: Sequence[PlannedTarget], unreadable: int = 0) -> bool:
        """Add targets the plan has read to a job still planning; whether it was."""
        c = jobs.c
        with self.engine.begin() as conn:
            counted = conn.execute(
                update(jobs)
                .where(c.id == job_id, c.state == JOB_START)
                .values(
                    target_count=c.target_count + len(targets),
                    unreadable_count=c.unreadable_count + unreadable,
                    updated_at=utcnow(),
                )
            )
            if counted.rowcount != 1:
                return False
            insert_targets(conn, job_id, targets)
        return True

    def get(self, job_id: str) -> JobRow | None:
        with self.engine.connect() as conn:
            found = read_jobs(conn, _newest_first(jobs.c.id == job_id))
        return found[0] if found else None

    def in_state(self, *states: str) -> list[JobRow]:
        """The jobs in any of `states`, newest first."""
        with self.engine.connect() as conn:
            return read_jobs(conn, _newest_first(jobs.c.state.in_(states)))

    def open_jobs_of(self, app_id: str) -> dict[tuple[str, str], str]:
        """Which open job (planning, pending, approved, running or paused) holds each (entry point,
        region) of `app_id` it may still change: its id, by target."""
        c, t = jobs.c, job_targets.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(t.entry_point, t.region, t.job_id)
                .join(jobs, jobs.c.id == t.job_id)
                .where(t.app_id == app_id, c.state.in_(OPEN_JOB_STATES), t.state.in_(OPEN_TARGET_STATES))
            )
            return {(entry_point, region): job_id for entry_point, region, job_id in found}

    def due_for_expiry(self, now: datetime) -> list[JobRow]:
        """Jobs waiting on a person (for approval, or paused) past their expiry."""
        c = jobs.c
        with self.engine.connect() as conn:
            return read_jobs(conn, _newest_first(c.state.in_(EXPIRING), c.expires_at <= now))

    def transition(
        self,
        job_id: str,
        state: str,
        event: str,
        *,
        version: int | None = None,
        unexpired_at: datetime | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: `event` moves the job on as the job table says, only if it is still
        in `state` (at `version`; not expired by `unexpired_at`); LifecycleError if the table has
        no such move. Whether this call made it. "finish" moves only a job with no target left
        planned or in flight; an end skips the targets never claimed and deletes the secrets."""
        to_state = next_job_state(state, event)
        c, t, now = jobs.c, job_targets.c, utcnow()
        values: dict[str, Any] = {"state": to_state, "updated_at": now, "version": c.version + 1, **fields}
        where: list[ColumnElement[bool]] = [c.id == job_id, c.state == state]
        if version is not None:
            where.append(c.version == version)
        if unexpired_at is not None:
            where.append(c.expires_at > unexpired_at)
        if event == "finish":
            where.append(~exists().where(t.job_id == job_id, t.state.in_(OPEN_TARGET_STATES)))
        ended, skipped = to_state in ENDED_JOB_STATES, 0
        if ended:
            values["sealed_secrets"] = None
        with self.engine.begin() as conn:
            if conn.execute(update(jobs).where(*where).values(**values)).rowcount != 1:
                return False
            if ended:
                skip = update(job_targets).where(t.job_id == job_id, t.state == PLANNED)
                skipped = conn.execute(skip.values(state=SKIPPED, updated_at=now)).rowcount
        if skipped:
            self.on_skipped(skipped)
        return True

    def claim(self, job_id: str, claimer: str, limit: int) -> list[JobTarget]:
        """Up to `limit` planned targets of a running job, marked in flight by `claimer` in this
        transaction, oldest first; none if the job is not running. The job row is held shared
        meanwhile, so a pause or cancel lands before or after a claim, never in its middle."""
        t, now = job_targets.c, utcnow()
        with self.engine.begin() as conn:
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id).with_for_update(read=True)).scalar()
            if state != "running":
                return []
            free = (
                select(t.id)
                .where(t.job_id == job_id, t.state == PLANNED)
                .order_by(t.id)
                .limit(limit)
                .with_for_update(skip_locked=True)  # rows another claim holds are passed over
            )
            # Fetched first: as an IN (subquery) of the UPDATE, PostgreSQL may run it again per
            # row, past the rows this UPDATE already took, and hand out more than `limit`.
            ids = conn.execute(free).scalars().all()
            if not ids:
                return []
            claimed = conn.execute(
                update(job_targets)
                .where(t.id.in_(ids), t.state == PLANNED)
                .values(state=IN_FLIGHT, claimed_by=claimer, claimed_at=now, attempts=t.attempts + 1, updated_at=now)
                .returning(*job_targets.c)
            )
            return sorted((target_row(r) for r in claimed.mappings()), key=lambda row: row.id)

    def record(self, target_id: int, claimer: str, event: str, detail: str | None = None) -> bool:
        """Compare-and-set a target's outcome (confirm, fail, find_stale) once: only from in flight,
        by its claimer. Whether this call recorded it; False if it was recorded already."""
        to_state = next_target_state(IN_FLIGHT, event)
        if to_state not in ENDED_TARGET_STATES:
            raise LifecycleError(f"{event} is not an outcome of a target in flight")
        t = job_targets.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(job_targets)
                .where(t.id == target_id, t.state == IN_FLIGHT, t.claimed_by == claimer)
                .values(state=to_state, detail=detail, updated_at=utcnow())
            )
        return done.rowcount == 1

    def stranded(self, *, claimed_before: datetime, job_id: str | None = None) -> list[JobTarget]:
        """Targets in flight since before `claimed_before` (of one job): a live claimer records an
        outcome sooner, so theirs died. Each is for a reconcile by read-back; no claim takes them."""
        t = job_targets.c
        where = and_(t.state == IN_FLIGHT, t.claimed_at < claimed_before)
        if job_id is not None:
            where = and_(where, t.job_id == job_id)
        with self.engine.connect() as conn:
            return [target_row(r) for r in conn.execute(select(job_targets).where(where).order_by(t.id)).mappings()]

    def reclaim(self, target_id: int, dead_claimer: str, claimer: str) -> bool:
        """Take a stranded target over from `dead_claimer`, to send it again once its read-back
        showed nothing was sent; compare-and-set, so of two reconciles one wins."""
        t, now, to_state = job_targets.c, utcnow(), next_target_state(IN_FLIGHT, "reclaim")
        with self.engine.begin() as conn:
            done = conn.execute(
                update(job_targets)
                .where(t.id == target_id, t.state == IN_FLIGHT, t.claimed_by == dead_claimer)
                .values(state=to_state, claimed_by=claimer, claimed_at=now, attempts=t.attempts + 1, updated_at=now)
            )
        return done.rowcount == 1

    def heartbeat(self, claimer: str, target_ids: Collection[int]) -> int:
        """Refresh the claim of `claimer` on those of `target_ids` still in flight by it: a claimer
        alive keeps its targets from turning stranded, however long its Agora calls take. How many."""
        if not target_ids:
            return 0
        t = job_targets.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(job_targets)
                .where(t.id.in_(list(target_ids)), t.state == IN_FLIGHT, t.claimed_by == claimer)
                .values(claimed_at=utcnow())
            )
        return done.rowcount

    def targets(self, job_id: str, *states: str) -> list[JobTarget]:
        """A job's targets (in `states`, if named), in the plan's order."""
        t = job_targets.c
        query = select(job_targets).where(t.job_id == job_id).order_by(t.id)
        if states:
            query = query.where(t.state.in_(states))
        with self.engine.connect() as conn:
            return [target_row(r) for r in conn.execute(query).mappings()]

    def progress(self, job_id: str) -> dict[str, int]:
        """How many of a job's targets are in each target state (every state named, 0 if none)."""
        t = job_targets.c
        counts = dict.fromkeys(TARGET_STATES, 0)
        with self.engine.connect() as conn:
            for state, count in conn.execute(select(t.state, func.count()).where(t.job_id == job_id).group_by(t.state)):
                counts[state] = count
        return counts


def _newest_first(*where: ColumnElement[bool]) -> Select[Any]:
    return select(jobs).where(*where).order_by(jobs.c.created_at.desc())
