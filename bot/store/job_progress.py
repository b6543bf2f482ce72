"""What people see of a running job, once across every instance: the claim on posting its one
progress message and where it landed, the claim on each edit of it (at most one per
EDIT_GAP, a compare-and-set on `progress_at`, since Slack's chat.update takes about one a
second), the claim on announcing its end (as bot/store/announcements.py does for requests),
and the jobs `/recording jobs` and the App Home list."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.engine import Engine

from bot.job_lifecycle import ENDED_JOB_STATES
from bot.store.engine import aware
from bot.store.job_rows import read_jobs
from bot.store.schema import jobs
from bot.store.values import CardRef, JobRow, utcnow

EDIT_GAP = timedelta(seconds=2)
# What `/recording jobs` lists besides the latest ended: pending too, so a card lost is found again.
LISTED_OPEN = ("running", "paused", "approved", "pending")


class JobProgressStore:
    """The claims on a job's progress message and end announcement, and the jobs listed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim_post(self, job_id: str, *, stale_before: datetime) -> str | None:
        """Compare-and-set: the right to post the progress message of `job_id`, if it has none and
        nobody holds that right (or its holder claimed it before `stale_before` and stopped). Its token."""
        c = jobs.c
        free = or_(c.progress_claimed_at.is_(None), c.progress_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(c.id == job_id, c.progress_ref.is_(None), free)
                .values(progress_claimed_by=token, progress_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

    def posted(self, job_id: str, token: str, ref: CardRef, now: datetime) -> None:
        """The holder of `token` posted the progress message at `ref`; `now` counts as its last edit."""
        c = jobs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(c.id == job_id, c.progress_claimed_by == token)
                .values(
                    progress_ref=json.dumps([ref.channel, ref.ts]),
                    progress_at=now,
                    progress_claimed_by=None,
                    progress_claimed_at=None,
                )
            )

    def release_post(self, job_id: str, token: str) -> None:
        """Posting failed: the next caller claims it again."""
        c = jobs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(c.id == job_id, c.progress_claimed_by == token)
                .values(progress_claimed_by=None, progress_claimed_at=None)
            )

    def claim_edit(self, job_id: str, now: datetime) -> bool:
        """Compare-and-set on its last edit: whether the caller may edit the progress message now,
        no edit having been claimed within EDIT_GAP before `now` (a batch's edit: skipped if not,
        the next batch or the end catches it up)."""
        c = jobs.c
        recent = or_(c.progress_at.is_(None), c.progress_at <= now - EDIT_GAP)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs).where(c.id == job_id, c.progress_ref.is_not(None), recent).values(progress_at=now)
            )
        return done.rowcount == 1

    def reserve_edit(self, job_id: str, now: datetime) -> datetime | None:
        """The moment the caller may edit the progress message, reserved for it: `now`, or EDIT_GAP
        after the last edit claimed or reserved, whichever is later (an edit people must see, such as
        a move or the end, waits its turn rather than being skipped). None: it has no message yet."""
        c = jobs.c
        while True:  # a compare-and-set on the last reservation: retried only when another won it
            with self.engine.begin() as conn:
                found = conn.execute(select(c.progress_at).where(c.id == job_id, c.progress_ref.is_not(None))).first()
                if found is None:
                    return None
                last = aware(found[0]) if found[0] is not None else None
                slot = max(now, last + EDIT_GAP) if last is not None else now
                same = c.progress_at.is_(None) if found[0] is None else c.progress_at == found[0]
                if conn.execute(update(jobs).where(c.id == job_id, same).values(progress_at=slot)).rowcount == 1:
                    return slot

    def unannounced_ends(self) -> list[str]:
        """Jobs that ran and ended without their end announced (it failed, or is being made)."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(jobs.c.id).where(_unannounced(), jobs.c.started_at.is_not(None))).scalars())

    def claim_end(self, job_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Compare-and-set: the right to announce the end of `job_id`, if it is not announced and
        nobody holds that right (or, with `stale_before`, its holder claimed it before then). Its token."""
        c = jobs.c
        free: ColumnElement[bool] = c.announce_claimed_at.is_(None)
        if stale_before is not None:
            free = free | (c.announce_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(c.id == job_id, _unannounced(), free)
                .values(announce_claimed_by=token, announce_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

    def finish_end(self, job_id: str, token: str) -> None:
        """The end of `job_id` was announced by the holder of `token`: never again."""
        self._settle(job_id, token, announced=True)

    def release_end(self, job_id: str, token: str) -> None:
        """The announcement by the holder of `token` failed: the next sweep claims it again."""
        self._settle(job_id, token, announced=False)

    def _settle(self, job_id: str, token: str, *, announced: bool) -> None:
        c = jobs.c
        values = {"announce_claimed_by": None, "announce_claimed_at": None}
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(c.id == job_id, c.announce_claimed_by == token)
                .values(**values, **({"announced_version": c.version} if announced else {}))
            )

    def listed(self, ended: int = 5) -> list[JobRow]:
        """Running, paused, approved and pending jobs (newest first), then the latest `ended` that ran."""
        c = jobs.c
        with self.engine.connect() as conn:
            open_jobs = read_jobs(conn, select(jobs).where(c.state.in_(LISTED_OPEN)).order_by(c.created_at.desc()))
            recent = (
                select(jobs)
                .where(c.state.in_(ENDED_JOB_STATES), c.started_at.is_not(None))
                .order_by(c.updated_at.desc())
                .limit(ended)
            )
            return open_jobs + read_jobs(conn, recent)


def _unannounced() -> ColumnElement[bool]:
    c = jobs.c
    return and_(c.state.in_(ENDED_JOB_STATES), or_(c.announced_version.is_(None), c.announced_version < c.version))
