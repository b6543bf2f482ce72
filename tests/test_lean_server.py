"""bench.lean_http: the benches' fakes answer through it as through the tests' threaded server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bench.lean_http import LeanServer
from bot.models import Target
from bot.settings import Settings
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG, fast_agora
from tests.fakes.agora import AgoraEmulator
from tests.fakes.http import HANG_UP
from tests.fakes.slack import FakeSlack


def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    if path == "/hang-up":
        return HANG_UP, {}, b""
    if path == "/empty":
        return 204, {}, b""
    if path == "/raise":
        raise RuntimeError("a fake's own bug")
    return 200, {"X-Seen": headers.get("x-mark", "")}, f"{method} {path} {body.decode()}".encode()


@pytest.fixture
def served() -> Iterator[LeanServer]:
    server = LeanServer(echo).start()
    yield server
    server.stop()


def connect(server: LeanServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole answers (Content-Length bodies), in the order they came."""
    received, answers = b"", []
    while len(answers) < count:
        while (end := received.find(b"\r\n\r\n")) < 0 or len(received) < end + 4 + length_of(received[:end]):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed after {len(answers)} answers"
            received += chunk
        whole = end + 4 + length_of(received[:end])
        answers.append(received[:whole])
        received = received[whole:]
    return answers


def length_of(head: bytes) -> int:
    lines = head.split(b"\r\n")[1:]
    return next((int(v) for k, _, v in (line.partition(b":") for line in lines) if k.lower() == b"content-length"), 0)


def test_a_request_in_pieces_and_two_in_one_send_are_answered_in_order(served: LeanServer) -> None:
    with connect(served) as sock:
        sock.sendall(b"POST /one HTTP/1.1\r\nHost: x\r\nX-Mark: a\r\nContent-Length: 5\r\n\r\nhe")
        sock.settimeout(0.3)  # the server has read the piece by then: it must wait for the rest
        with pytest.raises(TimeoutError):
            sock.recv(10)
        sock.settimeout(5)
        sock.sendall(b"llo")
        first = read_answers(sock, 1)[0]
        sock.sendall(
            b"GET /two HTTP/1.1\r\nHost: x\r\n\r\nPOST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        )
        second, third = read_answers(sock, 2)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Seen: a\r\n" in first
    assert first.endswith(b"\r\n\r\nPOST /one hello")
    assert second.endswith(b"\r\n\r\nGET /two ") and third.endswith(b"\r\n\r\nPOST /three hi")


def test_connection_close_and_hang_up_end_the_connection(served: LeanServer) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_answers(sock, 1)[0].endswith(b"GET /last ")
        assert sock.recv(10) == b""
    with connect(served) as sock:
        sock.sendall(b"GET /hang-up HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(10) == b""


def test_a_204_has_neither_body_nor_length(served: LeanServer) -> None:
    with connect(served) as sock:
        sock.sendall(b"DELETE /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"GET /after "):
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
    empty, _, after = received.partition(b"\r\n\r\n")
    assert empty.startswith(b"HTTP/1.1 204 No Content") and b"content-length" not in empty.lower()
    assert after.startswith(b"HTTP/1.1 200 OK")


def test_the_fakes_serve_recbots_clients_on_it(settings: Settings) -> None:
    """What the benches run: the Agora emulator behind the real client (signed, on kept
    connections) and the Slack fake behind slack_sdk."""
    emulator = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET, LeanServer).start()
    slack = FakeSlack(BOT_TOKEN, LeanServer).start()
    try:
        emulator.put(APP_ID, "live", "na", LIVE_CONFIG)
        client = fast_agora(settings.model_copy(update={"AGORA_API_URL": emulator.url}))
        live = Target(app_id=APP_ID, entry_point="live", region="na")
        first = client.get_config(live)
        assert first == client.get_config(live)
        assert first.storage_config is not None
        assert first.storage_config.bucket == LIVE_CONFIG["storageConfig"]["bucket"]
        assert [r.method for r in emulator.received] == ["GET", "GET"]
        posted = WebClient(token=BOT_TOKEN, base_url=slack.api_url).chat_postMessage(channel="C1", text="hello")
        assert posted["ok"] and [c.params.get("text") for c in slack.of("chat.postMessage")] == ["hello"]
    finally:
        emulator.stop()
        slack.stop()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: many\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",  # a digit to str.isdigit, not to int()
        b"GET /raise HTTP/1.1\r\n\r\n",
    ],
)
def test_what_it_cannot_read_or_answer_ends_that_connection_and_no_other(
    served: LeanServer, request_bytes: bytes
) -> None:
    with connect(served) as bystander, connect(served) as sock:
        sock.sendall(request_bytes)
        assert sock.recv(10) == b""
        bystander.sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answers(bystander, 1)[0].endswith(b"GET /still ")


def test_stop_ends_its_thread_and_closes_its_connections() -> None:
    server = LeanServer(echo).start()
    with connect(server) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        read_answers(sock, 1)
        server.stop()
        assert not server._thread.is_alive()
        assert sock.recv(10) == b""  # the kept connection was closed, not left open
    with pytest.raises(OSError):
        connect(server)
