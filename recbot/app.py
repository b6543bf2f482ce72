"""The composition root: the Bolt app with every listener (handlers/) on the services
(bot/), and the background work of a running recbot: the sweep and the drift watch,
whose results the listeners' notifier announces, and the worker of fleet-wide jobs,
whose progress the job notifier shows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Histogram
from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient

from bot.agora import sent_a_change
from bot.background import Background, Periodic
from bot.drift import AlertMove
from bot.logs import ContextExecutor, failure_frames, new_request_id, request_id
from bot.respond import FirstAnswer, PooledRespond
from bot.server import take_arrival
from bot.services import Services, metered_copy, slack_client
from bot.store.values import JobRow, RequestRow, utcnow
from handlers import register
from handlers.bulk import announce
from handlers.commands import FIRST_ANSWER, verb_label
from handlers.job_notify import JobNotifier
from handlers.notify import Notifier, job_control

log = logging.getLogger(__name__)

SWEEP_SECONDS = 30.0
# Longer than one apply can take (4 attempts of connect + read timeout, plus backoff), with room to spare.
ORPHAN_AGE = timedelta(minutes=5)
# Listeners ack from this pool, then wait on Agora in it: a slow Agora must not
# leave no thread free to ack the next command or open the next modal.
LISTENER_THREADS = 64


class KeptAck(Ack):
    """Bolt's ack of one request, which stays given: when a listener fails after acking, Bolt sets
    the ack's response back to None, and a request whose answer was not sent yet would then be
    answered 404 "unhandled request" (and logged as never acked) instead of with its ack.
    With `timed`, the time from the request's arrival to the ack given is observed, once."""

    _given: BoltResponse | None = None

    def __init__(self, timed: tuple[Histogram, float] | None = None) -> None:
        self._timed = timed  # recbot_ack_seconds of the request's kind, and its arrival
        super().__init__()

    @property  # type: ignore[override]
    def response(self) -> BoltResponse | None:
        return self._given

    @response.setter
    def response(self, value: BoltResponse | None) -> None:
        if value is not None:
            if self._given is None and self._timed is not None:
                seconds, arrived = self._timed
                seconds.observe(time.monotonic() - arrived)
            self._given = value


# A payload's type -> the kind recbot_ack_seconds counts it as (a command has no type).
KINDS = {
    "block_actions": "action",
    "interactive_message": "action",
    "view_submission": "view",
    "view_closed": "view",
    "block_suggestion": "options",
    "event_callback": "event",
}


# What recbot acks empty, whatever it then does: acked here, on the thread that received it, so
# the ack never waits for a listener thread (Bolt's runner polls for a listener's ack every 10 ms).
ACKED_ON_ARRIVAL = frozenset({"command", "action"})


def request_kind(body: dict[str, Any]) -> str | None:
    """command, action, view, options or event; None for anything else (not timed)."""
    return "command" if "command" in body else KINDS.get(str(body.get("type")))


class _TokenInTheClient(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and warns at every start that the
    client given wins over it; recbot's client carries that very token, so the warning misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_BOLT_LOG = logging.getLogger("slack_bolt.App")


def create_app(services: Services) -> App:
    """A Bolt app with every listener registered. Listeners run after the ack."""
    settings = services.settings
    if not any(isinstance(f, _TokenInTheClient) for f in _BOLT_LOG.filters):
        _BOLT_LOG.addFilter(_TokenInTheClient())
    app = App(
        client=slack_client(settings, services.metrics),
        signing_secret=settings.SLACK_SIGNING_SECRET.get_secret_value(),
        process_before_response=False,
        # A start checks the bot token itself first (bot/server.py), before anything is created.
        token_verification_enabled=False,
        # The HTTP gate (bot/inbound.py) verifies every signature before Bolt sees the request;
        # Socket Mode requests arrive over the app-token-authenticated WebSocket.
        request_verification_enabled=False,
        listener_executor=ContextExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener"),
    )

    app.use(TagRequest(services))
    register(app, services)  # with the error handler, handlers/errors.py
    return app


class TagRequest(Middleware):
    """The first middleware of every request: its id and arrival, a Slack client that counts its
    calls, the ack kept given (and acked here when the kind is acked on arrival), and answers on
    response_url through recbot's pool. A Middleware, not a function: Bolt calls a function
    middleware with arguments built for it, every kind of payload parsed, on every request."""

    def __init__(self, services: Services) -> None:
        self._answers, self._metrics = services.responses, services.metrics

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        context, metrics = req.context, self._metrics
        request_id.set(new_request_id())
        sent_a_change.set(False)
        arrived = take_arrival()  # noted by the HTTP gate or the Socket Mode handler
        kind = request_kind(req.body)
        context["client"] = metered_copy(context.client, metrics)  # Bolt's own per-request client counts nothing
        if context.ack.response is None:  # made here, not given (BoltContext.ack makes one when asked)
            context["ack"] = KeptAck((metrics.ack_seconds.labels(kind=kind), arrived) if kind else None)
        first = None
        if kind == "command":
            first = FirstAnswer(metrics.answer_seconds.labels(verb=verb_label(req.body.get("text") or "")), arrived)
            context[FIRST_ANSWER] = first
        if kind in ACKED_ON_ARRIVAL:
            context.ack()
        if context.response_url:
            context["respond"] = PooledRespond(response_url=context.response_url, pool=self._answers, first=first)
        next()
        return None  # as a function middleware returns: Bolt goes on with the listeners


def orphan_age_at_start(services: Services) -> timedelta:
    """How long an approved or applying request must sit untouched before a
    starting process takes it over: at once on the embedded SQLite (one
    process, so nobody else is applying it); later on a shared database,
    where another process may be applying it right now."""
    return timedelta(0) if services.store.engine.dialect.name == "sqlite" else ORPHAN_AGE


def sweep(services: Services, notifier: Notifier, orphan_age: timedelta = ORPHAN_AGE) -> None:
    """Recover orphaned requests and expire due ones, announcing what this call
    ended; then announce every other end not announced yet (its announcement
    failed, or its announcer stopped `orphan_age` ago), and post the cards of
    pending requests that have none. Each step and each row is guarded, so
    neither a failure of another nor a bad row stops it; each announcement is
    claimed, so it is made once across every process."""
    tried: set[str] = set()  # one try per sweep: an announcement that just failed waits for the next
    steps: list[tuple[str, Callable[[], list[RequestRow]]]] = [
        ("recovery", lambda: services.approvals.recover(orphan_age)),
        ("expiry", services.approvals.expire_due),
        ("announcement", services.store.announcements.unannounced_ends),
    ]
    stale_claims_before = utcnow() - orphan_age
    for name, step in steps:
        try:
            rows = step()
        except Exception:
            log.exception("the %s sweep failed; it runs again at the next sweep", name)
            continue
        for row in rows:
            if row.id in tried:
                continue
            tried.add(row.id)
            try:
                notifier.request_ended(row, stale_claims_before)
            except Exception:
                log.exception("could not announce the end of request %s; the next sweep tries again", row.id)
    repost_missing_cards(services, notifier, stale_claims_before)


def repost_missing_cards(services: Services, notifier: Notifier, stale_claims_before: datetime) -> None:
    """Post the cards of every pending request that has none: each post of them failed (Slack
    refused, or was down), or their poster stopped before `stale_claims_before`. Each request is
    guarded and claimed, so one failure does not stop the rest and each is posted once."""
    try:
        rows = services.store.announcements.cardless_requests()
    except Exception as exc:  # noqa: BLE001 - the next sweep tries again; where it failed is logged
        log.error("could not list the requests without a card: %s", failure_frames(exc))
        return
    for row in rows:
        try:
            notifier.repost_cards(row, stale_claims_before)
        except Exception as exc:  # noqa: BLE001 - as above, for this request alone
            log.error(
                "could not post the cards of request %s; the next sweep tries again: %s", row.id, failure_frames(exc)
            )


def sweep_jobs(services: Services, notifier: JobNotifier, orphan_age: timedelta = ORPHAN_AGE) -> None:
    """Expire the jobs left paused past their expiry, announce every job end not announced yet
    (its announcement failed, or its announcer stopped `orphan_age` ago), and post the progress
    message of running jobs that have none. Each step and each job is guarded; each
    announcement is claimed, so it is made once across every process."""
    stale_claims_before = utcnow() - orphan_age
    steps: list[tuple[str, Callable[[], list[str]]]] = [
        ("job expiry", lambda: [job.id for job in job_control(services).expire_paused()]),
        ("job announcement", services.store.job_progress.unannounced_ends),
        ("progress message", lambda: [job.id for job in services.store.jobs.in_state("running", "paused")]),
    ]
    for name, step in steps:
        try:
            job_ids = step()
        except Exception:
            log.exception("the %s sweep failed; it runs again at the next sweep", name)
            continue
        for job_id in job_ids:
            try:
                if name == "job announcement":
                    notifier.announce_end(job_id, stale_claims_before)
                else:
                    notifier.show(job_id, forced=name == "job expiry")
            except Exception:
                log.exception("could not show job %s; the next sweep tries again", job_id)


def sweep_asked_jobs(services: Services, client: WebClient) -> None:
    """Expire pending fleet-wide jobs past their expiry, start approved ones left unstarted and
    fail ones left planning (their process stopped first), announcing each (cards, requester).
    Each step and each job is guarded; each move is a compare-and-set, so it is made and
    announced once."""
    steps: list[tuple[str, Callable[[], list[JobRow]]]] = [
        ("job expiry", services.bulk.expire_due),
        ("job start", services.bulk.start_approved),
        ("stranded plan", services.bulk.fail_stranded_plans),
    ]
    for name, step in steps:
        try:
            moved = step()
        except Exception:
            log.exception("the %s sweep failed; it runs again at the next sweep", name)
            continue
        for job in moved:
            try:
                announce(client, services, job)
            except Exception:
                log.exception("could not announce job %s; its cards show it when next redrawn", job.id)


def watch_pass(services: Services, notifier: Notifier) -> None:
    """One drift watch pass (if no other process runs one), announcing what it did as it ends."""

    def announce(move: AlertMove) -> None:
        if move.kind == "opened":
            notifier.post_alert(move.alert)
        else:
            notifier.refresh_alert(move.alert.id)

    services.drift.run(announce)


def start_background(app: App, services: Services, sweep_seconds: float = SWEEP_SECONDS) -> Background:
    """Finish what a stopped process left open, then sweep expiries and orphans, work on
    fleet-wide jobs (every instance does), and watch for changes made outside recbot unless
    RECBOT_DRIFT_INTERVAL_SECONDS is 0."""
    notifier, job_notifier = Notifier(app.client, services), JobNotifier(app.client, services)
    sweep(services, notifier, orphan_age_at_start(services))
    sweep_jobs(services, job_notifier, orphan_age_at_start(services))
    sweep_asked_jobs(services, app.client)

    def sweeps() -> None:
        sweep(services, notifier)
        sweep_jobs(services, job_notifier)
        sweep_asked_jobs(services, app.client)

    tasks = [Periodic(sweep_seconds, sweeps, "expiry-sweep").start(), job_notifier.start()]
    services.jobs.watch(job_notifier.job_moved)
    services.jobs.watch_pauses(job_notifier.worker_paused)
    tasks += services.jobs.start()
    interval = services.settings.RECBOT_DRIFT_INTERVAL_SECONDS
    if interval > 0:
        tasks.append(Periodic(interval, lambda: watch_pass(services, notifier), "drift-watch").start())
    return Background(tasks)
