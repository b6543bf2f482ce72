"""Serving the Bolt app: HTTP mode on waitress (a multi-threaded production
WSGI server) with `/healthz`, or Socket Mode."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress.server import create_server

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20  # Slack payloads are a few KB; refuse anything huge before parsing

HealthCheck = Callable[[], dict[str, Any]]


def wsgi_app(app: App, health: HealthCheck) -> Callable[..., Iterable[bytes]]:
    """POST /slack/events to Bolt (which checks the signature), GET /healthz to `health`."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            report = health()
            status = "200 OK" if report.get("ok") else "503 Service Unavailable"
            body = json.dumps(report).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return slack(environ, start_response)

    return application


def make_http_server(app: App, health: HealthCheck, host: str, port: int, threads: int = 16) -> Any:
    """A waitress server, not yet running: call `.run()`, stop with `.close()`."""
    return create_server(
        wsgi_app(app, health),
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_BODY_BYTES,
        ident="recbot",
    )


def socket_mode_handler(app: App, app_token: str, api_url: str) -> SocketModeHandler:
    """Socket Mode over the WebSocket URL that `apps.connections.open` returns."""
    return SocketModeHandler(app, app_token=app_token, web_client=WebClient(token=app_token, base_url=api_url))
