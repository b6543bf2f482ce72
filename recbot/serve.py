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
from bot.metrics_listener import METRICS_FIX, MetricsListener, metrics_wsgi, url
from bot.server import EVENTS_PATH, HOST_FIX, StartupError, finish, in_use, make_http_server, socket_mode_handler
from bot.services import Services
from recbot.app import start_background

log = logging.getLogger(__name__)


def freeze_start_up() -> None:
    """What start-up made lives as long as the process: it is moved out of the garbage
    collector's generations, so full collections no longer walk it (gc.freeze)."""
    gc.collect()
    gc.freeze()


class _Stop(Exception):
    pass


class StopSignals:
    """SIGTERM and SIGINT, caught from before the process shows itself (the metrics listener)
    until it has stopped: one that comes while it is still starting is kept and acted on once
    the server runs, and one that comes while it is stopping is only logged."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._armed = False
        signal.signal(signal.SIGTERM, self._received)
        signal.signal(signal.SIGINT, self._received)

    def _received(self, signum: int, _frame: object) -> None:
        if self.requested.is_set():
            log.info("received signal %d; already stopping", signum)
            return
        log.info("received signal %d; finishing in-flight work", signum)
        self.requested.set()
        if self._armed:
            raise _Stop

    def raise_from_now_on(self) -> None:
        """From here on a signal raises _Stop in the main thread (which ends waitress's loop);
        a signal that came before raises it now."""
        self._armed = True
        if self.requested.is_set():
            raise _Stop

    def disarm(self) -> None:
        """Stopping: a further signal must not break off the shutdown."""
        self._armed = False
        self.requested.set()


def start_metrics(
    services: Services, mode: str, socket_connected: Callable[[], bool] | None = None
) -> MetricsListener | None:
    """The metrics listener on RECBOT_METRICS_ADDR (None when off), recbot_build_info set."""
    services.metrics.describe_build(__version__, mode)
    address = services.settings.RECBOT_METRICS_ADDR
    if address is None:
        return None
    host, port = address
    app = metrics_wsgi(services.metrics.registry, services.health, lambda: services.readiness(socket_connected))
    try:
        listener = MetricsListener(host, port, app)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(in_use(host, port, METRICS_FIX)) from None
        raise StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): {METRICS_FIX}") from None
    log.info("recbot metrics on %s/metrics (and GET /healthz, /readyz)", url(host, listener.port))
    return listener.start()


def serve_http(app: App, services: Services, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, finish requests and listeners."""
    try:
        server = make_http_server(app, services, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(in_use(host, port)) from None
        raise StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host and --port") from None
    except ValueError:  # waitress's word for an address it cannot resolve or bind
        raise StartupError(f"cannot listen on {host}:{port}: {HOST_FIX}") from None
    signals = StopSignals()  # before the metrics listener: once /readyz answers, SIGTERM stops cleanly
    try:
        metrics = start_metrics(services, "http")
    except StartupError:
        server.close()
        raise
    sweeper = start_background(app, services)
    try:
        log.info(
            "recbot serving HTTP on %s:%s (POST %s, GET /healthz, /readyz)", host, server.effective_port, EVENTS_PATH
        )
        freeze_start_up()
        signals.raise_from_now_on()
        server.run()
    except _Stop:
        pass
    finally:
        signals.disarm()
        services.stopping.set()
        server.close()
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=30)
        finish(app, services, sweeper, metrics)


def serve_socket_mode(app: App, services: Services, url: str) -> None:
    """Hold a Socket Mode connection, opened at `url` (from socket_mode_url), until SIGTERM or SIGINT."""
    token = services.settings.SLACK_APP_TOKEN
    assert token is not None
    handler = socket_mode_handler(app, token.get_secret_value(), services.settings.SLACK_API_URL, services.metrics)
    # The URL was asked for before, not by the SDK's connect(), which logs Slack's whole answer on a refusal.
    handler.client.wss_uri = url
    signals = StopSignals()  # before the metrics listener: once /metrics answers, SIGTERM stops cleanly
    metrics = start_metrics(services, "socket", handler.client.is_connected)
    sweeper = start_background(app, services)
    handler.connect()
    freeze_start_up()
    log.info("recbot connected in Socket Mode")
    signals.requested.wait()
    services.stopping.set()
    handler.close()
    finish(app, services, sweeper, metrics)
