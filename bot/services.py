"""What the Slack listeners work with: the settings and the domain services, and how
they are built from the settings, on one store and one Agora client."""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse
from sqlalchemy.exc import SQLAlchemyError

from bot.access import Audience
from bot.agora import AgoraClient
from bot.alarms import Alarms
from bot.approvals import ApprovalService
from bot.bulk_jobs import BulkJobs
from bot.changes import ChangeService
from bot.drift import DriftWatch
from bot.fleet import Fleet
from bot.job_lifecycle import JOB_STATES
from bot.jobs import JobRunner
from bot.lifecycle import OPEN_STATES
from bot.metrics import Metrics
from bot.models import RecordingConfig, Target
from bot.probe import Prober
from bot.ratelimit import Limiter, TokenBucket
from bot.respond import ResponsePool
from bot.seal import Sealer, resolve_seal_key
from bot.settings import Settings, is_sqlite
from bot.shared_budget import SharedBudget
from bot.slack_web import NoRedirectWebClient
from bot.store import DatabaseFileGone, Store, count_sealed, open_store
from bot.store.engine import make_engine
from bot.store.gauges import DatabaseReadings, read_gauges
from bot.switch import SwitchBook
from bot.switching import SwitchService


@dataclass
class Services:
    settings: Settings
    agora: AgoraClient
    sealer: Sealer
    store: Store
    changes: ChangeService
    approvals: ApprovalService
    approvers: Audience
    requesters: Audience
    prober: Prober
    fleet: Fleet
    drift: DriftWatch
    switches: SwitchService
    jobs: JobRunner
    bulk: BulkJobs
    metrics: Metrics
    # Set once the process has begun to stop: /readyz then says so, and a load balancer drains it.
    stopping: threading.Event = field(default_factory=threading.Event)
    # What a person waiting on something slow is told meanwhile (handlers/commands.py's `get`).
    alarms: Alarms = field(default_factory=Alarms)
    # The kept connections every answer on a response_url goes through (recbot/app.py).
    responses: ResponsePool = field(default_factory=ResponsePool)

    def read_config(self, target: Target) -> RecordingConfig:
        """The live configuration (AgoraError if unreadable); a target read for the first time is remembered."""
        config = self.agora.get_config(target)
        self.drift.saw(target, config)
        return config

    def channel_allowed(self, channel_id: str) -> bool:
        allowed = self.settings.RECBOT_ALLOWED_CHANNELS
        return not allowed or channel_id in allowed

    def health(self) -> dict[str, Any]:
        """What `/healthz` reports: whether the database answers."""
        try:
            self.store.ping()
        except SQLAlchemyError:
            return {"ok": False, "database": "unreachable"}
        except DatabaseFileGone:
            return {"ok": False, "database": "replaced"}  # the SQLite file under recbot: restart it
        return {"ok": True, "database": "ok"}

    def readiness(self, socket_connected: Callable[[], bool] | None = None) -> dict[str, Any]:
        """What `/readyz` reports: ready when the database answers, the process is not stopping
        and, in Socket Mode (`socket_connected` given), the WebSocket is connected."""
        report = self.health()
        if socket_connected is not None:
            connected = socket_connected()
            report["socket_mode"] = "connected" if connected else "disconnected"
            report["ok"] = report["ok"] and connected
        if self.stopping.is_set():
            report["stopping"] = True
            report["ok"] = False
        return report

    def close(self) -> None:
        self.alarms.close()
        self.responses.close()
        self.agora.close()
        self.store.close()


# The Web API methods recbot calls, the label values of recbot_slack_api_calls_total; any other is `other`.
SLACK_METHODS = frozenset(
    {
        "apps.connections.open",
        "auth.test",
        "chat.postMessage",
        "chat.update",
        "conversations.info",
        "conversations.open",
        "files.completeUploadExternal",
        "files.getUploadURLExternal",
        "usergroups.users.list",
        "views.open",
        "views.publish",
        "views.update",
    }
)


class CountingRateLimitHandler(RateLimitErrorRetryHandler):
    """slack_sdk's retry of 429s, counting every 429 answer, the retried ones too."""

    def __init__(self, metrics: Metrics, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._rate_limited = metrics.slack_rate_limited

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self._rate_limited.inc()
        return super().can_retry(state=state, request=request, response=response, error=error)


class MeteredWebClient(NoRedirectWebClient):
    """A WebClient counting each API call once, retries included, by method and how it ended."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._calls = metrics.slack_calls

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        method = api_method if api_method in SLACK_METHODS else "other"
        try:
            answer = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            limited = exc.response.status_code == 429
            self._calls.labels(method=method, outcome="ratelimited" if limited else "error").inc()
            raise
        except Exception:
            self._calls.labels(method=method, outcome="error").inc()  # no answer: the network, a timeout
            raise
        self._calls.labels(method=method, outcome="ok").inc()
        return answer


def metered_copy(client: WebClient, metrics: Metrics) -> MeteredWebClient:
    """`client` as one that counts its calls: Bolt gives each request a WebClient of its own, made
    as this one is, which would not count."""
    return MeteredWebClient(
        metrics,
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=client.headers,
        team_id=client.default_params.get("team_id"),
        logger=client.logger,
        retry_handlers=client.retry_handlers,
    )


# What slack_sdk reads for the proxy of its Web API calls: the first of these that is set, for
# http:// and https:// alike (ALL_PROXY does not apply; urllib honours NO_PROXY).
SLACK_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def slack_proxy_variable(api_url: str) -> str | None:
    """The variable whose proxy slack_sdk sends calls to `api_url` through, as slack_sdk and urllib
    pick it; None: they go direct. Its value is never shown (it may hold a password)."""
    for name in SLACK_PROXY_VARIABLES:
        value = os.environ.get(name)
        if value:
            bypassed = urllib.request.proxy_bypass(urlsplit(api_url).netloc)
            return name if value.strip() and not bypassed else None
    return None


def slack_unreachable(api_url: str, exc: BaseException, fix: str = "check the network") -> str:
    """`<what>: <how to fix>` for a Slack call that got no answer, naming the proxy it went through."""
    proxy, failure = slack_proxy_variable(api_url), type(exc).__name__
    if proxy is None:
        return f"cannot reach Slack at {api_url} ({failure}): {fix}"
    return f"cannot reach Slack at {api_url} through the proxy in {proxy} ({failure}): check that proxy, or {fix}"


def slack_client(settings: Settings, metrics: Metrics | None = None) -> WebClient:
    """The Web API client; Slack's 429s and dropped connections are retried by slack_sdk.
    With `metrics`, every call and every 429 is counted (recbot_slack_*)."""
    options: dict[str, Any] = {
        "token": settings.SLACK_BOT_TOKEN.get_secret_value(),
        "base_url": settings.SLACK_API_URL,
        "timeout": 10,
    }
    if metrics is None:
        limits = RateLimitErrorRetryHandler(max_retry_count=2)
        return NoRedirectWebClient(**options, retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), limits])
    counted = CountingRateLimitHandler(metrics, max_retry_count=2)
    return MeteredWebClient(
        metrics, **options, retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), counted]
    )


def agora_limiter(settings: Settings, metrics: Metrics | None = None) -> Limiter:
    """The AGORA_RATE_LIMIT budget: in the shared database for every instance on
    PostgreSQL (on its own connections), in this process on the embedded SQLite."""
    if is_sqlite(settings.DATABASE_URL):
        return TokenBucket(settings.AGORA_RATE_LIMIT, metrics=metrics)
    return SharedBudget(make_engine(settings.DATABASE_URL), settings.AGORA_RATE_LIMIT, metrics=metrics)


def agora_client(settings: Settings, metrics: Metrics | None = None) -> AgoraClient:
    """The one Agora client of the process, every call under the AGORA_RATE_LIMIT budget."""
    return AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        limiter=agora_limiter(settings, metrics),
        metrics=metrics,
    )


def build_services(settings: Settings, *, agora: AgoraClient | None = None) -> Services:
    """Everything the listeners need; `agora` may be passed in (tests tune its backoff)."""
    metrics = Metrics()
    metrics.request_ttl_seconds.set(settings.RECBOT_REQUEST_TTL_SECONDS)  # alert rules compare waits with it
    if agora is None:
        agora = agora_client(settings, metrics)
    else:
        agora.report_to(metrics)  # a client made elsewhere counts into this process's metrics too
    seal_key = settings.RECBOT_SEAL_KEY.get_secret_value() if settings.RECBOT_SEAL_KEY else None
    sealer = Sealer(resolve_seal_key(seal_key, settings.DATABASE_URL, lambda: count_sealed(settings.DATABASE_URL)))
    store = open_store(settings.DATABASE_URL)

    def gauges() -> DatabaseReadings:
        store.check_file()  # reads of a deleted or replaced SQLite file still answer: it is down all the same
        return read_gauges(store.engine)

    metrics.watch_database(gauges, OPEN_STATES, JOB_STATES)
    prober = Prober(
        settings.RECBOT_STORAGE_PROBE,
        s3_endpoint=settings.RECBOT_STORAGE_ENDPOINT_OVERRIDE,
        azure_endpoint=settings.RECBOT_AZURE_ENDPOINT_OVERRIDE,
        timeout=settings.RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS,
        metrics=metrics,
    )
    drift = DriftWatch(
        store.drift,
        store.audit,
        store.requests,
        agora,
        sealer.digest_key,
        app_id=settings.AGORA_APP_ID,
        watch_all=settings.RECBOT_DRIFT_ALL,
        metrics=metrics,
    )
    book = SwitchBook(store.switches)
    approvals = ApprovalService(
        requests=store.requests,
        audit=store.audit,
        sealer=sealer,
        agora=agora,
        digest_key=sealer.digest_key,
        ttl_seconds=settings.RECBOT_REQUEST_TTL_SECONDS,
        required_approvals=settings.RECBOT_REQUIRED_APPROVALS,
        prober=prober,
        watch=drift,
        switches=book,
        metrics=metrics,
    )
    changes = ChangeService(
        agora,
        store.audit,
        approvals,
        sealer.digest_key,
        prober,
        drift,
        settings.RECBOT_APPROVAL_FOR,
        switches=book,
        metrics=metrics,
    )
    switches = SwitchService(
        agora,
        store.audit,
        store.switches,
        book,
        approvals,
        default_app=settings.AGORA_APP_ID,
        approval_for=settings.RECBOT_APPROVAL_FOR,
        metrics=metrics,
    )
    fleet = Fleet(agora, store.fleet_scans)
    bulk = BulkJobs(
        jobs=store.jobs,
        votes=store.job_approvals,
        fleet=fleet,
        sealer=sealer,
        prober=prober,
        ttl_seconds=settings.RECBOT_REQUEST_TTL_SECONDS,
        required_approvals=settings.RECBOT_REQUIRED_APPROVALS,
        max_targets=settings.RECBOT_BULK_MAX_TARGETS,
        metrics=metrics,
    )
    # Labelled when first counted: a series of a family shows once it has one (the README's rule).
    store.jobs.on_skipped = lambda count: metrics.bulk_targets.labels(outcome="skipped").inc(count)
    return Services(
        settings=settings,
        agora=agora,
        sealer=sealer,
        store=store,
        changes=changes,
        approvals=approvals,
        approvers=Audience(settings.RECBOT_APPROVERS, empty_means_everyone=False),
        requesters=Audience(settings.RECBOT_REQUESTERS, empty_means_everyone=True),
        prober=prober,
        fleet=fleet,
        drift=drift,
        switches=switches,
        jobs=JobRunner(
            store.jobs,
            agora,
            sealer,
            drift,
            book,
            audit=store.audit,
            paused_for=timedelta(seconds=settings.RECBOT_REQUEST_TTL_SECONDS),
            metrics=metrics,
        ),
        bulk=bulk,
        metrics=metrics,
    )
