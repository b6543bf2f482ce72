"""Processes for the benchmark: the two fakes in one, a bare Bolt app in another.

python -m bench.processes fakes   prints the URLs, then serves until killed
python -m bench.processes bare PORT  serves a Bolt app that only acks /recording
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress import serve

from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG, SIGNING_SECRET
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack


class TimedSlack(FakeSlack):
    """The Slack fake, plus GET /_opened: when each views.open arrived (CLOCK_MONOTONIC, system-wide)."""

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path == "/_opened":
            return 200, {"Content-Type": "application/json"}, json.dumps([c.at for c in self.of("views.open")]).encode()
        return super()._handle(method, path, headers, body)


def fakes() -> None:
    slack = TimedSlack(BOT_TOKEN).start()
    instant = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start()
    slow = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start()
    slow.get_delay = 2.5
    for agora in (instant, slow):
        agora.put(APP_ID, "live", "na", LIVE_CONFIG)
    print(json.dumps({"slack": slack.api_url, "agora": instant.url, "slow_agora": slow.url}), flush=True)
    threading.Event().wait()


def bare(port: int, slack_api_url: str) -> None:
    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack_api_url), signing_secret=SIGNING_SECRET)

    @app.command("/recording")
    def ack_only(ack: Any) -> None:
        ack()

    serve(SlackRequestHandler(app), host="127.0.0.1", port=port, threads=16, _quiet=True)


if __name__ == "__main__":
    if sys.argv[1] == "fakes":
        fakes()
    else:
        bare(int(sys.argv[2]), sys.argv[3])
