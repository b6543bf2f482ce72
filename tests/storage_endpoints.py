"""Storage endpoints for what moto and Azurite cannot play, each on 127.0.0.1: a
listener that counts the connections it gets and never answers, and an S3 endpoint
that answers each method as a test scripts it (a region redirect, a 500, a wrong
size), recording every request."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.probe import PROBE_BODY


class CountingListener:
    """Accepts connections and never answers (an endpoint that hangs), remembering
    each client's address, so a test can say exactly how many connections it got."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._peers: list[Any] = []
        self._held: list[socket.socket] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self._socket.accept()
            except OSError:
                return  # closed by stop()
            with self._changed:
                self._held.append(connection)
                self._peers.append(peer)
                self._changed.notify_all()

    def connections(self) -> int:
        """How many connections were made before this call. A sentinel connection is
        made and waited for: connections are accepted in order, so every earlier one
        has been counted once the sentinel is (no sleeping, no race)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sentinel:
            me = sentinel.getsockname()
            with self._changed:
                assert self._changed.wait_for(lambda: me in self._peers, timeout=10), "the sentinel was not accepted"
                count = self._peers.index(me)
                del self._peers[count]
                return count

    def stop(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


OK_ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "PUT": (200, {"ETag": '"e"'}, b""),
    "HEAD": (200, {"Content-Length": str(len(PROBE_BODY))}, b""),
    "DELETE": (204, {}, b""),
}


def s3_error(status: int, code: str, headers: dict[str, str] | None = None, **details: str) -> tuple:
    """An S3 error answer: the XML body S3 sends (details are extra elements, e.g. Region)."""
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in details.items())
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message>{extra}</Error>"
    return status, {"Content-Type": "application/xml", **(headers or {})}, body.encode()


class ScriptedS3:
    """Answers PUT, HEAD and DELETE as `answers` says (else as a bucket that works)."""

    def __init__(self, **answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = {**OK_ANSWERS, **answers}
        self.requests: list[Request] = []
        scripted = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                scripted.requests.append(Request(self.command, self.path, headers))
                status, out_headers, body = scripted.answers[self.command]
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in out_headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_PUT = do_HEAD = do_DELETE = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll `condition` until true or a generous timeout (which only catches hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def hostile_names(port: int) -> list[str]:
    """Typed names that break every vendor's rules, each an attempt to reach another host,
    path or port (the listener's own among them)."""
    return [
        f"127.0.0.1:{port}",
        f"127.0.0.1:{port}/x",
        "user@127.0.0.1",
        "127.0.0.1",
        "a/b",
        "bucket#frag",
        "bucket?x=1",
        "a%2Fb",
        "bücket",
        "b" * 1000,
        "UPPERCASE",
        "-leading",
        "a..b",
    ]


# Keys no vendor takes: letters outside ASCII (once an escaped UnicodeEncodeError), spaces, too long.
HOSTILE_KEYS = ["ключ-доступа-0001", "kéy-éé-0002", "🔑🔑🔑🔑🔑🔑🔑🔑", "key\u00a0with-nbsp", "k" * 600]
