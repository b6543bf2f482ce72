"""Socket Mode end to end: `apps.connections.open` points at a local WebSocket
server that plays Slack, sends slash command and Events API envelopes and reads the acks."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.socket_mode.builtin.client import SocketModeClient
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from bot.server import CountingSocketModeClient, socket_mode_handler
from bot.services import build_services
from recbot.app import create_app
from tests.conftest import fast_agora
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack

APP_TOKEN = "xapp-test-fake"
ROOT = Path(__file__).resolve().parent.parent


class SocketSlack:
    """Sends one envelope per connection and collects what the bot answers."""

    def __init__(self, *envelopes: dict[str, Any], refuse: int = 0) -> None:
        self.envelopes = envelopes
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.refuse = refuse  # handshakes answered 403 first, as Slack answers a URL that expired
        self._server = serve(self._session, "127.0.0.1", 0, process_request=self._refusing)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def _refusing(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.refuse <= 0:
            return None
        self.refuse -= 1
        return ws.respond(HTTPStatus.FORBIDDEN, "expired\n")

    def _session(self, ws: ServerConnection) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1}))
        for envelope in self.envelopes:
            ws.send(json.dumps(envelope))
        try:
            for message in ws:
                self.acks.put(json.loads(message))
        except Exception:  # noqa: BLE001, S110 - the bot hanging up ends the session
            pass

    def __enter__(self) -> SocketSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()


@pytest.fixture
def socket_settings(settings_overrides: dict[str, Any]) -> Iterator[Any]:
    from bot.settings import load_settings

    yield load_settings(_env_file=None, SLACK_APP_TOKEN=APP_TOKEN, **settings_overrides)


@contextmanager
def connected(settings: Any, slack: FakeSlack, *envelopes: dict[str, Any]) -> Iterator[SocketSlack]:
    """recbot connected over Socket Mode to a SocketSlack that sends `envelopes`; closed after."""
    services = build_services(settings, agora=fast_agora(settings))
    with SocketSlack(*envelopes) as ws_slack:
        slack.socket_url = ws_slack.url
        handler = socket_mode_handler(create_app(services), APP_TOKEN, settings.SLACK_API_URL)
        handler.connect()
        try:
            yield ws_slack
        finally:
            handler.close()
            services.close()


def get_command(slack: FakeSlack) -> dict[str, Any]:
    return {
        "envelope_id": "env-1",
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": {
            "command": "/recording",
            "text": "get live na",
            "user_id": "UALICE",
            "channel_id": "CRUN",
            "team_id": "T1",
            "api_app_id": "A1",
            "trigger_id": "trigger-socket",
            "response_url": slack.response_url("socket"),
        },
    }


def test_slash_command_over_socket_mode(socket_settings, slack: FakeSlack, agora: AgoraEmulator) -> None:
    envelope = get_command(slack)
    malformed = {
        "envelope_id": "env-0",
        "type": "interactive",
        "accepts_response_payload": False,
        "payload": {"type": "view_submission", "user": {"id": "UALICE"}, "view": {"callback_id": "x"}},
    }
    with connected(socket_settings, slack, malformed, envelope) as ws_slack:
        acks = [ws_slack.acks.get(timeout=10)["envelope_id"] for _ in range(2)]
        (reply,) = slack.wait_for("response_url")
    assert sorted(acks) == ["env-0", "env-1"]  # the malformed one is acked and dropped, not crashed on
    assert slack.of("apps.connections.open")[0].token == APP_TOKEN
    assert "rec-bucket" in json.dumps(reply.params)
    assert [c.path.endswith("/entry_points/live/settings/record/custom/regions/na") for c in agora.calls()] == [True]


def test_app_home_opened_over_socket_mode_publishes_the_home(socket_settings, slack: FakeSlack, agora, caplog) -> None:
    """The same gate as HTTP: a malformed events_api envelope is acked and dropped, a real one served."""
    event = {"type": "app_home_opened", "user": "UALICE", "channel": "DALICE", "tab": "home"}
    malformed = {
        "envelope_id": "env-bad",
        "type": "events_api",
        "accepts_response_payload": False,
        "payload": {"type": "event_callback", "event": {"type": "app_home_opened", "tab": "home"}},
    }
    opened = {
        "envelope_id": "env-home",
        "type": "events_api",
        "accepts_response_payload": False,
        "payload": {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event": event},
    }
    with connected(socket_settings, slack, malformed, opened) as ws_slack:
        acks = [ws_slack.acks.get(timeout=10)["envelope_id"] for _ in range(2)]
        slack.wait_for("views.publish")
    assert sorted(acks) == ["env-bad", "env-home"]
    assert "dropped a Socket Mode envelope recbot does not handle (type events_api)" in caplog.text
    assert [c.params["user_id"] for c in slack.of("views.publish")] == ["UALICE"]
    home = slack.home("UALICE")
    assert home is not None and home["type"] == "home"
    assert agora.calls() == []  # the home is built from recbot's own store, not a read of Agora


def run_in_socket_mode(
    settings_overrides: dict[str, Any], slack: FakeSlack, tmp_path: Path, refuse: int = 0
) -> tuple[subprocess.Popen[str], str, Any]:
    """`python -m recbot` against a SocketSlack that refuses `refuse` handshakes first, until a
    command is answered; then SIGTERM. (the process, its stderr, the answer)"""
    slack.app_token = APP_TOKEN
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    env |= {k: str(v) for k, v in settings_overrides.items()} | {"SLACK_APP_TOKEN": APP_TOKEN, "PYTHONPATH": str(ROOT)}
    with SocketSlack(get_command(slack), refuse=refuse) as ws_slack:
        slack.socket_url = ws_slack.url
        process = subprocess.Popen(
            [sys.executable, "-m", "recbot"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            assert ws_slack.acks.get(timeout=30)["envelope_id"] == "env-1"
            (reply,) = slack.wait_for("response_url", timeout=30)
            assert process.poll() is None, "recbot ended before it was stopped"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    return process, stderr, reply


def test_run_in_socket_mode_serves_and_stops_on_sigterm(settings_overrides, slack, agora, tmp_path) -> None:
    """`./run` as a user starts it: tokens checked, one connection URL asked for, a command answered."""
    process, stderr, reply = run_in_socket_mode(settings_overrides, slack, tmp_path)
    assert process.returncode == 0, stderr
    assert "rec-bucket" in json.dumps(reply.params)
    assert [c.token for c in slack.of("apps.connections.open")] == [APP_TOKEN]
    assert stderr.count("recbot connected in Socket Mode") == 1
    assert "Slack did not accept the Socket Mode connection" not in stderr
    assert "will be unused" not in stderr  # Bolt's warning at every start: the client carries the token
    assert "received signal 15; finishing in-flight work" in stderr
    assert "recbot stopped cleanly" in stderr and "Traceback" not in stderr


def test_a_refused_socket_mode_handshake_is_said_and_a_new_url_connects(settings_overrides, slack, agora, tmp_path):
    """A WebSocket URL Slack refuses (it expired) is not "connected": recbot says so, slack_sdk's
    monitor asks for a new URL a few seconds later, and recbot says connected once it is."""
    process, stderr, reply = run_in_socket_mode(settings_overrides, slack, tmp_path, refuse=1)
    assert process.returncode == 0, stderr
    assert "rec-bucket" in json.dumps(reply.params)
    assert len(slack.of("apps.connections.open")) == 2
    assert stderr.count("recbot connected in Socket Mode") == 1
    # slack_sdk's monitor tries a new URL at once, on a thread of its own: it may have connected
    # before the first attempt's end was looked at, and then there is nothing to warn of.
    refused = stderr.find("Slack did not accept the Socket Mode connection")
    assert refused < stderr.index("recbot connected in Socket Mode")
    assert "Traceback" not in stderr


def test_refused_connections_are_warned_of_once_a_minute_and_a_connection_once(monkeypatch, caplog) -> None:
    """slack_sdk tries again every 5 s, and says "A new session has been established" each time. Its
    own connect is stubbed here: its monitor reconnects on a thread of its own, at once, and would
    race the test (the real refusal is played end to end by the test above)."""
    caplog.set_level(logging.INFO, logger="bot.server")
    slack_side = SimpleNamespace(accepts=False)
    monkeypatch.setattr(SocketModeClient, "connect", lambda self: None)
    monkeypatch.setattr(SocketModeClient, "is_connected", lambda self: slack_side.accepts)
    client = CountingSocketModeClient(app_token=APP_TOKEN, auto_reconnect_enabled=False)
    try:
        client.connect()
        client.connect()
        assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot.server"] == [
            (
                "WARNING",
                "Slack did not accept the Socket Mode connection (slack_sdk logged its answer); "
                "a new one is tried every 5 s",
            )
        ]
        slack_side.accepts = True
        client.connect()
        client.connect()  # a reconnect later on is slack_sdk's to log, not a new start
        said = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
        assert said.count("recbot connected in Socket Mode") == 1 and len(said) == 2
    finally:
        slack_side.accepts = False
        client.close()
