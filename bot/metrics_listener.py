"""The metrics listener: `/metrics` (Prometheus's text format), `/healthz` and `/readyz` on
RECBOT_METRICS_ADDR, a waitress server of its own beside the Slack-facing one (HTTP mode) or
the Socket Mode connection, so that what Prometheus and Kubernetes read is never public."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

log = logging.getLogger(__name__)

Report = Callable[[], dict[str, Any]]
METRICS_FIX = "set RECBOT_METRICS_ADDR to another IP:port, or to off"
# Methods a probe or a scrape may use: HEAD is GET without the body (load balancers' checks use it).
READ_METHODS = ("GET", "HEAD")
_WILDCARDS = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


def _same_interface(a: str, b: str) -> bool:
    """Whether listening on `a` and on `b` (IPs, or localhost) would take the same socket:
    the same address, or either is every interface."""
    first, second = (ipaddress.ip_address("127.0.0.1" if h == "localhost" else h) for h in (a, b))
    return first == second or first in _WILDCARDS or second in _WILDCARDS


def on_slack_port(metrics_addr: tuple[str, int] | None, host: str, port: int) -> str | None:
    """Why RECBOT_METRICS_ADDR cannot be the HTTP mode's Slack-facing `host`:`port`, said before
    anything is created (else waitress finds the port taken by recbot itself, and says so wrongly)."""
    if metrics_addr is None or port == 0 or metrics_addr[1] != port:
        return None
    if not _same_interface(metrics_addr[0], host):
        return None
    return (
        f"RECBOT_METRICS_ADDR names port {port}, the Slack-facing --port: /metrics is never served where Slack "
        f"reaches; {METRICS_FIX}, or pass another --port"
    )


def bracketed(host: str) -> str:
    """The host, an IPv6 address in brackets, so that a port after it is told from the address."""
    return f"[{host}]" if ":" in host else host


def address(host: str, port: int) -> str:
    """host:port, an IPv6 address in brackets."""
    return f"{bracketed(host)}:{port}"


def url(host: str, port: int) -> str:
    """http://host:port, an IPv6 address in brackets (as a browser, curl or Prometheus needs it)."""
    return f"http://{address(host, port)}"


def _json(start_response: Callable[..., Any], report: dict[str, Any]) -> list[bytes]:
    body = json.dumps(report).encode()
    status = "200 OK" if report.get("ok") else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def probe_routes(health: Report, readiness: Report) -> dict[str, Report]:
    """GET paths Kubernetes probes: alive (`/healthz`) and ready to serve Slack (`/readyz`)."""
    return {"/healthz": health, "/readyz": readiness}


def metrics_wsgi(registry: CollectorRegistry, health: Report, readiness: Report) -> Callable[..., Iterable[bytes]]:
    """GET (or HEAD) /metrics, /healthz and /readyz; any other path is 404, any other method 405."""
    probes = probe_routes(health, readiness)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if method not in READ_METHODS:
            start_response("405 Method Not Allowed", [("Allow", ", ".join(READ_METHODS)), ("Content-Length", "0")])
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


def waitress_map(server: Any) -> dict[int, Any]:
    """The sockets waitress's loop serves: a server's listening ones, its wake-up pipe, its connections."""
    return server.map if hasattr(server, "map") else server._map  # several listening sockets, or one


def stop_serving(server: Any, *, cancel_pending: bool, timeout: float) -> None:
    """Stop accepting, let the requests under way finish (up to `timeout`), then close the wake-up
    pipe. waitress's own close() closes the pipe first: a request finishing after it writes its
    wake-up byte to the pipe's old descriptor, which by then may be another file or connection."""
    listeners = [s for s in waitress_map(server).values() if isinstance(s, BaseWSGIServer)]
    for listener in listeners:
        wasyncore.dispatcher.close(listener)  # the listening socket alone
    server.task_dispatcher.shutdown(cancel_pending=cancel_pending, timeout=timeout)
    for listener in listeners:
        listener.trigger.close()


def serve_until(server: Any, stop: threading.Event, tick: float = 0.2) -> None:
    """Run waitress's loop (what `server.run()` runs) until `stop` is set, looking at it every
    `tick` seconds: a stop raised into the loop could be caught by waitress's own handlers."""
    sockets = waitress_map(server)
    while not stop.is_set():
        server.asyncore.loop(timeout=tick, map=sockets, use_poll=server.adj.asyncore_use_poll, count=1)


class MetricsListener:
    """The metrics listener, serving on a daemon thread until `close()`."""

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]]) -> None:
        # Two threads: a scrape and a probe at once; a third waits, which is what a slow database deserves.
        self._server: Any = create_server(app, host=host, port=port, threads=2, ident="recbot-metrics")
        self.port: int = self._server.effective_port
        self._closing = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="metrics-listener", daemon=True)

    def start(self) -> MetricsListener:
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            serve_until(self._server, self._stopped, tick=0.1)
        except OSError:
            if not self._closing:  # closing the socket under waitress's loop can end it this way
                raise

    def close(self) -> None:
        """Stop accepting, let a scrape under way finish, end the loop, and hang up on connections
        kept open (Prometheus keeps one): the loop served them on, and a stop waited 5 s for it."""
        self._closing = True
        stop_serving(self._server, cancel_pending=True, timeout=5)
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._server.asyncore.close_all(waitress_map(self._server))
