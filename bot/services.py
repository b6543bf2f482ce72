"""What the Slack listeners work with: the settings and the domain services, and how
they are built from the settings, on one store and one Agora client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy.exc import SQLAlchemyError

from bot.access import Audience
from bot.agora import AgoraClient
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
from bot.seal import Sealer, resolve_seal_key
from bot.settings import Settings, is_sqlite
from bot.shared_budget import SharedBudget
from bot.store import Store, open_store
from bot.store.engine import make_engine
from bot.store.gauges import read_gauges
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
        return {"ok": True, "database": "ok"}

    def readiness(self, socket_connected: Callable[[], bool] | None = None) -> dict[str, Any]:
        """What `/readyz` reports: ready when the database answers and, in Socket Mode
        (`socket_connected` given), the WebSocket is connected."""
        report = self.health()
        if socket_connected is not None:
            connected = socket_connected()
            report["socket_mode"] = "connected" if connected else "disconnected"
            report["ok"] = report["ok"] and connected
        return report

    def close(self) -> None:
        self.agora.close()
        self.store.close()


def slack_client(settings: Settings) -> WebClient:
    """The Web API client; Slack's 429s and dropped connections are retried by slack_sdk."""
    return WebClient(
        token=settings.SLACK_BOT_TOKEN.get_secret_value(),
        base_url=settings.SLACK_API_URL,
        timeout=10,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=2)],
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
    sealer = Sealer(resolve_seal_key(seal_key, settings.DATABASE_URL))
    store = open_store(settings.DATABASE_URL)
    metrics.watch_database(lambda: read_gauges(store.engine), OPEN_STATES, JOB_STATES)
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
    store.jobs.on_skipped = metrics.bulk_targets.labels(outcome="skipped").inc
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
