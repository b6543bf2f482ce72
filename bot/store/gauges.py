"""What the metrics' database gauges read at a scrape: four aggregate queries in one connection
(a scan of requests, alerts and jobs every scrape interval; no row is read into Python)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.lifecycle import OPEN_STATES
from bot.metrics import DatabaseReadings
from bot.store.engine import aware
from bot.store.schema import change_requests, drift_alerts, jobs
from bot.store.values import utcnow


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max(0.0, (now - aware(since)).total_seconds())


def read_gauges(engine: Engine) -> DatabaseReadings:
    """Open requests by state and the oldest pending one's age, open drift alerts and the oldest's
    age, fleet-wide jobs by state."""
    r, d, j = change_requests.c, drift_alerts.c, jobs.c
    now = utcnow()
    with engine.connect() as conn:
        by_state = conn.execute(select(r.state, func.count()).where(r.state.in_(OPEN_STATES)).group_by(r.state)).all()
        oldest_pending = conn.execute(select(func.min(r.created_at)).where(r.state == "pending")).scalar()
        open_alerts = select(func.count(), func.min(d.detected_at)).where(d.state == "open")
        alerts, oldest_alert = conn.execute(open_alerts).one()
        job_states = conn.execute(select(j.state, func.count()).group_by(j.state)).all()
    return DatabaseReadings(
        requests_by_state={state: count for state, count in by_state},
        oldest_pending_request_seconds=_age(oldest_pending, now),
        drift_alerts_open=alerts,
        oldest_drift_alert_seconds=_age(oldest_alert, now),
        jobs_by_state={state: count for state, count in job_states},
    )
