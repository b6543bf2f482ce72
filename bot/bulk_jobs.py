"""Fleet-wide jobs as people ask for and decide them: the plan (every target read), the storage
check once per destination, the job awaiting approval with its keys sealed, and the decisions
with the rules of one change request (bot/approvals.py): two-person, N-of-M, no self-approval,
expiry. Every move is a compare-and-set in the store (bot/store/jobs.py, job_approvals.py), so
clicks at once on any instances make it once; only the caller that made a move tells people."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.approvals import Refused
from bot.bulk_change import BulkRequest, stored_keys
from bot.bulk_plan import Plan, destinations, make_plan, summary
from bot.catalog import region_label, vendor_name
from bot.fleet import Fleet
from bot.metrics import Metrics
from bot.models import StorageConfig
from bot.probe import Prober
from bot.redaction import hide
from bot.seal import Sealer, SealError
from bot.store.job_approvals import JobApprovals
from bot.store.jobs import JobStore
from bot.store.values import CardRef, JobRow, Vote, utcnow

log = logging.getLogger(__name__)

EXPIRED = "Expired before it was approved."
INTERRUPTED = "Its plan was interrupted before it was sent for approval (recbot stopped); ask again."
# A job is made in planning and sent for approval in the same call, and the last approval
# starts it at once, well within this: one still planning or approved after it was left by a
# process that stopped (a planning one with its keys sealed).
STRANDED_AGE = timedelta(minutes=5)
CANCELLED = "Cancelled by the requester."
NOTHING_TO_CHANGE = "Every target matched is already as asked, so there is nothing to approve and no job was made."
NOTHING_MATCHED = (
    "No target matches this filter, so there is nothing to approve and no job was made: check the App ID, "
    "regions, names, vendor and bucket (`/recording list` shows what each entry point has)."
)
NOTHING_READABLE = "No target asked for could be read (why is above), so nothing is to approve and no job was made."


@dataclass(frozen=True)
class Planned:
    """What asking made: the plan, and the job awaiting approval (None: none was made, `note` says why)."""

    plan: Plan
    job: JobRow | None
    note: str = ""


@dataclass(frozen=True)
class Approval:
    """What one approval did: the job as it left it, the vote (counted, or the last one needed),
    and whether this call started the job: only the caller that started it tells the requester."""

    job: JobRow
    vote: Vote
    started: bool


def already(job: JobRow) -> str:
    """Why a job can no longer be decided, for whoever clicked too late."""
    by = f" by <@{job.decided_by}>" if job.decided_by else ""
    if job.state in ("approved", "running", "paused"):
        return f"Job `{job.id}` was already approved{by} and is being applied."
    if job.state == "done":
        return f"Job `{job.id}` was already approved{by} and applied."
    if job.state == "rejected":
        return f"Job `{job.id}` was already rejected{by}."
    if job.state == "cancelled":
        return f"Job `{job.id}` was already cancelled{by}."
    if job.state == "expired":
        return f"Job `{job.id}` has already expired."
    return f"Job `{job.id}` has already ended ({job.state})."


def _why_nothing(plan: Plan) -> str:
    """Why a plan that changes nothing made no job: all as asked, none readable, or none matched."""
    if plan.rows:
        return NOTHING_TO_CHANGE
    return NOTHING_READABLE if plan.unreadable else NOTHING_MATCHED


def _where(storage: StorageConfig) -> str:
    """A destination as the card names it: vendor, bucket and region (no key)."""
    return f"{vendor_name(storage.vendor)} bucket {storage.bucket} ({region_label(storage.vendor, storage.region)})"


class BulkJobs:
    """Asks and decides fleet-wide jobs. Each move returns the job as this call left it, or
    raises Refused (for the person alone) when it was not allowed or another click made it first."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        votes: JobApprovals,
        fleet: Fleet,
        sealer: Sealer,
        prober: Prober,
        ttl_seconds: int,
        required_approvals: int,
        max_targets: int,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self._jobs = jobs
        self._votes = votes
        self._fleet = fleet
        self._sealer = sealer
        self._prober = prober
        self._ttl = timedelta(seconds=ttl_seconds)
        self.required_approvals = required_approvals
        self.max_targets = max_targets
        self._clock = clock
        self._metrics = metrics or Metrics()

    def ask(self, request: BulkRequest, requester: str) -> Planned:
        """Read every target (PlanError, TooManyTargets), check each new destination's storage,
        and make the job awaiting approval; Refused if the storage check refuses it."""
        plan = make_plan(self._fleet, request, self.max_targets)
        if not plan.changing:
            return Planned(plan, None, _why_nothing(plan))
        self._refuse_overlap(plan)
        checked = self._check_storage(plan)
        public, keys = request.change.stored()
        job_id = secrets.token_hex(8)
        self._jobs.create(
            job_id=job_id,
            requester=requester,
            change=public,
            sealed_secrets=self._sealer.seal(keys) if keys is not None else None,
            expires_at=self._clock() + self._ttl,
            targets=plan.planned(self._sealer.digest_key),
            unreadable=len(plan.unreadable),
        )
        lines = summary(plan) + checked
        self._jobs.transition(
            job_id,
            "planning",
            "plan",
            filter=request.targets.model_dump_json(),
            summary=json.dumps(lines),
        )
        if plan.already:  # their outcome is known now: nothing will be sent to them
            self._metrics.bulk_targets.labels(outcome="unchanged").inc(plan.already)
        log.info("job %s asked by %s: %s targets", job_id, requester, len(plan.rows))
        return Planned(plan, self.get(job_id))

    def _refuse_overlap(self, plan: Plan) -> None:
        """Refused if an open job may still change some of the targets this plan would: two jobs on
        one target would leave it to whichever runs last (and the other's rows stale)."""
        held = self._jobs.open_jobs_of(plan.request.targets.app_id)
        taken = [held[key] for row in plan.changing if (key := (row.target.entry_point, row.target.region)) in held]
        if not taken:
            return
        first = self.get(taken[0])
        others = len(set(taken)) - 1
        also = f" (and {others} other open job{'s' if others > 1 else ''})" if others else ""
        raise Refused(
            f"{len(taken)} of the targets this would change are in job `{first.id}`{also}, asked by "
            f"<@{first.requester}> and {first.state}: one job at a time per target. Wait for it to end, or "
            "cancel it (`/recording jobs`), then ask again. Nothing was planned.",
            mentions=(first.requester,),
        )

    def _check_storage(self, plan: Plan) -> list[str]:
        """The storage check of each destination with new keys, once each: the card's lines.
        Refused if one is refused and the check is required (RECBOT_STORAGE_PROBE=require)."""
        if not self._prober.enabled:
            return []
        lines = []
        for storage in destinations(plan):
            result = self._prober.probe(storage)
            if result.verdict == "refused" and self._prober.blocks:
                raise Refused(
                    f"The storage check of {_where(storage)} failed, so no job was made and nothing was sent: "
                    f"{result.summary()}. Fix the keys or the storage and ask again."
                )
            lines.append(f"storage check of {_where(storage)}: {result.summary()}")
        return lines

    def attach_cards(self, job_id: str, cards: list[CardRef]) -> None:
        """Remember where the job's approval cards are, to redraw them in place."""
        self._votes.set_cards(job_id, cards)

    def get(self, job_id: str) -> JobRow:
        job = self._jobs.get(job_id)
        if job is None:
            raise Refused("That fleet-wide job does not exist.")
        return job

    def pending_job(self, job_id: str) -> JobRow:
        """The job if it can still be decided; otherwise Refused, saying why."""
        job = self.get(job_id)
        if job.state != "pending":
            raise Refused(already(job))
        if self._clock() >= job.expires_at:
            raise Refused(f"Job `{job.id}` has expired and can no longer be decided.")
        return job

    def approve(self, job_id: str, user: str, *, is_approver: bool) -> Approval:
        """Count one approval; the last one needed approves the job and starts it, once."""
        job = self.pending_job(job_id)
        if user == job.requester:
            raise Refused("You cannot approve your own fleet-wide change; another approver must.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can approve changes.")
        vote = self._votes.add(job.id, user, now=self._clock(), required=self.required_approvals)
        if vote is Vote.CLOSED:
            now = self.get(job.id)
            raise Refused(already(now) if now.state != "pending" else f"Job `{job.id}` has expired.")
        if vote is Vote.REPEAT:
            raise Refused(f"You have already approved job `{job.id}`; it needs another approver.")
        log.info("job %s: approval by %s counted (%s)", job.id, user, vote.name)
        started = vote is Vote.COMPLETED and self.start(job.id)
        return Approval(self.get(job.id), vote, started)

    def start(self, job_id: str) -> bool:
        """Start an approved job: workers of every instance may claim its targets from now on.
        Whether this call started it (a compare-and-set: once, whoever else tries)."""
        started = self._jobs.transition(job_id, "approved", "start", started_at=self._clock())
        if started:
            log.info("job %s started", job_id)
        return started

    def start_approved(self) -> list[JobRow]:
        """The sweep's: start jobs left approved for STRANDED_AGE (their last approver's process
        stopped before starting them; a live one starts its job at once); the ones this call started."""
        before = self._clock() - STRANDED_AGE
        left = [job for job in self._jobs.in_state("approved") if job.updated_at < before]
        return [self.get(job.id) for job in left if self.start(job.id)]

    def rejectable(self, job_id: str, user: str, *, is_approver: bool) -> JobRow:
        """The pending job `user` may reject; Refused, saying why, if they may not (asked before
        the reason is)."""
        job = self.pending_job(job_id)
        if user == job.requester:
            raise Refused("To withdraw your own fleet-wide change, use Cancel.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can reject changes.")
        return job

    def reject(self, job_id: str, user: str, reason: str, *, is_approver: bool) -> JobRow:
        job = self.rejectable(job_id, user, is_approver=is_approver)
        return self._decide(job, "reject", user, hide(reason, self._keys_of(job)))  # as for one request

    def _keys_of(self, job: JobRow) -> list[str]:
        """The storage keys a job carries (none when it carries none, or they cannot be opened)."""
        try:
            return stored_keys(self._sealer.unseal(job.sealed_secrets) if job.sealed_secrets is not None else None)
        except (SealError, ValueError):
            return []

    def cancel(self, job_id: str, user: str) -> JobRow:
        job = self.pending_job(job_id)
        if user != job.requester:
            raise Refused("Only the requester can cancel a fleet-wide change while it awaits approval.")
        return self._decide(job, "cancel", user, CANCELLED)

    def _decide(self, job: JobRow, event: str, user: str, reason: str) -> JobRow:
        """End a pending, unexpired job by a person's decision (its keys deleted); Refused if too late."""
        if not self._jobs.transition(
            job.id, "pending", event, unexpired_at=self._clock(), decided_by=user, reason=reason
        ):
            now = self.get(job.id)
            raise Refused(already(now) if now.state != "pending" else f"Job `{job.id}` has expired.")
        log.info("job %s: %s by %s", job.id, event, user)
        return self.get(job.id)

    def fail_stranded_plans(self) -> list[JobRow]:
        """The sweep's: fail jobs left planning by a process that stopped (their keys deleted);
        the ones this call failed."""
        before = self._clock() - STRANDED_AGE
        failed = []
        for job in self._jobs.in_state("planning"):
            if job.created_at < before and self._jobs.transition(job.id, "planning", "fail", reason=INTERRUPTED):
                log.info("job %s failed: its plan was interrupted", job.id)
                failed.append(self.get(job.id))
        return failed

    def expire_due(self) -> list[JobRow]:
        """The sweep's: end every pending job past its expiry (a paused one's is the worker's
        side); the ones this call ended."""
        ended = []
        for job in self._jobs.due_for_expiry(self._clock()):
            if job.state == "pending" and self._jobs.transition(job.id, "pending", "expire", reason=EXPIRED):
                log.info("job %s expired", job.id)
                ended.append(self.get(job.id))
        return ended
