"""A person's hand on a fleet-wide job once it was approved: Pause, Resume and Cancel, for its
requester and the approvers alone; the expiry of a job left paused (like a request left
pending); and the figures people see of one: "412/800 applied, 3 failed, 2 stale, about 9 s left"."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.approvals import Refused
from bot.job_lifecycle import ENDED_JOB_STATES
from bot.store.job_progress import JobProgressStore
from bot.store.jobs import JobStore
from bot.store.values import JobRow, utcnow

log = logging.getLogger(__name__)

# The states a person's move starts from, by its event (bot/job_lifecycle.py has the whole table).
MOVES_FROM = {"pause": ("running",), "resume": ("paused",), "cancel": ("approved", "running", "paused")}
DONE_WORDS = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
EXPIRED = "Expired: it was left paused past its expiry."
# How a person's move is recorded in the job's reason: "Paused by <@U123>."
_MOVED_BY = re.compile(r"^(?:Paused|Resumed|Cancelled) by <@([UW][A-Z0-9]{1,31})>\.")
# A click that loses a race re-reads the job and tries from where it is now, this often.
ATTEMPTS = 3


@dataclass(frozen=True)
class JobView:
    """A job as a listing shows it: the row, how many targets are in each state, and its line."""

    job: JobRow
    counts: dict[str, int]
    line: str


def _count(n: int, what: str) -> str:
    return f"{n} {what}"


def mover(reason: str) -> str | None:
    """The person a job's reason names as having moved it (their own click), or None."""
    found = _MOVED_BY.match(reason)
    return found[1] if found else None


def eta_words(seconds: float) -> str:
    """'about 9 s left', 'about 4 min left', 'about 2 h left'."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min left"
    return f"about {round(seconds / 3600)} h left"


def progress_line(job: JobRow, counts: dict[str, int], now: datetime) -> str:
    """ "412/800 applied, 3 failed, 2 stale, about 9 s left": out of the targets to change (those
    already as asked are named apart); the time left from the pace since it started, only while
    it runs, once a target is done and while some are still to send (the last ones in flight may
    wait for a read-back far longer than the pace says: they are counted instead)."""
    unchanged, skipped = counts.get("unchanged", 0), counts.get("skipped", 0)
    applied, failed, stale = counts.get("applied", 0), counts.get("failed", 0), counts.get("stale", 0)
    total = sum(counts.values()) - unchanged
    parts = [f"{applied}/{total} applied", _count(failed, "failed"), _count(stale, "stale")]
    if unchanged:
        parts.append(_count(unchanged, "already as asked"))
    if skipped:
        parts.append(_count(skipped, "not sent"))
    done, left = applied + failed + stale, counts.get("planned", 0) + counts.get("in_flight", 0)
    if job.state in ENDED_JOB_STATES and counts.get("in_flight", 0):  # sent before it ended, not answered yet
        parts.append(_count(counts["in_flight"], "still in flight"))
    if job.state == "running" and job.started_at is not None and done and left:
        if counts.get("planned", 0):
            elapsed = max((now - job.started_at).total_seconds(), 0.0)
            parts.append(eta_words(elapsed / done * left))
        else:  # sent, not settled: its answer under way, or (Agora failed to answer) a read-back to come
            parts.append(_count(counts["in_flight"], "in flight"))
    return ", ".join(parts)


def already(job: JobRow, event: str) -> str:
    """Why `event` cannot move `job` as it is now, for whoever clicked."""
    if job.state in ENDED_JOB_STATES:
        return f"Job `{job.id}` has already ended: {job.state}." + (f" {job.reason}" if job.reason else "")
    if job.state == "paused" and event == "pause":
        return f"Job `{job.id}` is already paused." + (f" {job.reason}" if job.reason else "")
    if job.state == "running" and event == "resume":
        return f"Job `{job.id}` is already running."
    if job.state == "approved":
        return f"Job `{job.id}` has not started yet: it can only be cancelled."
    return f"Job `{job.id}` is waiting for approval ({job.state}): decide it on its approval card."


class JobControl:
    """Moves people make on approved jobs, and the paused jobs' expiry; each move a compare-and-set,
    so of two clicks one wins and the other is told what happened."""

    def __init__(
        self,
        jobs: JobStore,
        progress: JobProgressStore,
        *,
        ttl_seconds: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._jobs = jobs
        self._progress = progress
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock

    def get(self, job_id: str) -> JobRow:
        """The job; Refused if there is none."""
        job = self._jobs.get(job_id)
        if job is None:
            raise Refused(f"There is no job `{job_id}`.")
        return job

    def move(self, job_id: str, event: str, user: str, *, is_approver: bool) -> JobRow:
        """Pause, resume or cancel `job_id` for `user` (its requester, or an approver): the job as
        this move left it; Refused saying why not, or what another click did first."""
        job = self.get(job_id)
        if user != job.requester and not is_approver:
            raise Refused(
                f"Only the requester of job `{job.id}` (<@{job.requester}>) and the approvers named in "
                f"RECBOT_APPROVERS can {event} it."
            )
        for _ in range(ATTEMPTS):
            if job.state not in MOVES_FROM[event]:
                raise Refused(already(job, event))
            fields: dict[str, Any] = {"reason": f"{DONE_WORDS[event].capitalize()} by <@{user}>."}
            if event == "pause":  # a paused job waits on a person, and expires like a request
                fields["expires_at"] = self._clock() + self._ttl
            if self._jobs.transition(job.id, job.state, event, **fields):
                log.info("job %s %s by %s", job.id, DONE_WORDS[event], user)
                return self.get(job.id)
            job = self.get(job.id)  # another click or the worker moved it first
        raise Refused(already(job, event))

    def expire_paused(self) -> list[JobRow]:
        """The sweep's: end every job left paused past its expiry; the jobs this call ended."""
        ended = []
        for job in self._jobs.due_for_expiry(self._clock()):
            # At its version: a job resumed and paused again since it was listed has a new expiry.
            if job.state == "paused" and self._jobs.transition(
                job.id, "paused", "expire", version=job.version, reason=EXPIRED
            ):
                log.info("job %s expired while paused", job.id)
                ended.append(self.get(job.id))
        return ended

    def view(self, job: JobRow) -> JobView:
        counts = self._jobs.progress(job.id)
        return JobView(job, counts, progress_line(job, counts, self._clock()))

    def overview(self, ended: int = 5) -> list[JobView]:
        """The jobs running, paused or approved, and the latest `ended` that ran, with their figures."""
        return [self.view(job) for job in self._progress.listed(ended)]
