"""Processes for the benchmarks: the two fakes in one, and recbot's two peers.

python -m bench.processes fakes [N]         prints the URLs, then serves until killed;
                                            Agora holds `live` and N-1 more entry points
                                            (ep001...) in every region
python -m bench.processes bare PORT SLACK   a Bolt app that only acks /recording
python -m bench.processes plain PORT SLACK AGORA
                                            the same job as recbot's `get`, written as
                                            Bolt's own docs write an app
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress import serve

from bench.lean_http import LeanServer
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG, SIGNING_SECRET
from tests.fakes.agora import AgoraEmulator
from tests.fakes.http import Handler, LoopbackServer, Server
from tests.fakes.slack import FakeSlack


class TimedSlack(FakeSlack):
    """The Slack fake, plus read-outs on the system-wide monotonic clock (CLOCK_MONOTONIC):
    GET /_opened, when each views.open arrived; GET /_answers?since=K, the `/response/<name>`
    posts from the K-th on, in arrival order: name, when, the start of its text, 300 characters (one name per
    command: the bench's answer time). Only what is new is sent: the client polls while the
    apps work, and the whole list at every poll was CPU taken from them, growing with the run.
    GET /_collect collects this process's garbage, which the client asks for between batches."""

    def __init__(self, bot_token: str, server: Callable[[Handler], Server] = LoopbackServer) -> None:
        super().__init__(bot_token, server)
        self.answers: list[tuple[str, float, str]] = []

    def answered(self, since: int = 0) -> list[tuple[str, float, str]]:
        """Answers from the `since`-th on: name, when it arrived, its text's first 2000 characters."""
        with self._lock:
            return self.answers[since:]

    def by_name(self) -> dict[str, tuple[float, str]]:
        """By name: when its last answer arrived, and its text (for benches that run the fakes in-process)."""
        return {name: (at, text) for name, at, text in self.answered()}

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path == "/_opened":
            return 200, {"Content-Type": "application/json"}, json.dumps([c.at for c in self.of("views.open")]).encode()
        if path == "/_collect":
            gc.collect()
            return 200, {"Content-Type": "application/json"}, b"{}"
        if path.startswith("/_answers"):
            since = int(parse_qs(urlsplit(path).query).get("since", ["0"])[0])
            new = [(name, at, text[:300]) for name, at, text in self.answered(since)]
            return 200, {"Content-Type": "application/json"}, json.dumps(new).encode()
        if path.startswith("/response/"):
            arrived = time.monotonic()
            text = json.dumps(json.loads(body or b"{}"))[:2000]
            with self._lock:
                self.answers.append((path.removeprefix("/response/"), arrived, text))
                # Not kept as calls: a long run would hold every answer twice.
            return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
        return super()._handle(method, path, headers, body)


def fakes(entry_points: int = 1) -> None:
    # Slack and the Agora that answers at once on one thread each (bench.lean_http: the threaded
    # server cost the apps that call them CPU on the shared cores); the slow Agora keeps a thread
    # per connection, since its GETs wait 2.5 s.
    slack = TimedSlack(BOT_TOKEN, LeanServer).start()
    instant = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET, LeanServer).start()
    slow = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start()
    slow.get_delay = 2.5
    slow.put(APP_ID, "live", "na", LIVE_CONFIG)
    for i in range(entry_points):
        for region in ("cn", "ap", "na", "eu"):
            instant.put(APP_ID, "live" if i == 0 else f"ep{i:03}", region, LIVE_CONFIG)
    # A long run would otherwise keep every request the emulator saw.
    instant.received = _Discard()
    # The fakes stand for Slack's and Agora's servers: a collection here (40-60 ms) stalled whichever
    # app's batch was under way and made its p99. They collect when the client says, between batches.
    gc.freeze()
    gc.disable()
    print(json.dumps({"slack": slack.api_url, "agora": instant.url, "slow_agora": slow.url}), flush=True)
    threading.Event().wait()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, _item: Any) -> None:
        pass


def bare(port: int, slack_api_url: str) -> None:
    """A Bolt app that only acks: the floor of what an ack can cost."""
    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack_api_url), signing_secret=SIGNING_SECRET)

    @app.command("/recording")
    def ack_only(ack: Any) -> None:
        ack()

    serve(SlackRequestHandler(app), host="127.0.0.1", port=port, threads=16, _quiet=True)


def plain(port: int, slack_api_url: str, agora_url: str) -> None:
    """recbot's `get live na` as a plain Bolt app, the way Bolt's docs write one:
    `App(token, signing_secret)`, `@app.command`, `ack()`, a signed `requests.get`,
    `respond(...)`, `app.start()`. Its client points at the Slack fake (App would
    otherwise call slack.com's auth.test); everything else is as written in the docs."""
    app = App(
        token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        client=WebClient(token=BOT_TOKEN, base_url=slack_api_url),
    )
    host = urlsplit(agora_url).netloc

    def signed_headers(path: str) -> dict[str, str]:
        date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        digest = "SHA-256=" + base64.b64encode(hashlib.sha256(b"").digest()).decode()
        signing = f"host: {host}\ndate: {date}\nGET {path} HTTP/1.1\ndigest: {digest}"
        mac = hmac.new(CUSTOMER_SECRET.encode(), signing.encode(), hashlib.sha256).digest()
        signature = base64.b64encode(mac).decode()
        return {
            "host": host,
            "date": date,
            "digest": digest,
            "authorization": f'hmac username="{CUSTOMER_ID}", algorithm="hmac-sha256", '
            f'headers="host date request-line digest", signature="{signature}"',
        }

    @app.command("/recording")
    def recording(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack()
        _verb, entry_point, region = (command.get("text") or "get live na").split()[:3]
        path = f"/v1/projects/{APP_ID}/fls/entry_points/{entry_point}/settings/record/custom/regions/{region}"
        config = requests.get(agora_url + path, headers=signed_headers(path), timeout=10).json()
        storage = config.get("storageConfig") or {}
        respond(
            f"{entry_point} ({region}): MP4 {config.get('mp4Config')}, HLS {config.get('hlsConfig')}, "
            f"bucket {storage.get('bucket')}"
        )

    # http.server's listen backlog of 5 drops connections at concurrency 10, and each drop
    # costs the client a 1 s SYN retry: that measures the kernel, not the app, so it is raised.
    http.server.HTTPServer.request_queue_size = 128
    app.start(port=port, http_server_logger_enabled=False)


if __name__ == "__main__":
    if sys.argv[1] == "fakes":
        fakes(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    elif sys.argv[1] == "bare":
        bare(int(sys.argv[2]), sys.argv[3])
    else:
        plain(int(sys.argv[2]), sys.argv[3], sys.argv[4])
