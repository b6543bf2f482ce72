"""A lean HTTP/1.1 server for the benches' fakes: one thread, one selector, kept connections.

The fakes stand for Slack's and Agora's servers, which in production run on other machines.
On the bench's two shared cores the tests' threaded server (a thread per connection,
http.server's header parsing) spent 0.80-0.88 ms of CPU per recbot command on them, a
quarter of the machine's: CPU taken from whichever app was measured, and only from the
apps that call the fakes (the ack-only app calls none). This serves the same
`handle(method, path, headers, body)` for 0.47-0.74 ms (README, Speed). Content-Length bodies only
(what recbot, requests and slack_sdk send); not for the tests, whose fakes also hang up,
trickle and wait on purpose.
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.fakes.http import HANG_UP, Handler

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class LeanServer:
    """Serves `handle(method, path, headers, body)` on 127.0.0.1, an ephemeral port, on one thread."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> LeanServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the thread ends within a tenth of a second and closes every connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        else:
            self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _events in self._selector.select(0.1):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _address = self._listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(True)  # sendall whole answers; recv only when the selector says readable
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(conn, selectors.EVENT_READ, bytearray())

    def _read(self, conn: socket.socket, buffer: bytearray) -> None:
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._close(conn)
            return
        buffer += chunk
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            request_line = lines[0].split(" ")
            length = headers.get("content-length") or "0"
            if len(request_line) != 3 or not (length.isascii() and length.isdigit()):
                self._close(conn)  # not a request this server reads: that connection ends, no other
                return
            if len(buffer) < end + 4 + int(length):
                return
            body = bytes(buffer[end + 4 : end + 4 + int(length)])
            del buffer[: end + 4 + int(length)]
            method, target, _version = request_line
            try:
                status, out_headers, out = self._handle(method, target, headers, body)
            except Exception:  # noqa: BLE001 - as http.server does: that connection ends, the server goes on
                self._close(conn)
                return
            if status == HANG_UP:
                self._close(conn)
                return
            if status in (204, 304):
                out = b""
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
            head += [f"{name}: {value}" for name, value in out_headers.items()]
            if status != 204:
                head.append(f"Content-Length: {len(out)}")
            try:
                conn.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + out)
            except OSError:
                self._close(conn)
                return
            if headers.get("connection", "").lower() == "close":
                self._close(conn)
                return

    def _close(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        conn.close()
