"""Serving until stopped: HTTP mode on waitress with `/healthz`, or Socket Mode, with the
background work and the metrics listener running; both stop cleanly on SIGTERM, finishing
in-flight work."""

from __future__ import annotations

import errno
import gc
import logging
import signal
import threading
from collections.abc import Callable

from slack_bolt import App

from bot import __version__
from bot.metrics_listener import METRICS_FIX, MetricsListener, address, metrics_wsgi, serve_until, stop_serving, url
from bot.server import (
    EVENTS_PATH,
    HOST_FIX,
    StartupError,
    finish,
    in_use,
    make_http_server,
    socket_mode_handler,
)
from bot.services import Services
from recbot.app import start_background

log = logging.getLogger(__name__)


def freeze_start_up() -> None:
    """What start-up made lives as long as the process: it is moved out of the garbage
    collector's generations, so full collections no longer walk it (gc.freeze)."""
    gc.collect()
    gc.freeze()


def stop_on_signals(stopping: threading.Event) -> None:
    """From now on SIGTERM, SIGINT and SIGHUP (the terminal closed; unless started ignoring it,
    as under nohup) set `stopping` (what /readyz reports, and what ends the serving loop),
    however far the start has got; a further one while stopping is only logged.
    Installed before the metrics listener, so a stop that follows a probe of /readyz is clean.
    Nothing is raised from the handler: waitress's loop catches what its handlers run into, and
    a stop raised there could be swallowed."""

    def received(signum: int, _frame: object) -> None:
        if stopping.is_set():
            log.info("received signal %d; already stopping", signum)
            return
        log.info("received signal %d; finishing in-flight work", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, received)
    signal.signal(signal.SIGINT, received)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, received)


def start_metrics(
    services: Services, mode: str, socket_connected: Callable[[], bool] | None = None
) -> MetricsListener | None:
    """The metrics listener on RECBOT_METRICS_ADDR (None when off), recbot_build_info set."""
    services.metrics.describe_build(__version__, mode)
    listen_on = services.settings.RECBOT_METRICS_ADDR
    if listen_on is None:
        return None
    host, port = listen_on
    app = metrics_wsgi(services.metrics.registry, services.health, lambda: services.readiness(socket_connected))
    try:
        listener = MetricsListener(host, port, app)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(in_use(host, port, METRICS_FIX)) from None
        raise StartupError(f"cannot listen on {address(host, port)} ({exc.strerror}): {METRICS_FIX}") from None
    log.info("recbot metrics on %s/metrics (and GET /healthz, /readyz)", url(host, listener.port))
    return listener.start()


def serve_http(app: App, services: Services, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, finish requests and listeners."""
    try:
        server = make_http_server(app, services, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(in_use(host, port)) from None
        problem = f"cannot listen on {address(host, port)} ({exc.strerror}): check --host and --port"
        raise StartupError(problem) from None
    except ValueError:  # waitress's word for an address it cannot resolve or bind
        raise StartupError(f"cannot listen on {address(host, port)}: {HOST_FIX}") from None
    stop_on_signals(services.stopping)
    try:
        metrics = start_metrics(services, "http")
    except StartupError:
        server.close()
        raise
    sweeper = start_background(app, services)
    try:
        if not services.stopping.is_set():
            log.info(
                "recbot serving HTTP on %s (POST %s, GET /healthz, /readyz)",
                address(host, server.effective_port),
                EVENTS_PATH,
            )
            freeze_start_up()
        serve_until(server, services.stopping)
    finally:
        services.stopping.set()
        stop_serving(server, cancel_pending=False, timeout=30)
        finish(app, services, sweeper, metrics)


def serve_socket_mode(app: App, services: Services, url: str) -> None:
    """Hold a Socket Mode connection, opened at `url` (from socket_mode_url), until SIGTERM or SIGINT."""
    token = services.settings.SLACK_APP_TOKEN
    assert token is not None
    handler = socket_mode_handler(app, token.get_secret_value(), services.settings.SLACK_API_URL, services.metrics)
    # The URL was asked for before, not by the SDK's connect(), which logs Slack's whole answer on a refusal.
    handler.client.wss_uri = url
    stop_on_signals(services.stopping)
    metrics = start_metrics(services, "socket", handler.client.is_connected)
    sweeper = start_background(app, services)
    if not services.stopping.is_set():
        handler.connect()
        freeze_start_up()
    services.stopping.wait()
    handler.close()
    finish(app, services, sweeper, metrics)
