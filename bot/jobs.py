"""The worker of fleet-wide jobs, one per instance: it claims planned targets of running jobs
(bot/store/jobs.py), reads each one live in the Agora client's background lane, PATCHes the
job's change only onto a target still as the plan saw it, reads it back and records the
outcome once. A target is in flight from its claim on; its claimer's heartbeat keeps it
fresh, so one left in flight past STRANDED_AFTER has a dead claimer, and is reconciled by
reading it back: in effect -> applied with no PATCH; as the plan saw it -> PATCHed now;
else stale; in a job that ended since, it is only read back (in effect -> applied; as the
plan saw it -> failed, not sent). Agora refusing recbot's credentials, or answering server
errors in a row, pauses the job (until a person resumes it, or it expires like a request).
Each outcome is audited once, by the worker that recorded it, with the job's id.

A job's change is bot/bulk_change.py's Change as `Change.stored` gives it (plain JSON, and
the keys sealed apart); what the plan saw of a target is its Observation (bot/bulk_plan.py)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from bot.agora import (
    AgoraBadRequest,
    AgoraClient,
    AgoraCredentialsUnusable,
    AgoraError,
    AgoraForbidden,
    AgoraNotFound,
    AgoraRedirected,
    AgoraUnauthorized,
    AgoraUnavailable,
)
from bot.applying import expected_after, is_empty, matches, no_answer
from bot.background import Periodic
from bot.bulk_change import Change, patch_for
from bot.drift import DriftWatch
from bot.job_lifecycle import ENDED_JOB_STATES, next_target_state
from bot.job_report import asked_changes
from bot.metrics import Metrics
from bot.models import RecordingConfig, fingerprint
from bot.observation import observe
from bot.seal import Sealer, SealError
from bot.store.audit import AuditLog
from bot.store.jobs import IN_FLIGHT, JobStore
from bot.store.values import JobRow, JobTarget, SwitchBusy, utcnow
from bot.switch import SwitchBook

log = logging.getLogger(__name__)

# A live claimer refreshes its claims every HEARTBEAT_SECONDS, however long its Agora calls
# take; one not refreshed for STRANDED_AFTER is taken for dead. Far apart, so a slow database
# or a busy machine never makes a live claimer look dead (two would then PATCH one target).
HEARTBEAT_SECONDS = 2.0
STRANDED_AFTER = timedelta(seconds=30)
IDLE_SECONDS = 1.0  # how often an idle worker looks for work
WORKERS = 8  # targets claimed at a time, and worked at once, per instance
MAX_ATTEMPTS = 5  # handed to a worker this often without an answer: failed, not tried again
SERVER_ERRORS_TO_PAUSE = 5  # Agora not answering properly this many times in a row pauses the job


class Unreadable(Exception):
    """A job's stored change or sealed keys cannot be read: it can only be failed."""


def read_change(job: JobRow, sealer: Sealer) -> Change:
    """A job's change with its keys opened in memory; Unreadable saying why not."""
    if job.problem:
        raise Unreadable(job.problem)
    try:
        keys = sealer.unseal(job.sealed_secrets) if job.sealed_secrets is not None else None
    except SealError:
        raise Unreadable("its keys were sealed with another RECBOT_SEAL_KEY than this recbot has") from None
    try:
        return Change.from_stored(job.change, keys)
    except ValueError as exc:  # its words name the kind of error only, never a key
        raise Unreadable(f"its change is {exc}") from None


def as_seen(t: JobTarget, live: RecordingConfig, digest_key: bytes) -> bool:
    """Whether `live` is what the plan saw of `t` (bot/bulk_plan.py keeps it as an Observation)."""
    return asdict(observe(live, digest_key)) == t.seen


def as_asked(live: RecordingConfig, public: dict[str, Any]) -> bool:
    """Whether `live` holds what a job's change asks, as far as its stored public JSON tells (the
    keys themselves were deleted when it ended: the access key is compared by fingerprint)."""
    for wanted, now in ((public.get("mp4"), live.mp4), (public.get("hls"), live.hls)):
        if isinstance(wanted, bool) and wanted != now:
            return False
    storage, current = public.get("storage") or {}, live.storage_config
    if not isinstance(storage, dict) or storage.get("kind") == "unchanged":
        return True
    if current is None or fingerprint(current.access_key) != storage.get("access_key"):
        return False
    if storage.get("kind") == "storage":
        asked = (storage.get("vendor"), storage.get("region"), storage.get("bucket"))
        return asked == (current.vendor, current.region, current.bucket)
    return True


def refuses_credentials(exc: AgoraError) -> bool:
    """Agora refused recbot itself (401, 403), or the credentials could not be sent."""
    return isinstance(exc, AgoraUnauthorized | AgoraForbidden | AgoraCredentialsUnusable)


def may_have_landed(exc: AgoraError) -> bool:
    """A server error or no answer at all: the call may or may not have taken effect."""
    return isinstance(exc, AgoraUnavailable) and (exc.status is None or exc.status >= 500)


@dataclass
class _Round:
    """One job within one round of the worker: its change, and whether this round stopped it."""

    job: JobRow
    change: Change
    halted: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """The job worker of one instance, under a claimer id new at each start."""

    def __init__(
        self,
        store: JobStore,
        agora: AgoraClient,
        sealer: Sealer,
        watch: DriftWatch,
        switches: SwitchBook,
        *,
        audit: AuditLog,
        paused_for: timedelta,
        workers: int = WORKERS,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._audit = audit
        self._paused_for = paused_for  # a job the worker pauses waits this long for a person, then expires
        self._agora = agora
        self._sealer = sealer
        self._watch = watch
        self._switches = switches
        self._workers = workers
        self.claimer = ""
        self._held: set[int] = set()  # targets this runner is working on: its heartbeat refreshes them
        self._lock = threading.Lock()
        self._server_errors: dict[str, int] = {}  # per job, in a row
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._watchers: list[Callable[[str], None]] = []
        self._pause_watchers: list[Callable[[str], None]] = []
        self._settled_at = float("-inf")  # when targets left in flight in ended jobs were last looked for

    def watch(self, watcher: Callable[[str], None]) -> None:
        """Call `watcher(job_id)` (on the worker's thread) after each batch of a job's targets and
        each move the worker makes (pause, finish, fail): what people see of it can be redrawn."""
        self._watchers.append(watcher)

    def watch_pauses(self, watcher: Callable[[str], None]) -> None:
        """Call `watcher(job_id)` (on the worker's thread) when this worker paused a job itself
        (Agora refused recbot, or kept failing): once across instances, as only one makes that move."""
        self._pause_watchers.append(watcher)

    def _tell(self, job_id: str, watchers: list[Callable[[str], None]] | None = None) -> None:
        for watcher in self._watchers if watchers is None else watchers:
            try:
                watcher(job_id)
            except Exception:  # what people see is redrawn at the next batch; the job goes on
                log.exception("job %s: a watcher of the worker failed", job_id)

    def start(self) -> list[Periodic]:
        """Start working on jobs; the periodic tasks to stop on shutdown (the worker first)."""
        self.claimer = uuid.uuid4().hex
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="job")
        log.info("job worker %s started", self.claimer)
        return [
            _Worker(self).start(),
            Periodic(HEARTBEAT_SECONDS, self.heartbeat, "job-heartbeat").start(),
        ]

    def stop(self) -> None:
        """Shutting down: no target is started any more; those being worked on finish."""
        self._stopping.set()

    def close(self) -> None:
        """Once the worker's thread ended: its pool's threads end too."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def heartbeat(self) -> None:
        """Refresh the claims on every target this runner is working on."""
        with self._lock:
            held = set(self._held)
        self._store.heartbeat(self.claimer, held)

    def work(self) -> None:
        """Rounds until one finds nothing to do (or a stop)."""
        while not self._stopping.is_set() and self.round():
            pass

    def round(self) -> bool:
        """For each running job: reconcile its stranded targets, then claim and apply a batch,
        or finish it if nothing is left. Whether there was anything to do."""
        busy = False
        running = self._store.in_state("running")
        ids = {job.id for job in running}
        with self._lock:
            self._server_errors = {k: v for k, v in self._server_errors.items() if k in ids}
        for job in running:
            if self._stopping.is_set():
                break
            try:
                change = read_change(job, self._sealer)
            except Unreadable as exc:
                if self._store.transition(job.id, "running", "fail", reason=f"Not applied further: {exc}."):
                    log.error("job %s failed: %s", job.id, exc)
                    self._tell(job.id)
                continue
            at = _Round(job, change)
            busy |= self._reconcile(at)
            if at.halted.is_set():
                continue
            claimed = self._store.claim(job.id, self.claimer, self._workers)
            if claimed:
                self._run(at, claimed, reconciling=False)
                busy = True
            elif self._store.transition(job.id, "running", "finish"):
                log.info("job %s done: %s", job.id, self._store.progress(job.id))
                self._tell(job.id)
        return self._settle_ended() or busy

    def _reconcile(self, at: _Round) -> bool:
        """Take over the targets of `at`'s job whose claimer is dead (or that this runner let go)."""
        won = []
        for stranded in self._store.stranded(claimed_before=utcnow() - STRANDED_AFTER, job_id=at.job.id):
            if self._stopping.is_set():
                break
            assert stranded.claimed_by is not None
            if self._store.reclaim(stranded.id, stranded.claimed_by, self.claimer):
                log.info("job %s: reconciling target %s of %s", at.job.id, stranded.id, stranded.claimed_by)
                won.append(_again(stranded, self.claimer))
        if won:
            self._run(at, won, reconciling=True)
        return bool(won)

    def _run(self, at: _Round, targets: list[JobTarget], *, reconciling: bool) -> None:
        with self._lock:
            self._held.update(t.id for t in targets)
        assert self._pool is not None, "the runner was not started"
        list(self._pool.map(lambda t: self._one(at, t, reconciling), targets))
        self._tell(at.job.id)

    def _one(self, at: _Round, t: JobTarget, reconciling: bool) -> None:
        try:
            if not self._stopping.is_set() and not at.halted.is_set():
                self._apply(at, t, reconciling)
        except Exception:  # left in flight: a reconcile reads it back later, up to MAX_ATTEMPTS
            log.exception("job %s: target %s could not be worked on; it will be read back", at.job.id, t.id)
            if t.attempts >= MAX_ATTEMPTS:
                self._give_up(at, t)
        finally:
            with self._lock:
                self._held.discard(t.id)

    def _apply(self, at: _Round, t: JobTarget, reconciling: bool) -> None:
        try:
            live = self._agora.get_config(t.target, wait_limit=None)
        except AgoraError as exc:
            return self._trouble(at, t, exc)
        self._answered(at)
        try:
            patch = patch_for(live, at.change)
        except ValueError as exc:
            return self._record(at.job, t, "fail", f"Not sent: {exc}.")
        seen = as_seen(t, live, self._sealer.digest_key)
        if is_empty(patch) and (reconciling or seen):  # its PATCH landed before its claimer stopped
            self._watch.applied(t.target, live)
            self._configured(at, t)
            return self._record(at.job, t, "confirm", "Applied (found in effect by reading it back).")
        if not seen:
            return self._record(at.job, t, "find_stale", "Changed since the plan read it, so left as it is.")
        after = expected_after(live, patch)
        if at.halted.is_set() or self._stopping.is_set():
            return  # left in flight; reconciled by reading it back
        self._watch.expect(t.target, after)
        try:
            self._patch_and_read_back(at, t, live, patch, after)
        finally:
            self._watch.unexpect(t.target, after)

    def _patch_and_read_back(
        self, at: _Round, t: JobTarget, live: RecordingConfig, patch: RecordingConfig, after: RecordingConfig
    ) -> None:
        """bot/applying.py's PATCH and read-back, but sent once: an answer lost leaves it to the read-back."""
        unanswered: AgoraError | None = None
        try:
            with self._switches.configuring(t.target, at.job.requester) as switch:
                try:
                    self._agora.set_config(t.target, patch, wait_limit=None, resend=False)
                except AgoraError as exc:
                    if not may_have_landed(exc):
                        switch.refused()
                        return self._trouble(at, t, exc)
                    self._server_error(at, exc)
                    unanswered = exc
                else:
                    switch.landed()
                try:
                    confirmed = self._agora.get_config(t.target, wait_limit=None)
                except AgoraError as exc:
                    return self._trouble(at, t, exc)
                self._answered(at)
                if matches(after, confirmed):
                    switch.landed()
                    self._watch.applied(t.target, confirmed)
                    return self._record(at.job, t, "confirm", "Applied and confirmed by reading it back.")
        except SwitchBusy:
            return  # left in flight; reconciled by reading it back
        if unanswered is not None and matches(live, confirmed):
            return self._let_go(at, t, unanswered)  # it did not land: sent again by a reconcile
        self._record(at.job, t, "fail", "Not in effect: the configuration read back differs from the change.")

    def _trouble(self, at: _Round, t: JobTarget, exc: AgoraError) -> None:
        """An Agora call of `t` failed: a refusal of the target fails it; one of recbot pauses the
        job; no proper answer leaves it for a reconcile, up to MAX_ATTEMPTS."""
        if refuses_credentials(exc):
            self._pause(at, f"Agora refused recbot's credentials ({exc.status or 'not sent'}); paused.")
        elif isinstance(exc, AgoraRedirected):  # every target would be sent the same way
            self._pause(
                at, f"Agora's API answered {exc.status}, a redirect recbot does not follow; check AGORA_API_URL."
            )
        elif isinstance(exc, AgoraBadRequest | AgoraNotFound) or (exc.status or 0) in range(400, 429):
            self._record(at.job, t, "fail", f"Refused by Agora: {exc.user_message()}")
        else:
            if may_have_landed(exc):
                self._server_error(at, exc)
            self._let_go(at, t, exc)

    def _let_go(self, at: _Round, t: JobTarget, exc: AgoraError) -> None:
        if t.attempts >= MAX_ATTEMPTS:
            message = f"Given up after {t.attempts} attempts: {_why(exc)}. Check it with `/recording get`."
            self._record(at.job, t, "fail", message)
        else:
            log.info("job %s: target %s left for a reconcile (%s)", at.job.id, t.id, type(exc).__name__)

    def _give_up(self, at: _Round, t: JobTarget) -> None:
        try:
            self._record(at.job, t, "fail", f"Given up after {t.attempts} attempts: recbot could not work on it.")
        except Exception:  # the database too: the next reconcile tries again
            log.exception("job %s: could not record that target %s was given up", at.job.id, t.id)

    def _server_error(self, at: _Round, exc: AgoraError) -> None:
        with self._lock:
            count = self._server_errors[at.job.id] = self._server_errors.get(at.job.id, 0) + 1
        if count >= SERVER_ERRORS_TO_PAUSE:
            self._pause(at, f"Agora answered {count} times in a row without a proper answer ({_why(exc)}).")

    def _answered(self, at: _Round) -> None:
        """Agora answered properly: a run of server errors is over."""
        with self._lock:
            self._server_errors.pop(at.job.id, None)

    def _pause(self, at: _Round, reason: str) -> None:
        at.halted.set()
        with self._lock:
            self._server_errors.pop(at.job.id, None)
        expires_at = utcnow() + self._paused_for
        if self._store.transition(at.job.id, "running", "pause", reason=reason, expires_at=expires_at):
            log.warning("job %s paused: %s", at.job.id, reason)
            self._tell(at.job.id)
            self._tell(at.job.id, self._pause_watchers)

    def _record(self, job: JobRow, t: JobTarget, event: str, detail: str) -> None:
        if not self._store.record(t.id, self.claimer, event, detail):
            log.warning("job %s: target %s was taken over before its outcome (%s) was recorded", job.id, t.id, event)
            return
        outcome = next_target_state(IN_FLIGHT, event)
        self._metrics.bulk_targets.labels(outcome=outcome).inc()  # only the recorder: once per target
        try:  # only the recorder audits it: once per target, whichever instance it was
            changes = asked_changes(job.change)
            self._audit.append(outcome, job.requester, t.target, job_id=job.id, changes=changes, note=detail)
        except Exception:  # the outcome itself is recorded; the job goes on
            log.exception("job %s: could not audit the outcome of target %s", job.id, t.id)

    def _settle_ended(self) -> bool:
        """Targets a dead claimer left in flight in a job that has ended since (cancelled, failed)
        are read back, never sent: as the job asked -> applied; as the plan saw them -> failed, not
        sent; else stale. Whether there was any."""
        now = time.monotonic()
        if now - self._settled_at < STRANDED_AFTER.total_seconds() / 3:
            return False  # a scan of every target in flight: a few times per STRANDED_AFTER is enough
        self._settled_at = now
        jobs: dict[str, JobRow | None] = {}
        settled = set()
        for stranded in self._store.stranded(claimed_before=utcnow() - STRANDED_AFTER):
            if stranded.job_id not in jobs:
                jobs[stranded.job_id] = self._store.get(stranded.job_id)
            job = jobs[stranded.job_id]
            if self._stopping.is_set() or job is None or job.state not in ENDED_JOB_STATES:
                continue
            assert stranded.claimed_by is not None
            if self._store.reclaim(stranded.id, stranded.claimed_by, self.claimer):
                self._settle(job, _again(stranded, self.claimer))
                settled.add(job.id)
        for job_id in settled:
            self._tell(job_id)
        return bool(settled)

    def _settle(self, job: JobRow, t: JobTarget) -> None:
        with self._lock:
            self._held.add(t.id)
        try:
            live = self._agora.get_config(t.target, wait_limit=None)
        except AgoraError as exc:  # read again after STRANDED_AFTER, up to MAX_ATTEMPTS
            if t.attempts >= MAX_ATTEMPTS:
                self._record(
                    job,
                    t,
                    "fail",
                    f"Given up after {t.attempts} attempts: {_why(exc)}. Check it with `/recording get`.",
                )
            return
        finally:
            with self._lock:
                self._held.discard(t.id)
        if as_asked(live, job.change):
            self._record(job, t, "confirm", "Applied (found in effect by reading it back after the job ended).")
        elif as_seen(t, live, self._sealer.digest_key):
            self._record(job, t, "fail", f"Not sent: the job ended ({job.state}) before it was.")
        else:
            self._record(job, t, "find_stale", "Changed since the plan read it, so left as it is.")

    def _configured(self, at: _Round, t: JobTarget) -> None:
        """A configuration found in effect switched recording on (as bot/approvals.py records it)."""
        try:
            with self._switches.configuring(t.target, at.job.requester) as change:
                change.landed()
        except SwitchBusy:
            log.warning("job %s: could not record that target %s switched recording on", at.job.id, t.id)


def _why(exc: AgoraError) -> str:
    return no_answer(exc) if isinstance(exc, AgoraUnavailable) else exc.user_message().rstrip(".")


def _again(t: JobTarget, claimer: str) -> JobTarget:
    """A target as a reclaim by `claimer` left it."""
    return replace(t, attempts=t.attempts + 1, claimed_by=claimer, claimed_at=utcnow())


class _Worker(Periodic):
    """The runner's rounds, every IDLE_SECONDS: a stop first tells the runner, so a round under
    way starts no more targets, and once it ended the runner's pool is shut down."""

    def __init__(self, runner: JobRunner) -> None:
        super().__init__(IDLE_SECONDS, runner.work, "job-worker")
        self._runner = runner

    def stop(self, timeout: float = 10.0) -> None:
        self._runner.stop()
        super().stop(timeout)
        self._runner.close()
