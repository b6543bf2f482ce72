"""What one recbot process counts for Prometheus: every metric family, named once here, on a
registry of its own (several recbots in one test process do not add up), read by the
metrics listener (bot/metrics_listener.py). Labels take only values from small fixed sets
(verbs, methods, states, outcomes, vendors): never an entry point, a user or a key.

The gauges that describe the shared database (open requests, open drift alerts, jobs by
state) are read from it at each scrape, so every instance on one database reports the same
figures: dashboards and rules take their max(), not their sum."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# A `_created` timestamp beside every counter and histogram series doubles what each scrape
# carries and says nothing Prometheus needs (it sees resets itself). Process-wide, as the client's setting is.
disable_created_metrics()

# Seconds, from a fast ack to a slow apply: Slack's 3-second ack deadline sits between two buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0, 30.0, 60.0)
# A limiter wait is 0 for most calls and a few token intervals behind background work.
WAIT_BUCKETS = (0.0, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From a minute to the longest TTL a request can have (30 days).
_HOUR, _DAY = 3600.0, 86400.0
DECISION_BUCKETS = (60.0, 300.0, 900.0, _HOUR, 4 * _HOUR, 12 * _HOUR, _DAY, 3 * _DAY, 7 * _DAY, 30 * _DAY)
# A drift pass over many targets paces itself under the rate limit: up to many minutes.
PASS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def status_class(status: int | None) -> str:
    """`2xx`..`5xx` for an HTTP status; `none` when no answer came (a timeout, a refused connection)."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


@dataclass(frozen=True)
class DatabaseReadings:
    """What the shared database says at a scrape; ages in seconds (0 when nothing is open)."""

    requests_by_state: dict[str, int] = field(default_factory=dict)
    oldest_pending_request_seconds: float = 0.0
    drift_alerts_open: int = 0
    oldest_drift_alert_seconds: float = 0.0
    jobs_by_state: dict[str, int] = field(default_factory=dict)


class DatabaseCollector(Collector):
    """The gauges read from the database at each scrape. A database that does not answer
    leaves them out of that scrape (and recbot_database_up says 0), not the whole scrape."""

    def __init__(
        self,
        read: Callable[[], DatabaseReadings],
        request_states: Iterable[str],
        job_states: Iterable[str],
    ) -> None:
        self._read = read
        self._request_states = tuple(request_states)
        self._job_states = tuple(job_states)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at collect time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("recbot_database_up", "1 when the database answered this scrape's queries, else 0.")
        try:
            readings = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database does
            # Not "did not answer": a deleted or replaced SQLite file answers from the old file.
            log.warning(
                "metrics: the database's gauges are left out of this scrape (%s; /healthz says why)",
                type(exc).__name__,
            )
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        requests = GaugeMetricFamily(
            "recbot_change_requests_open", "Change requests not ended yet, by state.", labels=["state"]
        )
        for state in self._request_states:
            requests.add_metric([state], readings.requests_by_state.get(state, 0))
        yield requests
        yield GaugeMetricFamily(
            "recbot_change_requests_oldest_pending_seconds",
            "Age of the oldest change request still waiting for approval (0: none waits).",
            value=readings.oldest_pending_request_seconds,
        )
        yield GaugeMetricFamily(
            "recbot_drift_alerts_open",
            "Drift alerts open (not yet acknowledged or resolved).",
            value=readings.drift_alerts_open,
        )
        yield GaugeMetricFamily(
            "recbot_drift_alerts_oldest_open_seconds",
            "Age of the oldest open drift alert (0: none is open).",
            value=readings.oldest_drift_alert_seconds,
        )
        jobs = GaugeMetricFamily("recbot_bulk_jobs", "Fleet-wide jobs, by state.", labels=["state"])
        for state in self._job_states:
            jobs.add_metric([state], readings.jobs_by_state.get(state, 0))
        yield jobs


class Metrics:
    """Every metric family of one recbot process, on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry

        # Build: one series of value 1 whose labels say what runs.
        self.build_info = Gauge(
            "recbot_build_info",
            "What runs: recbot's version, Python's, and the mode.",
            ["version", "python", "mode"],
            registry=r,
        )

        # Slack's requests to recbot.
        self.commands = Counter(
            "recbot_commands_total",
            "Slash commands handled, by verb and outcome (ok, refused, failed).",
            ["verb", "outcome"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "recbot_ack_seconds",
            "From a Slack request's arrival to its ack, by kind (command, action, view, options, event).",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answer_seconds = Histogram(
            "recbot_answer_seconds",
            "From a slash command's arrival to its first answer posted, by verb.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # recbot's calls to Agora.
        self.agora_requests = Counter(
            "recbot_agora_requests_total",
            "Agora API calls, by HTTP method and status class (none: no answer).",
            ["method", "status_class"],
            registry=r,
        )
        self.agora_rate_limited = Counter(
            "recbot_agora_rate_limited_total", "Agora answers of 429 Too Many Requests.", registry=r
        )
        self.agora_retries = Counter(
            "recbot_agora_retries_total", "Agora calls sent again after a failed attempt.", registry=r
        )
        self.limiter_wait_seconds = Histogram(
            "recbot_agora_limiter_wait_seconds",
            "Time a call waited for the Agora rate limiter, by lane.",
            ["lane"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.limiter_tokens = Gauge(
            "recbot_agora_limiter_tokens", "Agora calls that could be made now without waiting.", registry=r
        )

        # Change requests (bot/lifecycle.py's table).
        self.request_transitions = Counter(
            "recbot_change_request_transitions_total",
            "Change requests moved, by the life cycle's event and the state it led to.",
            ["event", "state"],
            registry=r,
        )
        self.applies = Counter(
            "recbot_applies_total",
            "Changes sent to Agora, by outcome (applied, failed, stale).",
            ["outcome"],
            registry=r,
        )
        # Each outcome from 0: a series born at 1 has no increase to Prometheus, so a process's
        # first failed apply would never fire RecbotAppliesFailing (rate() of it stays 0).
        for outcome in ("applied", "failed", "stale"):
            self.applies.labels(outcome=outcome)
        self.request_ttl_seconds = Gauge(
            "recbot_change_request_ttl_seconds",
            "How long a change request can wait for approval (RECBOT_REQUEST_TTL_SECONDS).",
            registry=r,
        )
        self.decision_seconds = Histogram(
            "recbot_change_request_decision_seconds",
            "From a change request to its approval or rejection.",
            ["decision"],
            buckets=DECISION_BUCKETS,
            registry=r,
        )

        # Storage checks (bot/probe.py).
        self.storage_checks = Counter(
            "recbot_storage_checks_total", "Storage checks, by vendor and outcome.", ["vendor", "outcome"], registry=r
        )
        self.storage_check_seconds = Histogram(
            "recbot_storage_check_seconds",
            "How long a storage check took, by vendor.",
            ["vendor"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # The drift watch and fleet-wide jobs.
        self.drift_passes = Counter(
            "recbot_drift_passes_total",
            "Drift watch passes run by this process, by outcome (done, failed).",
            ["outcome"],
            registry=r,
        )
        self.drift_pass_seconds = Histogram(
            "recbot_drift_pass_seconds", "How long a drift watch pass took.", buckets=PASS_BUCKETS, registry=r
        )
        self.bulk_targets = Counter(
            "recbot_bulk_targets_total",
            "Targets of fleet-wide jobs ended by this process, by outcome.",
            ["outcome"],
            registry=r,
        )

        # recbot's calls to Slack, and its Socket Mode connection.
        self.slack_calls = Counter(
            "recbot_slack_api_calls_total",
            "Slack Web API calls, by method and outcome (ok, error, ratelimited).",
            ["method", "outcome"],
            registry=r,
        )
        self.slack_rate_limited = Counter(
            "recbot_slack_rate_limited_total", "Slack answers of 429 Too Many Requests.", registry=r
        )
        self.socket_mode_connected = Gauge(
            "recbot_socket_mode_connected",
            "1 while the Socket Mode WebSocket is connected (HTTP mode: 0).",
            registry=r,
        )
        self.socket_mode_reconnects = Counter(
            "recbot_socket_mode_reconnects_total",
            "Socket Mode connections opened again after the first.",
            registry=r,
        )

    def describe_build(self, version: str, mode: str) -> None:
        """Set recbot_build_info's one series."""
        self.build_info.labels(version=version, python=platform.python_version(), mode=mode).set(1)

    def watch_database(
        self, read: Callable[[], DatabaseReadings], request_states: Iterable[str], job_states: Iterable[str]
    ) -> None:
        """Read the database's gauges from `read` at each scrape."""
        self.registry.register(DatabaseCollector(read, request_states, job_states))
