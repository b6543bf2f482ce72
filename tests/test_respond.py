"""Answers on a response_url: the message Bolt would send, over kept connections."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_bolt.context.respond.internals import _build_message

from bot import respond
from bot.respond import PooledRespond, ResponsePool, _message
from bot.transport import Transport
from tests.fakes.http import CROWDED_CONNECT_TIMEOUT, crowded


class CountingSlack:
    """A response_url endpoint on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self, *, serving: bool = True) -> None:
        self.connections = 0
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                outer.connections += 1
                return super().get_request()

        self._server = Server(("127.0.0.1", 0), Handler)
        self.listener = self._server.socket
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/response/r1"
        if serving:
            self.serve()

    def serve(self) -> None:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def endpoint() -> Iterator[CountingSlack]:
    server = CountingSlack()
    yield server
    server.stop()


def test_answers_share_one_kept_connection(endpoint: CountingSlack) -> None:
    pool = ResponsePool()
    try:
        for n in range(5):
            answer = PooledRespond(response_url=endpoint.url, pool=pool)(f"answer {n}", response_type="ephemeral")
            assert answer.status_code == 200 and answer.body == "ok"
    finally:
        pool.close()
    assert [b["text"] for b in endpoint.bodies] == [f"answer {n}" for n in range(5)]
    assert all(b["response_type"] == "ephemeral" for b in endpoint.bodies)
    assert endpoint.connections == 1  # Bolt's own respond() opens one per answer


def test_a_whole_message_as_a_dict_is_sent_as_bolt_sends_it(endpoint: CountingSlack) -> None:
    pool = ResponsePool()
    try:
        PooledRespond(response_url=endpoint.url, pool=pool)({"text": "t", "replace_original": True, "blocks": []})
    finally:
        pool.close()
    assert endpoint.bodies == [{"text": "t", "replace_original": True}]


def test_an_answer_whose_first_connection_could_not_be_made_arrives_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack's endpoint takes no connection while the first attempt lasts (its SYNs are dropped, so
    nothing was sent): the pool tries once more, and the answer arrives once."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def timed_for_the_crowd(**settings: Any) -> Transport:  # the pool's own settings, connect_retries among them
        return Transport(**{**settings, "connect_timeout": CROWDED_CONNECT_TIMEOUT})

    monkeypatch.setattr(respond, "Transport", timed_for_the_crowd)
    slack = CountingSlack(serving=False)
    pool = ResponsePool()
    try:
        with crowded(slack.listener, slack.serve) as dropped:
            answer = PooledRespond(response_url=slack.url, pool=pool)("answer", response_type="ephemeral")
            assert dropped() >= 2  # the first attempt's SYN and its resend: that connection was never made
    finally:
        pool.close()
        slack.stop()
    assert answer.status_code == 200 and answer.body == "ok"
    assert [b["text"] for b in slack.bodies] == ["answer"] and slack.connections == 1


def test_no_response_url_is_refused_as_bolt_does() -> None:
    with pytest.raises(ValueError, match="no response_url"):
        PooledRespond(response_url=None, pool=ResponsePool())("text")


blocks = st.lists(st.fixed_dictionaries({"type": st.just("section"), "text": st.text(max_size=5)}), max_size=2)
maybe_bool = st.none() | st.booleans()


@given(
    text=st.text(max_size=20),
    blocks=st.none() | blocks,
    attachments=st.none() | blocks,
    response_type=st.none() | st.sampled_from(["ephemeral", "in_channel"]),
    replace_original=maybe_bool,
    delete_original=maybe_bool,
    unfurl_links=maybe_bool,
    unfurl_media=maybe_bool,
    thread_ts=st.none() | st.text(max_size=5),
    metadata=st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
def test_the_message_is_the_one_bolt_builds(**arguments: object) -> None:
    assert _message(**arguments) == _build_message(**arguments)  # type: ignore[arg-type]
