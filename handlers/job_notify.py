"""What people see of a fleet-wide job while it runs and once it ended: its one progress message
(posted once across instances, edited at most once per EDIT_GAP across instances: a batch's edit
is skipped within it, a move or the end waits for its turn), its
end shown on it and the outcome CSV sent to the requester once, and the requester told when
the worker paused it. The worker's watcher only notes a job id (no I/O on the worker's
thread); the notes are drawn on a thread of their own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk import WebClient

from bot.background import Periodic
from bot.job_control import JobControl
from bot.job_lifecycle import ENDED_JOB_STATES, TARGET_START, next_target_state
from bot.job_report import outcome_csv
from bot.jobs import STRANDED_AFTER
from bot.services import Services
from bot.store.values import CardRef, JobRow, utcnow
from handlers.blocks import job_progress
from handlers.bulk import refresh_job_cards
from handlers.notify import SLACK_FAILURES, Notifier, _lasting, job_control, why_failed

log = logging.getLogger(__name__)

IN_FLIGHT = next_target_state(TARGET_START, "claim")
# The worker's reports wake the drawing thread; draws are at least DRAIN_SECONDS apart, so that
# a burst of batches is drawn once. Idle, it only wakes every IDLE_DRAIN_SECONDS.
DRAIN_SECONDS = 0.2
IDLE_DRAIN_SECONDS = 60.0
# A claim on posting a progress message older than this has a poster that stopped: taken over.
STALE_POST_CLAIM = timedelta(minutes=1)
# Each pass draws the job as it is then; another pass only if it moved (paused, ended) meanwhile.
MAX_PASSES = 5


class JobNotifier:
    """Draws jobs for people; `job_moved` and `worker_paused` are the worker's watchers."""

    def __init__(
        self,
        client: WebClient,
        services: Services,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._services = services
        self._clock = clock
        self._sleep = sleep
        self._control: JobControl = job_control(services, clock)
        self._lock = threading.Lock()
        self._moved: set[str] = set()
        self._paused: set[str] = set()
        self._drawer: Periodic | None = None

    def job_moved(self, job_id: str) -> None:
        """The worker's word after a batch or a move: drawn soon, on the notifier's thread."""
        with self._lock:
            self._moved.add(job_id)
        self._wake()

    def worker_paused(self, job_id: str) -> None:
        """The worker paused `job_id` itself: its requester is told why, soon."""
        with self._lock:
            self._paused.add(job_id)
        self._wake()

    def _wake(self) -> None:
        if self._drawer is not None:
            self._drawer.wake()

    def start(self) -> Periodic:
        """Draw what the worker reports as it reports it, on a thread of its own; stopped on shutdown."""
        self._drawer = Periodic(IDLE_DRAIN_SECONDS, self.drain, "job-notify", gap=DRAIN_SECONDS).start()
        return self._drawer

    def drain(self) -> None:
        """Tell the requesters of jobs the worker paused, then draw every job it reported."""
        with self._lock:
            paused, moved = self._paused, self._moved
            self._paused, self._moved = set(), set()
        for job_id in sorted(paused):
            self._guarded(job_id, self._tell_paused)
        for job_id in sorted(moved):
            self._guarded(job_id, self.show)

    def _guarded(self, job_id: str, step: Callable[[str], object]) -> None:
        try:
            step(job_id)
        except Exception:  # the next batch, move or sweep draws it again
            log.exception("could not show job %s in Slack", job_id)

    def show(self, job_id: str, *, forced: bool = False) -> None:
        """Bring what people see of `job_id` up to date: its progress message posted once it runs,
        or edited (if no edit was made within EDIT_GAP; `forced`: a move people must see, drawn as
        soon as EDIT_GAP allows), and its end announced once."""
        job = self._services.store.jobs.get(job_id)
        if job is None:
            return
        if job.progress_ref is None and (job.state in ("running", "paused") or job.started_at is not None):
            self._post(job)  # drawn as it is now
        if self._ended(job.id) and self.announce_end(job.id):
            return  # the end, drawn on it
        if job.progress_ref is not None:
            self._write(job.id, forced=forced)

    def _ended(self, job_id: str) -> bool:
        job = self._services.store.jobs.get(job_id)
        return job is not None and job.state in ENDED_JOB_STATES

    def _post(self, job: JobRow) -> None:
        """Post the progress message, once across instances (claimed first)."""
        progress = self._services.store.job_progress
        token = progress.claim_post(job.id, stale_before=utcnow() - STALE_POST_CLAIM)  # claims carry real time
        if token is None:
            return  # posted, or being posted, by another call
        channel = self._services.settings.RECBOT_APPROVAL_CHANNEL or job.requester
        try:
            view = self._control.view(job)
            posted = self._client.chat_postMessage(
                channel=channel,
                text=job_progress.progress_text(view),
                blocks=job_progress.progress_blocks(view, self._services.sealer),
            )
        except SLACK_FAILURES as exc:
            progress.release_post(job.id, token)
            log.error("could not post the progress message of job %s: %s", job.id, why_failed(exc))
            return
        progress.posted(job.id, token, CardRef(posted["channel"], posted["ts"]), self._clock())
        self._write(job.id, shown=job.version, forced=True)  # it may have moved while it was posted

    def _write(self, job_id: str, shown: int | None = None, *, forced: bool = False) -> bool:
        """Edit the progress message from the job as it is at write time, and again if it moved
        meanwhile, so the last edit Slack keeps shows its latest state; each edit in its turn
        (`forced`, and every pass after the first: waiting for it; else skipped if it is not now).
        Whether it was written, or needed no writing."""
        for number in range(MAX_PASSES):
            job = self._services.store.jobs.get(job_id)
            if job is None or job.progress_ref is None or job.version == shown:
                return True
            if not self._turn(job_id, waiting=forced or number > 0):
                return True  # a batch's edit within EDIT_GAP of the last: the next one draws it
            job = self._services.store.jobs.get(job_id) or job  # as it is now, after any wait
            ref, view = job.progress_ref, self._control.view(job)
            assert ref is not None  # a progress message, once posted, stays
            try:
                self._client.chat_update(
                    channel=ref.channel,
                    ts=ref.ts,
                    text=job_progress.progress_text(view),
                    blocks=job_progress.progress_blocks(view, self._services.sealer),
                )
            except SLACK_FAILURES as exc:
                log.error("could not update the progress message of job %s: %s", job_id, why_failed(exc))
                return _lasting(exc)
            shown = job.version
        log.warning("job %s kept moving; its progress message was left at version %s", job_id, shown)
        return True

    def _turn(self, job_id: str, *, waiting: bool) -> bool:
        """Whether this caller may edit the progress message now, one edit per EDIT_GAP across
        instances: `waiting`, it reserves the next turn and waits for it; else only if it is now."""
        progress = self._services.store.job_progress
        if not waiting:
            return progress.claim_edit(job_id, self._clock())
        now = self._clock()
        turn = progress.reserve_edit(job_id, now)
        if turn is None:
            return False
        if turn > now:
            self._sleep((turn - now).total_seconds())
        return True

    def announce_end(self, job_id: str, stale_claims_before: datetime | None = None) -> bool:
        """Once across instances (claimed first; with `stale_claims_before` also from a holder that
        stopped), once no target sent before the end awaits its outcome: the end on the progress
        message, the outcome CSV in the requester's DM, and the homes of whom it concerns.
        Released if Slack failed, for the sweep. Whether this call made it."""
        if self._still_in_flight(job_id):
            return False  # its worker records them, then tells: announced with every outcome known
        progress = self._services.store.job_progress
        token = progress.claim_end(job_id, stale_before=stale_claims_before)
        if token is None:
            return False  # announced, or being announced, by another call or instance
        announced = False
        try:
            announced = self._write(job_id, forced=True) and self._send_outcome(job_id)
            refresh_job_cards(self._client, self._services, job_id)  # the approval cards show the end too
        finally:
            if announced:
                progress.finish_end(job_id, token)
            else:
                progress.release_end(job_id, token)
                log.warning("the end of job %s was not announced in full; the next sweep tries again", job_id)
        self._refresh_homes(job_id)
        return announced

    def _still_in_flight(self, job_id: str) -> bool:
        """Whether targets sent before the job ended still await their outcome from a live worker
        (a claim older than STRANDED_AFTER has a dead one: the CSV says "in flight" for those)."""
        fresh_after = utcnow() - STRANDED_AFTER
        in_flight = self._services.store.jobs.targets(job_id, IN_FLIGHT)
        return any(t.claimed_at is not None and t.claimed_at > fresh_after for t in in_flight)

    def _send_outcome(self, job_id: str) -> bool:
        """The end and every target's outcome, as a CSV in the requester's DM. Whether it was sent
        (or never can be)."""
        job = self._services.store.jobs.get(job_id)
        if job is None:
            return True
        view = self._control.view(job)
        try:
            dm = self._client.conversations_open(users=job.requester)["channel"]["id"]
            self._client.files_upload_v2(
                channel=dm,
                content=outcome_csv(self._services.store.jobs.targets(job.id)),
                filename=f"job-{job.id}-outcome.csv",
                title=f"Outcome of fleet-wide job {job.id}",
                initial_comment=job_progress.end_notice(view),
            )
        except SLACK_FAILURES as exc:
            log.error("could not send the outcome of job %s to its requester: %s", job.id, why_failed(exc))
            return _lasting(exc)
        return True

    def _tell_paused(self, job_id: str) -> None:
        job = self._services.store.jobs.get(job_id)
        if job is None or job.state != "paused":
            return  # resumed or ended since: the progress message shows it
        self.show(job_id, forced=True)
        refresh_job_cards(self._client, self._services, job_id)  # its approval cards say paused too
        try:
            self._client.chat_postMessage(channel=job.requester, text=job_progress.paused_notice(job))
        except SLACK_FAILURES as exc:
            log.error("could not tell the requester that job %s paused: %s", job.id, why_failed(exc))

    def _refresh_homes(self, job_id: str) -> None:
        """The homes of the requester and approvers who opened theirs: their jobs list changed."""
        job = self._services.store.jobs.get(job_id)
        if job is None:
            return
        notifier = Notifier(self._client, self._services)
        concerned = {job.requester, *job.approvers, *([job.decided_by] if job.decided_by else [])}
        try:
            for user in self._services.store.homes.all():
                if user in concerned:
                    notifier.publish_home(user)
        except Exception:  # homes are drawn again when opened; the end itself was announced
            log.exception("could not refresh the homes after job %s ended", job_id)
