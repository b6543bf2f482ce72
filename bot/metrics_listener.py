"""The metrics listener: `/metrics` (Prometheus's text format), `/healthz` and `/readyz` on
RECBOT_METRICS_ADDR, a waitress server of its own beside the Slack-facing one (HTTP mode) or
the Socket Mode connection, so that what Prometheus and Kubernetes read is never public."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from waitress.server import create_server

log = logging.getLogger(__name__)

Report = Callable[[], dict[str, Any]]
METRICS_FIX = "set RECBOT_METRICS_ADDR to another IP:port, or to off"


def _json(start_response: Callable[..., Any], report: dict[str, Any]) -> list[bytes]:
    body = json.dumps(report).encode()
    status = "200 OK" if report.get("ok") else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def probe_routes(health: Report, readiness: Report) -> dict[str, Report]:
    """GET paths Kubernetes probes: alive (`/healthz`) and ready to serve Slack (`/readyz`)."""
    return {"/healthz": health, "/readyz": readiness}


def metrics_wsgi(registry: CollectorRegistry, health: Report, readiness: Report) -> Callable[..., Iterable[bytes]]:
    """GET /metrics, /healthz and /readyz; anything else is 404."""
    probes = probe_routes(health, readiness)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET"), ("Content-Length", "0")])
            return [b""]
        if path == "/metrics":
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return [body]
        if path in probes:
            return _json(start_response, probes[path]())
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"not found"]

    return application


class MetricsListener:
    """The metrics listener, serving on a daemon thread until `close()`."""

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]]) -> None:
        # Two threads: a scrape and a probe at once; a third waits, which is what a slow database deserves.
        self._server: Any = create_server(app, host=host, port=port, threads=2, ident="recbot-metrics")
        self.port: int = self._server.effective_port
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="metrics-listener", daemon=True)

    def start(self) -> MetricsListener:
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError:
            if not self._closing:  # closing the socket under waitress's loop ends it this way
                raise

    def close(self) -> None:
        self._closing = True
        self._server.close()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        self._thread.join(timeout=5)
