"""Stopping waitress with a request under way: the request finishes and is answered,
and its wake-up byte goes to waitress's own pipe, never to a file or connection that
took a descriptor freed by the stop (waitress's close() frees the pipe first)."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from waitress.server import create_server

from bot.metrics_listener import stop_serving


def test_a_request_under_way_at_a_stop_writes_into_no_descriptor_the_stop_freed(caplog) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        entered.set()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    server = create_server(slow, host="127.0.0.1", port=0, threads=2)
    loop = threading.Thread(target=_run, args=(server,), daemon=True)
    loop.start()
    client = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert entered.wait(10)
    stopping = threading.Thread(target=stop_serving, args=(server,), kwargs={"cancel_pending": False, "timeout": 10})
    with caplog.at_level(logging.ERROR, logger="waitress"):
        stopping.start()
        with pytest.raises(ConnectionRefusedError):  # the stop has begun: nothing more is accepted
            _connect_until_refused(int(server.effective_port))
        pipes = [os.pipe() for _ in range(8)]  # they take the lowest descriptors free now
        release.set()
        stopping.join(10)
        assert not stopping.is_alive()
    answer = client.recv(4096)
    client.close()
    strays = b"".join(_drained(reader) for reader, _ in pipes)
    for reader, writer in pipes:
        os.close(reader)
        os.close(writer)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")
    assert strays == b""
    assert not [r for r in caplog.records if r.name.startswith("waitress")], [r.getMessage() for r in caplog.records]


def _run(server: Any) -> None:
    try:
        server.run()
    except OSError:  # its listening socket closed under its loop
        pass


def _connect_until_refused(port: int) -> None:
    for _ in range(500):
        with socket.socket() as probe:
            probe.settimeout(1)
            probe.connect(("127.0.0.1", port))  # raises once the listening socket is closed
        threading.Event().wait(0.01)


def _drained(reader: int) -> bytes:
    fcntl.fcntl(reader, fcntl.F_SETFL, fcntl.fcntl(reader, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        return os.read(reader, 4096)
    except BlockingIOError:
        return b""
