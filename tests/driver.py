"""Drives the bot through its real HTTP entry with signed Slack requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from bot.agora import AgoraClient
from bot.metrics_listener import MetricsListener, metrics_wsgi, stop_serving
from bot.server import finish, make_http_server
from bot.services import Services, build_services
from recbot.app import create_app, start_background


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class RunningBot:
    """The bot's HTTP mode on waitress, on an ephemeral 127.0.0.1 port."""

    def __init__(self, services: Services, sweep_seconds: float = 0.1) -> None:
        self.services = services
        self.app = create_app(services)
        self.sweeper = start_background(self.app, services, sweep_seconds)
        self.server = make_http_server(self.app, services, "127.0.0.1", 0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        wsgi = metrics_wsgi(services.metrics.registry, services.health, services.readiness)
        self.metrics = MetricsListener("127.0.0.1", 0, wsgi).start()
        self.metrics_url = f"http://127.0.0.1:{self.metrics.port}/metrics"
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._closing:  # closing the socket under waitress's select loop ends it this way
                raise

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every acked listener has finished, so "nothing happened" can be asserted."""
        assert self.app.listener_runner.listener_executor.wait_idle(timeout), "listeners still running"

    def stop(self) -> None:
        """As on SIGTERM: stop accepting, then let acked listeners finish."""
        self._closing = True
        # As serve_http does; each of waitress's threads keeps its last request, and through it
        # this app and its services, until the dispatcher ends it.
        stop_serving(self.server, cancel_pending=False, timeout=5)
        self._thread.join(timeout=5)
        finish(self.app, self.services, self.sweeper, self.metrics)


@dataclass
class SlackDriver:
    """Plays Slack: sends signed commands and interactions to the bot."""

    bot_url: str
    signing_secret: str
    response_url: str
    team_id: str = "T1"

    def post(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> requests.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature if signature is not None else slack_signature(self.signing_secret, ts, body),
        }
        return requests.post(self.bot_url + "/slack/events", data=body, headers=headers, timeout=10)

    def command(self, text: str, *, user: str = "UALICE", channel: str = "CRUN", **kw: Any) -> requests.Response:
        form = {
            "command": "/recording",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "channel_id": channel,
            "team_id": self.team_id,
            "response_url": self.response_url,
            "trigger_id": f"trigger-{time.monotonic_ns()}",
            "api_app_id": "A1",
        }
        return self.post(urlencode(form).encode(), **kw)

    def interaction(self, payload: dict[str, Any]) -> requests.Response:
        payload = {"team": {"id": self.team_id}, "api_app_id": "A1", "token": "legacy", **payload}
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())

    def block_action(
        self,
        user: str,
        action: dict[str, Any],
        *,
        view: dict[str, Any] | None = None,
        message: dict[str, Any] | None = None,
        channel: str = "CAPPROVE",
    ) -> requests.Response:
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user},
            "actions": [action],
            "trigger_id": f"trigger-{time.monotonic_ns()}",
        }
        if view is not None:
            payload["view"] = view
            payload["container"] = {"type": "view", "view_id": view.get("id")}
        if message is not None:
            payload["message"] = message
            payload["channel"] = {"id": channel}
            payload["container"] = {"type": "message", "message_ts": message.get("ts"), "channel_id": channel}
            payload["response_url"] = self.response_url
        return self.interaction(payload)

    def event(self, event: dict[str, Any], **kw: Any) -> requests.Response:
        """An Events API delivery of `event`, as Slack posts it (JSON)."""
        envelope = {
            "token": "legacy",
            "team_id": self.team_id,
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": event,
        }
        return self.post(json.dumps(envelope).encode(), content_type="application/json", **kw)

    def home_opened(self, user: str, tab: str = "home") -> requests.Response:
        return self.event({"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": tab})

    def submit(self, user: str, view: dict[str, Any], state: dict[str, Any]) -> requests.Response:
        submitted = {**view, "state": {"values": state}}
        return self.interaction({"type": "view_submission", "user": {"id": user}, "view": submitted})


def start_bot(settings: Any, agora_client: Any, sweep_seconds: float = 0.1) -> RunningBot:
    return RunningBot(build_services(settings, agora=agora_client), sweep_seconds)


def bot_with_agora_timing(settings: Any, **timing: float) -> RunningBot:
    """A bot whose Agora client has `timing` of its own (read_timeout, backoff_base, retry_window)."""
    client = AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        **timing,
    )
    return start_bot(settings, client)
