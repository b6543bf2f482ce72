"""A tiny threaded HTTP server on 127.0.0.1 that the fakes build on."""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

HANG_UP = 0  # a status for `handle` to return: close the connection without an answer
Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


class Server(Protocol):
    """What a fake serves its `handle` on: LoopbackServer here, bench.lean_http's in the benches."""

    @property
    def url(self) -> str: ...
    def start(self) -> Server: ...
    def stop(self) -> None: ...


class LoopbackServer:
    """Serves `handle(method, path, headers, body)` on 127.0.0.1, an ephemeral port."""

    def __init__(self, handle: Handler) -> None:
        class _Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, out = handle(self.command, self.path, headers, body)
                if status == HANG_UP:
                    self.close_connection = True  # answer nothing: the client sees the connection drop
                    return
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                if status in (204, 304):
                    out = b""  # neither has a body (RFC 9110), nor a 204 a Content-Length
                if status != 204:
                    self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Request)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: an upstream that hangs."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed by stop()
            self._held.append(connection)

    def stop(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


class TricklingServer:
    """Answers every request on 127.0.0.1 with `answer`: its first `at_once` bytes at once, then
    one byte every `every` seconds, until the client hangs up: an upstream that never quite stops."""

    def __init__(self, answer: bytes, at_once: int, every: float = 0.05, tls: ssl.SSLContext | None = None) -> None:
        self._answer, self._at_once, self._every = answer, at_once, every
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._scheme = "https" if tls else "http"
        if tls is not None:
            self._socket = tls.wrap_socket(self._socket, server_side=True)
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"{self._scheme}://{host}:{port}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except ssl.SSLError:
                continue  # a client that did not trust the certificate
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            while True:  # request after request on a kept connection
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    received += chunk
                try:
                    connection.sendall(self._answer[: self._at_once])
                    for i in range(self._at_once, len(self._answer)):
                        if self._stopped.wait(self._every):
                            return
                        connection.sendall(self._answer[i : i + 1])
                except OSError:
                    return

    def stop(self) -> None:
        self._stopped.set()
        self._socket.close()


# A connect timeout for calls to a `crowded` listener. Linux sends a connection's SYN at once and
# again a second later, and not again within two seconds (linear resends or exponential): an
# attempt with this timeout sends two SYNs, and one made again after it has time for both.
CROWDED_CONNECT_TIMEOUT = 1.5
SO_MEMINFO = 55  # Linux: a socket's nine memory counters; SK_MEMINFO_DROPS, the last, what it dropped


@contextmanager
def crowded(
    listener: socket.socket, serve: Callable[[], object], *, until_dropped: int = 2
) -> Iterator[Callable[[], int]]:
    """Keeps the accept queue of `listener` (listening on 127.0.0.1, nothing accepting yet) full until
    Linux has dropped `until_dropped` SYNs of connections to it, the two of a first attempt unless told:
    no connection can be made meanwhile, and an attempt times out before a byte of its request is sent.
    Then it makes room and calls `serve()`, which accepts from then on. Yields the count of SYNs dropped."""
    listener.listen(0)  # Linux queues backlog + 1 connections: one, the filler's
    filler = socket.create_connection(listener.getsockname()[:2])
    if not select.select([listener], [], [], 5)[0]:
        filler.close()
        raise RuntimeError("the filler's connection never reached the accept queue")

    def dropped() -> int:
        return struct.unpack("9I", listener.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * 9))[8]

    leaving = threading.Event()

    def make_room() -> None:
        while dropped() < until_dropped and not leaving.wait(0.005):
            pass
        connection, _ = listener.accept()
        connection.close()
        filler.close()
        serve()

    thread = threading.Thread(target=make_room, daemon=True)
    thread.start()
    try:
        yield dropped
    finally:
        leaving.set()
        thread.join()
