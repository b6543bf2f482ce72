"""bot/wire.py, recbot's HTTP/1.1 on kept connections: every way an answer may be framed is read
whole and nothing past it; a connection is kept only when its answer says it may be; a request
HTTP/1.1 cannot carry is refused before anything is sent. Against scripted servers on 127.0.0.1,
and (the framing, for all inputs) against a socket that hands out the answer in given pieces."""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from bot.transport import Transport, TransportError, timed_out, tls_context
from bot.wire import MAX_HEAD_BYTES, Answer, Origin, _Connection, _Exchange, read_answer, request_bytes
from tests.fakes.http import LoopbackServer, TricklingServer


class ScriptedServer:
    """On 127.0.0.1: reads each request whole (head and Content-Length body), answers it with the
    next of `answers`; `close_after` hangs up after that many answers on a connection."""

    def __init__(self, answers: list[bytes], close_after: int | None = None) -> None:
        self.answers = answers
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def origin(self, **kwargs: float) -> Origin:
        return Origin(
            "127.0.0.1",
            self.port,
            connect_timeout=kwargs.get("connect", 2.0),
            read_timeout=kwargs.get("read", 2.0),
        )

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            self._answer(connection)
        except OSError:
            pass  # stopped, or the client hung up

    def _answer(self, connection: socket.socket) -> None:
        answered = 0
        for request in self._each_request(connection):
            self.requests.append(request)
            self._reply(connection)
            answered += 1
            if self.close_after is not None and answered >= self.close_after:
                connection.close()
                return

    def _reply(self, connection: socket.socket) -> None:
        connection.sendall(self.answers[min(len(self.requests), len(self.answers)) - 1])

    @staticmethod
    def _each_request(connection: socket.socket) -> Iterator[bytes]:
        """Each request as it arrives whole (its head, and a body of its Content-Length)."""
        received = b""
        while True:
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            head, _, received = received.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
            while len(received) < length:
                received += connection.recv(65536)
            yield head + b"\r\n\r\n" + received[:length]
            received = received[length:]

    def stop(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()


def serve(servers: list[ScriptedServer], *answers: bytes, close_after: int | None = None) -> ScriptedServer:
    server = ScriptedServer(list(answers), close_after)
    servers.append(server)
    return server


def send_each(server: ScriptedServer, count: int, method: str = "GET", body: bytes | None = None) -> list[Answer]:
    """`count` calls to `server` on one Origin, closed after."""
    origin = server.origin()
    try:
        return [origin.send(method, "/x", body=body, headers={}, read_timeout=None) for _ in range(count)]
    finally:
        origin.close()


def failure(server: ScriptedServer, **timeouts: float) -> TransportError:
    """What one call to `server` raises (it must raise)."""
    origin = server.origin(**timeouts)
    try:
        with pytest.raises(TransportError) as raised:
            origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
    finally:
        origin.close()
    return raised.value


OK_BODY = b'{"ok": true}'
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY)


def test_answers_of_content_length_keep_their_connection(scripted: list[ScriptedServer]) -> None:
    server = serve(scripted, OK)
    origin = server.origin()
    try:
        answers = [origin.send("GET", f"/n/{n}", body=None, headers={}, read_timeout=None) for n in range(3)]
    finally:
        origin.close()
    assert [a.json() for a in answers] == [{"ok": True}] * 3
    assert server.connections == 1
    assert [r.split(b" ")[1] for r in server.requests] == [b"/n/0", b"/n/1", b"/n/2"]


def test_the_request_names_the_origin_asks_for_no_encoding_and_carries_its_length(
    scripted: list[ScriptedServer],
) -> None:
    server = serve(scripted, OK)
    origin = server.origin()
    try:
        origin.send("PATCH", "/x?y=1", body=b'{"a":1}', headers={"X-Test": "v"}, read_timeout=None)
        origin.send("PUT", "/empty", body=None, headers={"host": "signed.example"}, read_timeout=None)
    finally:
        origin.close()
    first, second = server.requests
    assert first.startswith(b"PATCH /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert b"\r\nX-Test: v\r\n" in first and b"\r\nAccept-Encoding: identity\r\n" in first
    assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')
    # A signed request's own host header is the one sent; a PUT without a body says it has none.
    assert b"\r\nhost: signed.example\r\n" in second and b"Host: 127.0.0.1" not in second
    assert b"\r\nContent-Length: 0\r\n" in second


def test_a_chunked_answer_is_read_whole_and_its_connection_kept(scripted: list[ScriptedServer]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value\r\n{"ok"\r\n8\r\n: true}\n\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = serve(scripted, chunked)
    answers = send_each(server, 2)
    assert [a.body for a in answers] == [b'{"ok": true}\n'] * 2
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\n" + OK_BODY,
        b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n" + OK_BODY,
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n" + OK_BODY + b"HTTP/1.1 200 OK\r\n",  # more than one answer
        b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 12\r\n\r\n" + OK_BODY,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 12\r\n\r\nc\r\n"
        + OK_BODY
        + b"\r\n0\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0", "bytes-past-the-answer", "Close-capitalised", "chunked-and-content-length"],
)
def test_a_connection_is_not_used_again_when_its_answer_says_so(scripted: list[ScriptedServer], answer: bytes) -> None:
    server = serve(scripted, answer)
    bodies = [a.body for a in send_each(server, 2)]
    assert bodies == [OK_BODY, OK_BODY]
    assert server.connections == 2


def test_an_answer_without_a_length_ends_with_its_connection(scripted: list[ScriptedServer]) -> None:
    server = serve(scripted, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", close_after=1)
    answers = send_each(server, 2)
    assert [a.text for a in answers] == ["all of it"] * 2
    assert server.connections == 2


def test_interim_answers_are_passed_over_and_204_has_no_body(scripted: list[ScriptedServer]) -> None:
    server = serve(
        scripted,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK,
        b"HTTP/1.1 204 No Content\r\n\r\n",
        OK,
    )
    answers = send_each(server, 3, "POST", b"{}")
    assert [(a.status, a.body) for a in answers] == [(200, OK_BODY), (204, b""), (200, OK_BODY)]
    assert server.connections == 1


def test_a_kept_connection_the_server_closed_is_replaced_before_a_request_goes_on_it(
    scripted: list[ScriptedServer],
) -> None:
    """Closed without a `Connection: close` (an idle timeout): looked at before it is used again."""
    server = serve(scripted, OK, close_after=1)
    origin = server.origin()
    try:
        first = origin.send("GET", "/1", body=None, headers={}, read_timeout=None)
        time.sleep(0.1)  # its end has arrived
        second = origin.send("POST", "/2", body=b"{}", headers={}, read_timeout=None)
    finally:
        origin.close()
    assert first.body == second.body == OK_BODY
    assert server.connections == 2 and len(server.requests) == 2


class UnaskedAnswerServer(ScriptedServer):
    """Answers every request, then, a moment later, sends one more answer nobody asked for."""

    def _reply(self, connection: socket.socket) -> None:
        body = b'{"n": %d}' % len(self.requests)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.05)
        connection.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")


def test_an_answer_nobody_asked_for_is_never_taken_for_the_next_calls(scripted: list[ScriptedServer]) -> None:
    server = UnaskedAnswerServer([])
    scripted.append(server)
    origin = server.origin()
    try:
        answers = []
        for n in range(3):
            answers.append(origin.send("GET", f"/{n}", body=None, headers={}, read_timeout=None))
            time.sleep(0.15)  # the unasked answer has arrived
    finally:
        origin.close()
    assert [(a.status, a.json()) for a in answers] == [(200, {"n": 1}), (200, {"n": 2}), (200, {"n": 3})]
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nok".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 4401 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    ],
    ids=[
        "two-lengths",
        "negative-length",
        "not-http",
        "no-colon",
        "bad-chunk",
        "huge-head",
        "cut-short",
        "superscript-digit",
        "4401-digits",
        "not-gzip",
        "over-the-cap",
        "space-before-colon",
        "chunk-without-line-end",
    ],
)
def test_a_malformed_answer_fails_the_call_as_no_timeout(scripted: list[ScriptedServer], answer: bytes) -> None:
    server = serve(scripted, answer, close_after=1)
    error = failure(server)
    assert not timed_out(error)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "line\nbreak"), ("X-A", "cr\rhere"), ("X-A", "nul\x00"), ("X A", "v"), ("X-A", "\u2713")],
)
def test_a_header_http_cannot_carry_is_refused_and_its_value_not_quoted(name: str, value: str) -> None:
    with pytest.raises(ValueError) as raised:
        request_bytes("GET", "/x", "h", {name: value}, None)
    assert value not in str(raised.value)


@pytest.mark.parametrize("target", ["/a b", "/a\r\nX: y", "", "/\x7f"])
def test_a_target_http_cannot_carry_is_refused(target: str) -> None:
    with pytest.raises(ValueError):
        request_bytes("GET", target, "h", {}, None)


FIELD_NAME = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1
)
FIELD_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"))


@given(st.dictionaries(FIELD_NAME, FIELD_VALUE, max_size=6), st.binary(max_size=200))
def test_every_sendable_header_goes_out_as_given(headers: dict[str, str], body: bytes) -> None:
    message = request_bytes("POST", "/p", "origin.example", headers, body)
    head, _, sent_body = message.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    sent = [tuple(line.split(": ", 1)) for line in lines]
    assert all((name, value) in sent for name, value in headers.items())
    assert sent_body == body


class PiecesSocket:
    """What `_Exchange` reads from: the given pieces, one per receive, then the end."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def recv(self, size: int) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def settimeout(self, timeout: float) -> None:
        pass


def cut(data: bytes, at: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(p % (len(data) + 1) for p in at)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read(pieces: list[bytes]) -> tuple[bytes, bool, bytes]:
    connection = _Connection(PiecesSocket(pieces), 10.0)  # type: ignore[arg-type]
    answer, keep = read_answer(_Exchange(connection, time.monotonic() + 10, 10.0, "test"), "GET", "test")
    return answer.body, keep, connection.buffer


@given(
    st.binary(max_size=3000), st.lists(st.integers(min_value=1, max_value=400), max_size=12), st.lists(st.integers())
)
def test_a_chunked_body_is_read_whole_however_it_is_chunked_and_cut(
    body: bytes, sizes: list[int], cuts: list[int]
) -> None:
    chunks, rest = [], body
    for size in sizes:
        chunks.append(rest[:size])
        rest = rest[size:]
    chunks = [c for c in [*chunks, rest] if c]
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    assert read(cut(wire, cuts)) == (body, True, b"")


@given(st.binary(max_size=3000), st.lists(st.integers()))
def test_a_body_of_content_length_is_read_exactly_however_it_is_cut(body: bytes, cuts: list[int]) -> None:
    """Bytes past it stay unread or in the buffer (so that the connection is not used again)."""
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    got, keep, past = read(cut(wire + b"NEXT", cuts))
    assert (got, keep) == (body, True) and b"NEXT".startswith(past)


def test_bare_line_feeds_end_lines_as_rfc_9112_lets_a_recipient_read_them(scripted: list[ScriptedServer]) -> None:
    server = serve(
        scripted,
        b"HTTP/1.1 200 OK\nContent-Length: 12\n\n" + OK_BODY,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n",
    )
    answers = send_each(server, 2)
    assert [a.body for a in answers] == [OK_BODY, b"hello"]


@pytest.mark.parametrize(
    "encode",
    [
        lambda data: ("gzip", gzip.compress(data)),
        lambda data: ("deflate", zlib.compress(data)),
        lambda data: ("deflate", zlib.compress(data)[2:-4]),  # without the zlib wrapper, as some servers send it
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
def test_a_coded_body_sent_unasked_is_read_as_it_was_before_the_coding(
    scripted: list[ScriptedServer], encode: Callable[[bytes], tuple[str, bytes]]
) -> None:
    coding, coded = encode(OK_BODY)
    server = serve(
        scripted,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (coding.encode(), len(coded), coded),
    )
    (answer,) = send_each(server, 1)
    assert answer.json() == {"ok": True}


def test_a_coded_body_that_would_decode_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.wire.MAX_BODY_BYTES", 1000)

    def gzipped(size: int) -> bytes:
        coded = gzip.compress(b"x" * size)
        return b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(coded), coded)

    assert read([gzipped(1000)])[0] == b"x" * 1000
    with pytest.raises(TransportError) as raised:
        read([gzipped(1001)])
    assert not timed_out(raised.value)


def test_callers_host_and_accept_encoding_of_any_case_are_not_doubled() -> None:
    head = request_bytes("GET", "/x", "origin.example", {"Host": "signed.example", "ACCEPT-ENCODING": "gzip"}, None)
    text = head.decode("latin-1").lower()
    assert text.count("\r\nhost:") == 1 and text.count("\r\naccept-encoding:") == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_an_empty_body_that_is_expected_is_sent_as_content_length_0(method: str) -> None:
    assert b"\r\nContent-Length: 0\r\n" in request_bytes(method, "/x", "h", {}, None)


@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD"])
def test_a_request_without_a_body_says_no_length(method: str) -> None:
    assert b"content-length" not in request_bytes(method, "/x", "h", {}, None).lower()


@pytest.mark.parametrize("method", ["GET /", "GET\r\n", "G(T"])
def test_a_method_http_cannot_carry_is_refused(method: str) -> None:
    with pytest.raises(ValueError):
        request_bytes(method, "/x", "h", {}, None)


@pytest.mark.parametrize(
    ("host", "port", "tls", "expected"),
    [
        ("a.example", 80, False, "a.example"),
        ("a.example", 443, True, "a.example"),
        ("a.example", 8443, True, "a.example:8443"),
        ("::1", 8080, False, "[::1]:8080"),
        ("::1", 80, False, "[::1]"),
    ],
)
def test_the_host_header_names_the_port_only_when_not_the_default(host, port, tls, expected) -> None:
    origin = Origin(host, port, connect_timeout=1, read_timeout=1, tls=ssl.create_default_context() if tls else None)
    assert origin.host_header == expected


def test_an_http_1_0_answer_saying_keep_alive_keeps_its_connection(scripted) -> None:
    server = serve(scripted, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 12\r\n\r\n" + OK_BODY)
    bodies = [a.body for a in send_each(server, 2)]
    assert bodies == [OK_BODY, OK_BODY] and server.connections == 1


def test_a_body_not_chunked_but_transfer_coded_ends_with_its_connection(scripted) -> None:
    server = serve(scripted, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nall of it", close_after=1)
    answers = send_each(server, 2)
    assert [a.body for a in answers] == [b"all of it"] * 2 and server.connections == 2


def test_a_304_and_an_answer_to_head_have_no_body_and_keep_their_connection(scripted) -> None:
    server = serve(
        scripted,
        b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n',
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",  # HEAD: the length of the body a GET would get
        OK,
    )
    origin = server.origin(read=1.0)
    try:
        first = origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
        second = origin.send("HEAD", "/x", body=None, headers={}, read_timeout=None)
        third = origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
    finally:
        origin.close()
    assert [(a.status, a.body) for a in (first, second, third)] == [(304, b""), (200, b""), (200, OK_BODY)]
    assert server.connections == 1


def test_an_obsolete_folded_header_line_continues_its_value() -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Long: one\r\n \t two\r\nContent-Length: 2\r\n\r\nok"
    connection = _Connection(PiecesSocket([answer]), 10.0)  # type: ignore[arg-type]
    got, _ = read_answer(_Exchange(connection, time.monotonic() + 10, 10.0, "t"), "GET", "t")
    assert got.headers["x-long"] == "one two" and got.body == b"ok"


def test_a_huge_head_on_a_connection_left_open_fails_at_once_as_no_timeout(scripted) -> None:
    server = serve(scripted, b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10))  # never ends, never closes
    started = time.monotonic()
    assert not timed_out(failure(server, read=3.0)) and time.monotonic() - started < 2.0


def test_a_content_length_over_the_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setattr("bot.wire.MAX_BODY_BYTES", 10)
    with pytest.raises(TransportError):
        read([b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", b"x" * 11])


class RecordingSocket(PiecesSocket):
    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__(pieces)
        self.timeouts: list[float] = []

    def settimeout(self, timeout: float) -> None:
        self.timeouts.append(timeout)


def test_each_receive_waits_no_longer_than_the_time_left() -> None:
    sock = RecordingSocket([OK])
    connection = _Connection(sock, 10.0)  # type: ignore[arg-type]
    read_answer(_Exchange(connection, time.monotonic() + 0.5, 10.0, "t"), "GET", "t")
    assert sock.timeouts and 0 < sock.timeouts[-1] <= 0.5


def test_an_answer_begun_past_its_deadline_is_a_timeout() -> None:
    connection = _Connection(RecordingSocket([OK]), 10.0)  # type: ignore[arg-type]
    with pytest.raises(TransportError) as raised:
        read_answer(_Exchange(connection, time.monotonic() - 0.5, 1.0, "t"), "GET", "t")
    assert timed_out(raised.value)


def delayed_server(delay: float, answer: bytes = OK) -> tuple[socket.socket, list[socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def run() -> None:
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            held.append(c)

            def each(c: socket.socket = c) -> None:
                try:
                    while c.recv(65536):
                        time.sleep(delay)
                        c.sendall(answer)
                except OSError:
                    pass

            threading.Thread(target=each, daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return listener, held


def test_an_answer_slower_than_the_connect_timeout_but_within_the_read_timeout_is_read() -> None:
    listener, held = delayed_server(0.6)
    origin = Origin("127.0.0.1", listener.getsockname()[1], connect_timeout=0.3, read_timeout=3.0)
    try:
        assert origin.send("GET", "/x", body=None, headers={}, read_timeout=None).body == OK_BODY
        # a call with a short time of its own, then one with the origin's: its socket is not left short
        origin.send("GET", "/x", body=None, headers={}, read_timeout=2.0)
        assert origin.send("GET", "/x", body=None, headers={}, read_timeout=None).body == OK_BODY
    finally:
        origin.close()
        listener.close()
        for c in held:
            c.close()


def test_the_whole_answer_deadline_is_the_read_timeout_not_more() -> None:
    """A byte every 0.1 s from the start: with read 1.0 the call ends at 1.0 s, not at twice that."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    trickling = TricklingServer(answer, 0, every=0.1)
    origin = Origin("127.0.0.1", int(trickling.url.rsplit(":", 1)[1]), connect_timeout=1.0, read_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as raised:
            origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
        took = time.monotonic() - started
    finally:
        origin.close()
        trickling.stop()
    assert timed_out(raised.value) and 1.0 <= took < 1.8


def test_a_request_the_server_does_not_read_in_time_is_a_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (in the kernel), never reads
    origin = Origin("127.0.0.1", listener.getsockname()[1], connect_timeout=1.0, read_timeout=0.5)
    try:
        with pytest.raises(TransportError) as raised:
            origin.send("POST", "/x", body=b"x" * (64 * 1024 * 1024), headers={}, read_timeout=None)
    finally:
        origin.close()
        listener.close()
    assert timed_out(raised.value)


def failure_at(listener: socket.socket, **options: Any) -> TransportError:
    """What one GET to whatever listens on `listener` raises (it must raise); both closed after."""
    origin = Origin("127.0.0.1", listener.getsockname()[1], **{"connect_timeout": 1.0, "read_timeout": 2.0, **options})
    try:
        with pytest.raises(TransportError) as raised:
            origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
    finally:
        origin.close()
        listener.close()
    return raised.value


def test_a_connection_reset_within_a_call_is_no_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def reset() -> None:
        c, _ = listener.accept()
        c.recv(65536)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # an RST, not a FIN

    threading.Thread(target=reset, daemon=True).start()
    assert not timed_out(failure_at(listener))


def test_an_early_answer_to_a_request_not_read_whole_is_read() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def refuse() -> None:
        c, _ = listener.accept()
        received = b""
        while b"\r\n\r\n" not in received:
            received += c.recv(65536)
        c.sendall(b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        c.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        c.close()  # the unread body: an RST

    threading.Thread(target=refuse, daemon=True).start()
    origin = Origin("127.0.0.1", listener.getsockname()[1], connect_timeout=1.0, read_timeout=3.0)
    try:
        answer = origin.send("POST", "/x", body=b"x" * (32 * 1024 * 1024), headers={}, read_timeout=None)
    finally:
        origin.close()
        listener.close()
    assert answer.status == 413


def test_a_tls_handshake_that_never_comes_is_a_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # TCP only: never a ServerHello
    assert timed_out(failure_at(listener, connect_timeout=0.3, tls=ssl.create_default_context()))


def test_close_closes_the_idle_connections_and_one_in_use_when_its_answer_is_in(scripted) -> None:
    server = serve(scripted, OK)
    origin = server.origin()
    origin.send("GET", "/x", body=None, headers={}, read_timeout=None)
    idle = origin._idle[0].sock
    origin.close()
    assert idle.fileno() == -1
    origin.send("GET", "/x", body=None, headers={}, read_timeout=None)  # after close: not kept
    assert origin._idle == []


def test_no_more_connections_are_kept_than_the_pool_holds(scripted) -> None:
    server = serve(scripted, OK)
    origin = Origin("127.0.0.1", server.port, connect_timeout=2.0, read_timeout=2.0, pool_size=1)
    first, second = origin._take(), origin._take()
    try:
        origin._give_back(first)
        origin._give_back(second)
        assert origin._idle == [first] and second.sock.fileno() == -1
    finally:
        origin.close()


def test_tls_context_checks_names_and_wants_tls_1_2() -> None:
    context = tls_context()
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_direct_routes_go_to_the_schemes_port_and_carry_the_transports_settings(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = Transport(connect_timeout=1.0, read_timeout=2.0, pool_size=3)
    try:
        https, http = client._route("https", "agora.example"), client._route("http", "agora.example")
        assert (https._port, http._port, https._pool_size) == (443, 80, 3)
    finally:
        client.close()


def test_an_origin_of_another_scheme_is_not_called(scripted, monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "FTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = serve(scripted, OK)
    client = Transport(connect_timeout=1.0, read_timeout=2.0)
    try:
        with pytest.raises(urllib3.exceptions.LocationValueError):
            client.send("GET", f"ftp://127.0.0.1:{server.port}/x", headers={})
    finally:
        client.close()
    assert server.connections == 0


def test_closing_a_transport_closes_its_kept_connections(scripted, monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = serve(scripted, OK)
    client = Transport(connect_timeout=1.0, read_timeout=2.0)
    client.send("GET", f"http://127.0.0.1:{server.port}/x", headers={})
    kept = client._routes[f"http://127.0.0.1:{server.port}"]._idle[0].sock
    client.close()
    assert kept.fileno() == -1


@pytest.mark.parametrize("target", ["/caf\u00e9", "/\u2713"])
def test_a_target_beyond_ascii_is_refused_before_anything_is_sent(target: str) -> None:
    with pytest.raises(ValueError, match="request target"):
        request_bytes("GET", target, "h", {}, None)


def test_many_threads_over_a_small_pool_each_get_their_own_answer_round_after_round() -> None:
    """The pool's race (take, give back, close the one past its size) run many times: sixteen
    threads on a pool of four, twenty rounds, every answer the one its own request asked for."""

    def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, json.dumps({"path": path, "body": body.decode()}).encode()

    echoing = LoopbackServer(echo).start()
    port = int(echoing.url.rsplit(":", 1)[1])
    origin = Origin("127.0.0.1", port, connect_timeout=2.0, read_timeout=5.0, pool_size=4)
    wrong: list[tuple[int, int, object]] = []

    def call(round_number: int, n: int) -> None:
        asked = f"{round_number}-{n}"
        got = origin.send("POST", f"/n/{asked}", body=asked.encode(), headers={}, read_timeout=None).json()
        if got != {"path": f"/n/{asked}", "body": asked}:
            wrong.append((round_number, n, got))

    try:
        for round_number in range(20):
            threads = [threading.Thread(target=call, args=(round_number, n)) for n in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(origin._idle) <= 4
    finally:
        origin.close()
        echoing.stop()
    assert wrong == []
    assert origin._idle == []
