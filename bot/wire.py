"""HTTP/1.1 to one origin on kept connections, without a proxy: how recbot's own calls (Agora's
API, Slack's response_url) go when no proxy is set for the origin (bot/transport.py routes them).

Why not http.client under urllib3: it reads every answer's headers with the email package, and
urllib3 around it sets the socket's timeout twice per call. Each socket call lets go of the GIL,
and under load every let-go queues the call behind the other threads. On a `get` at concurrency
10 that was 0.7 ms of recbot's 2.1 ms of CPU per command (issue 17). Here a call is a poll of the
kept connection (has the server closed it?), one send and, as a rule, one receive.

What is read is what RFC 9112 allows: a status line and header fields (1xx answers skipped; bare
LFs taken for line ends), then a body of Content-Length, chunked, or up to the close, decoded
from gzip or deflate if a server used one unasked (as urllib3 does). Failures are urllib3's
exception classes, as on the proxied route, so that callers tell a timeout from a failed
connection one way."""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError, SSLError

MAX_HEAD_BYTES = 64 * 1024  # a status line and its header fields, as http.client allows
MAX_BODY_BYTES = 64 * 1024 * 1024  # Agora's longest answer (an app's entry points) is a few hundred KB
# Slack within which the socket's timeout is left as it is rather than set again (a system call).
_TIMEOUT_SLACK = 0.05

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_NOT_IN_VALUE = re.compile(r"[\x00\r\n]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits alone ("²" is a digit to str.isdigit)
_BODY_EXPECTED = frozenset({"PATCH", "POST", "PUT"})  # sent with Content-Length: 0 when empty


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read whole. `headers` is case-insensitive."""

    status: int
    reason: str
    headers: urllib3.HTTPHeaderDict
    body: bytes

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request_bytes(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The whole request. ValueError, before anything is sent, for a target or a header HTTP/1.1
    cannot carry (a line break, a character beyond Latin-1); its message quotes no value."""
    if not _TOKEN.fullmatch(method) or not target or not target.isascii() or _NOT_IN_TARGET.search(target):
        raise ValueError("the method or the request target cannot be sent")
    lines = [f"{method} {target} HTTP/1.1"]
    named = set()
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _NOT_IN_VALUE.search(value):
            raise ValueError(f"the header {name[:40]!r} cannot be sent (a line break or a NUL in it)")
        lines.append(f"{name}: {value}")
        named.add(name.lower())
    if "host" not in named:
        lines.insert(1, f"Host: {host}")
    if "accept-encoding" not in named:
        lines.append("Accept-Encoding: identity")  # a body read as it was sent, as http.client asks
    if body or method in _BODY_EXPECTED:
        lines.append(f"Content-Length: {len(body or b'')}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a header holds a character beyond Latin-1, which HTTP/1.1 cannot carry") from None
    return head + (body or b"")


class _Connection:
    """One kept connection and what it has received past the last answer (nothing, as a rule)."""

    __slots__ = ("buffer", "sock", "timeout")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()

    def closed_by_peer(self) -> bool:
        """Whether an idle connection can be read from: the server closed it, or sent what nobody
        asked for (a 408 as it hung up); either way it cannot carry a request."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()  # not select(): a descriptor past 1024 is fine
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _late(what: str, within: float) -> ReadTimeoutError:
    return ReadTimeoutError(what, None, f"the answer was not whole within {within:g} s")  # type: ignore[arg-type]


def _aborted(exc: OSError) -> ProtocolError:
    """A connection that failed within a call: the request may have arrived."""
    return ProtocolError("Connection aborted.", f"{type(exc).__name__}: {exc.strerror or 'no detail'}")


class _Exchange:
    """Reads one answer from a connection, whole by `deadline` (time.monotonic())."""

    def __init__(self, connection: _Connection, deadline: float, read_timeout: float, what: str) -> None:
        self._connection = connection
        self._buffer = connection.buffer
        self._deadline = deadline
        self._read_timeout = read_timeout
        self._what = what

    def _fill(self) -> bool:
        """Receive more into the buffer; False at the end of the connection."""
        connection = self._connection
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        if connection.timeout is None or left < connection.timeout - _TIMEOUT_SLACK:
            connection.sock.settimeout(left)
            connection.timeout = left
        try:
            chunk = connection.sock.recv(65536)
        except TimeoutError:
            raise self._late() from None
        if not chunk:
            return False
        self._buffer += chunk  # a bytearray: appending costs the chunk, not the whole answer again
        return True

    def _late(self) -> ReadTimeoutError:
        return _late(self._what, self._read_timeout)

    def _take(self, size: int, skip: int = 0) -> bytes:
        taken = bytes(self._buffer[:size])
        del self._buffer[: size + skip]
        return taken

    def _head_end(self) -> tuple[int, int]:
        """Where the header block ends and how long its end is (CRLF CRLF, or bare LFs, which
        RFC 9112 lets a recipient take for line ends); (-1, 0) while not received."""
        ends = [(at, len(mark)) for mark in (b"\r\n\r\n", b"\n\n", b"\n\r\n") if (at := self._buffer.find(mark)) >= 0]
        return min(ends) if ends else (-1, 0)

    def head(self) -> tuple[int, str, urllib3.HTTPHeaderDict, bool]:
        """The status, reason and headers of the final (non-1xx) answer, and whether it is HTTP/1.1."""
        while True:
            while (found := self._head_end())[0] < 0 or found[0] > MAX_HEAD_BYTES:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError(f"{self._what}: the answer's header is over {MAX_HEAD_BYTES} bytes")
                if not self._fill():
                    if self._buffer:
                        raise ProtocolError(f"{self._what}: the connection ended within the answer's header")
                    raise ProtocolError(
                        "Connection aborted.", ConnectionResetError(f"{self._what}: closed without an answer")
                    )
            end, mark = found
            status_line, *fields = [line.rstrip(b"\r") for line in self._take(end, mark).split(b"\n")]
            matched = _STATUS_LINE.fullmatch(status_line)
            if matched is None:
                raise ProtocolError(f"{self._what}: not an HTTP/1.x status line")
            status = int(matched[2])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the answer follows
            pairs: list[list[str]] = []
            for field in fields:
                text = field.decode("latin-1")
                if text[:1] in (" ", "\t") and pairs:  # an obsolete folded line: the last value goes on
                    pairs[-1][1] += " " + text.strip(" \t")
                    continue
                name, colon, value = text.partition(":")
                if not colon or not _TOKEN.fullmatch(name):
                    raise ProtocolError(f"{self._what}: a malformed header field in the answer")
                pairs.append([name, value.strip(" \t")])
            headers = urllib3.HTTPHeaderDict()
            for name, value in pairs:
                headers.add(name, value)
            return status, (matched[3] or b"").decode("latin-1"), headers, matched[1] == b"1"

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ProtocolError(f"{self._what}: the connection ended within the answer's body")
        return self._take(size)

    def line(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError(f"{self._what}: a line of a chunked body is over {MAX_HEAD_BYTES} bytes")
            if not self._fill():
                raise ProtocolError(f"{self._what}: the connection ended within a chunked body")
        return self._take(end, 1).rstrip(b"\r")

    def chunked(self) -> bytes:
        parts: list[bytes] = []
        size_so_far = 0
        while True:
            matched = _CHUNK_SIZE.fullmatch(self.line())
            if matched is None:
                raise ProtocolError(f"{self._what}: a malformed chunk size")
            size = int(matched[1], 16)
            if size == 0:
                while self.line():  # trailer fields, ignored, up to the empty line
                    pass
                return b"".join(parts)
            size_so_far += size
            if size_so_far > MAX_BODY_BYTES:
                raise ProtocolError(f"{self._what}: the answer is over {MAX_BODY_BYTES} bytes")
            parts.append(self.exactly(size))
            if self.line():
                raise ProtocolError(f"{self._what}: a chunk not ended by a line end")

    def to_the_end(self) -> bytes:
        while self._fill():
            if len(self._buffer) > MAX_BODY_BYTES:
                raise ProtocolError(f"{self._what}: the answer is over {MAX_BODY_BYTES} bytes")
        return self._take(len(self._buffer))


def _content_length(headers: urllib3.HTTPHeaderDict, what: str) -> int | None:
    values = {value.strip() for value in ",".join(headers.getlist("content-length")).split(",") if value.strip()}
    if not values:
        return None
    (value,) = values if len(values) == 1 else (None,)
    if value is None or not _DIGITS.fullmatch(value):
        raise ProtocolError(f"{what}: an invalid Content-Length in the answer")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise ProtocolError(f"{what}: the answer is over {MAX_BODY_BYTES} bytes")
    return length


def _decoded(body: bytes, headers: urllib3.HTTPHeaderDict, what: str) -> bytes:
    """The body as sent before a gzip or deflate coding (a server may use one, asked for none, as
    urllib3 reads it too), no larger than MAX_BODY_BYTES; other codings are left as they are."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding not in ("gzip", "x-gzip", "deflate") or not body:
        return body
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS)
    try:
        plain = decoder.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        if coding != "deflate":
            raise ProtocolError(f"{what}: a {coding} body that does not decode") from None
        plain = _raw_deflate(body, what)  # "deflate" sent without its zlib wrapper, as some servers do
    if len(plain) > MAX_BODY_BYTES:
        raise ProtocolError(f"{what}: the answer is over {MAX_BODY_BYTES} bytes decoded")
    return plain


def _raw_deflate(body: bytes, what: str) -> bytes:
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise ProtocolError(f"{what}: a deflate body that does not decode") from None


def read_answer(exchange: _Exchange, method: str, what: str) -> tuple[Answer, bool]:
    """The whole answer, and whether its connection may carry another request."""
    status, reason, headers, http11 = exchange.head()
    tokens = {token.strip().lower() for token in ",".join(headers.getlist("connection")).split(",")}
    keep = (http11 and "close" not in tokens) or (not http11 and "keep-alive" in tokens)
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif headers.get("transfer-encoding"):
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if codings[-1] == "chunked":
            body = exchange.chunked()
        else:
            body, keep = exchange.to_the_end(), False
        keep = keep and "content-length" not in headers  # both: a message smuggled past someone
    elif (length := _content_length(headers, what)) is not None:
        body = exchange.exactly(length)
    else:
        body, keep = exchange.to_the_end(), False
    return Answer(status, reason, headers, _decoded(body, headers, what)), keep


class Origin:
    """Kept connections to one origin, for any number of threads; `tls` for https. A connection
    that could not be made is tried again `connect_retries` times (then nothing was sent);
    nothing else is ever sent twice. An answer must be whole within the read timeout of the
    request sent, not only come in reads that each took less."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None = None,
        pool_size: int = 64,
        connect_retries: int = 0,
    ) -> None:
        self._host, self._port = host, port
        self._tls = tls
        default_port = 443 if tls else 80
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if port == default_port else f"{shown}:{port}"
        self._what = f"{'https' if tls else 'http'}://{self.host_header}"
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._pool_size, self._connect_retries = pool_size, connect_retries
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(
        self, method: str, target: str, *, body: bytes | None, headers: dict[str, str], read_timeout: float | None
    ) -> Answer:
        """One request and its whole answer; urllib3's HTTPError (its subclasses) when none came."""
        message = request_bytes(method, target, self.host_header, headers, body)
        within = self._read_timeout if read_timeout is None else read_timeout
        connection = self._take()
        try:
            if connection.timeout != within:
                connection.sock.settimeout(within)
                connection.timeout = within
            exchange = _Exchange(connection, time.monotonic() + within, within, self._what)
            sent_whole = True
            try:
                connection.sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError):
                sent_whole = False  # the server may have answered before it stopped reading (a 413): read that
            answer, keep = read_answer(exchange, method, self._what)
        except TimeoutError:
            connection.close()
            raise _late(self._what, within) from None
        except ssl.SSLError as exc:
            connection.close()
            raise SSLError(f"{self._what}: {exc.reason or type(exc).__name__}") from None
        except OSError as exc:
            connection.close()
            raise _aborted(exc) from None
        except BaseException:
            connection.close()
            raise
        if keep and sent_whole and not connection.buffer:
            self._give_back(connection)
        else:
            connection.close()
        return answer

    def _take(self) -> _Connection:
        """An idle connection the server has not closed (looked at with one poll), or a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            try:
                usable = not connection.closed_by_peer()
            except (OSError, ValueError):
                usable = False
            if usable:
                return connection
            connection.close()

    def _give_back(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> _Connection:
        for attempt in range(self._connect_retries + 1):
            try:
                sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
            except TimeoutError:
                failure: Exception = ConnectTimeoutError(
                    f"{self._what}: no connection within {self._connect_timeout:g} s"
                )
            except OSError as exc:
                # Named by the origin where urllib3 names its connection object.
                failure = NewConnectionError(self._what, exc.strerror or type(exc).__name__)  # type: ignore[arg-type]
            else:
                break
            if attempt == self._connect_retries:
                raise failure
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the request goes in one send anyway
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)  # under the connect timeout
            except TimeoutError:
                sock.close()
                raise ConnectTimeoutError(
                    f"{self._what}: no TLS handshake within {self._connect_timeout:g} s"
                ) from None
            except (ssl.SSLError, ssl.CertificateError) as exc:
                sock.close()
                raise SSLError(f"{self._what}: {getattr(exc, 'reason', None) or type(exc).__name__}") from None
            except OSError as exc:
                sock.close()
                raise _aborted(exc) from None
        return _Connection(sock, self._connect_timeout)

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its answer is in."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
