"""The metrics listener of recbot started as a real process (`python -m recbot`), in HTTP mode
and in Socket Mode: /metrics with the build's mode, /readyz following the WebSocket, a taken
RECBOT_METRICS_ADDR refused before anything is created, `off` serving nothing; and doctor's
check of the address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from bot.metrics import Metrics
from bot.metrics_listener import MetricsListener
from bot.server import StartupError
from recbot.serve import serve_http, start_metrics
from tests.fakes.slack import FakeSlack
from tests.metrics_helpers import Scrape, scrape
from tests.storage_servers import free_port
from tests.test_doctor import run_doctor
from tests.test_socket_mode import APP_TOKEN, SocketSlack
from tests.test_startup import refused

ROOT = Path(__file__).resolve().parent.parent
METRICS_FIX = "set RECBOT_METRICS_ADDR to another IP:port, or to off"


@pytest.fixture
def env(settings_overrides: dict[str, Any], slack: FakeSlack) -> dict[str, str]:
    slack.app_token = APP_TOKEN
    return {**{k: str(v) for k, v in settings_overrides.items()}, "SLACK_APP_TOKEN": APP_TOKEN}


# recbot as `python -m recbot` runs it, sending itself SIGNAL (sys.argv[1]) at one moment (argv[2]):
# - "--starting": once its metrics listener is up, before its background work has started (where a
#   supervisor's probe of /readyz can come first), and again while it stops (a supervisor that
#   repeats itself);
# - "--in-waitress": while waitress's own loop handles a request's bytes (its handlers catch what
#   they run into, so a stop raised there would be lost);
# - "--server-fails": waitress's loop ends with an error instead, and the signal comes while it stops.
SIGNALLED = """
import json, os, signal, sys
import recbot.serve
import waitress.channel
from recbot.__main__ import main

SIGNAL = signal.Signals[sys.argv[1]]
WHEN = sys.argv[2]
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal: a run under nohup would inherit it ignored

def signal_after(function):
    def call(*args, **kwargs):
        result = function(*args, **kwargs)
        if WHEN == "--starting":
            os.kill(os.getpid(), SIGNAL)
        return result
    return call

def signal_before(function):
    def call(app, services, *args, **kwargs):
        os.kill(os.getpid(), SIGNAL)
        print("readiness while stopping:", json.dumps(services.readiness()), file=sys.stderr)
        return function(app, services, *args, **kwargs)
    return call

def failing_loop(server, stop):
    raise RuntimeError("the server's loop broke")

handle_read = waitress.channel.HTTPChannel.handle_read
def handle_read_signalled(channel):
    os.kill(os.getpid(), SIGNAL)
    return handle_read(channel)

recbot.serve.start_metrics = signal_after(recbot.serve.start_metrics)
if WHEN in ("--starting", "--server-fails"):
    recbot.serve.finish = signal_before(recbot.serve.finish)
if WHEN == "--server-fails":
    recbot.serve.serve_until = failing_loop
if WHEN == "--in-waitress":
    waitress.channel.HTTPChannel.handle_read = handle_read_signalled
sys.exit(main(sys.argv[3:]))
"""


def run_signalled(signal_name: str, how: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """SIGNALLED run to its end: its exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, signal_name, how, *args],
        cwd=cwd,
        env=process_env(env),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # it ignores SIGTERM once it is stopping: a failed test must not leave it
            process.kill()
            process.communicate()
    return process.returncode, stderr


def process_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with recbot's settings replaced by `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    return {**base, **env, "PYTHONPATH": str(ROOT)}


@contextmanager
def recbot(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """`python -m recbot ARGS` running; stopped with SIGTERM after, and it must stop cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "recbot", *args],
        cwd=cwd,
        env=process_env(env),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
        assert process.poll() is None, "recbot ended before it was stopped"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        process.stopped_stderr = stderr  # type: ignore[attr-defined]  # for what a test reads after
        assert process.returncode == 0, stderr
        assert "received signal 15; finishing in-flight work" in stderr
        assert "recbot stopped cleanly" in stderr and "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def until(process: subprocess.Popen[str], what: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`what()` once it returns something true (connection errors count as not yet); fails the test
    if the process ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            found = what()
        except requests.ConnectionError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, "recbot never got there"
        time.sleep(0.05)


def readyz(base: str, status: int) -> Callable[[], dict[str, Any] | None]:
    """/readyz's report once it answers `status`."""

    def check() -> dict[str, Any] | None:
        answer = requests.get(base + "/readyz", timeout=5)
        return answer.json() if answer.status_code == status else None

    return check


def test_http_mode_serves_metrics_on_its_own_address(env, tmp_path) -> None:
    port = free_port()
    env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{port}"
    base = f"http://127.0.0.1:{port}"
    with recbot(["--http", "--host", "127.0.0.1", "--port", str(free_port())], env, tmp_path) as process:
        found: Scrape = until(process, lambda: scrape(base + "/metrics"))
        ready = until(process, readyz(base, 200))
    assert found.total("recbot_build_info", mode="http") == 1
    assert found.total("recbot_build_info") == 1  # one series: one mode
    assert found.value("recbot_socket_mode_connected") == 0
    assert ready == {"ok": True, "database": "ok"}  # no WebSocket to wait for


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_once_metrics_answer_stops_either_mode_cleanly_and_another_while_stopping_is_noted(
    signal_name: str, env, slack: FakeSlack, tmp_path
) -> None:
    env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    number = signal.Signals[signal_name].value
    with SocketSlack() as socket_slack:
        slack.socket_url = socket_slack.url
        for args in (["--http", "--host", "127.0.0.1", "--port", str(free_port())], []):
            code, stderr = run_signalled(signal_name, "--starting", args, env, tmp_path)
            assert code == 0, stderr
            first = stderr.index(f"received signal {number}; finishing in-flight work")
            second = stderr.index(f"received signal {number}; already stopping")
            assert first < second < stderr.index("recbot stopped cleanly") and "Traceback" not in stderr
            assert 'readiness while stopping: {"ok": false, "database": "ok", "stopping": true}' in stderr


def test_a_signal_while_stopping_after_the_server_broke_does_not_cut_the_stop_short(env, tmp_path) -> None:
    env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    args = ["--http", "--host", "127.0.0.1", "--port", str(free_port())]
    code, stderr = run_signalled("SIGTERM", "--server-fails", args, env, tmp_path)
    assert code == 1, stderr  # the error is the process's end, after a complete stop
    assert "received signal 15; already stopping" in stderr and "recbot stopped cleanly" in stderr
    assert stderr.rstrip().endswith("RuntimeError: the server's loop broke")


def test_a_signal_while_waitress_handles_a_request_still_stops_recbot(env, tmp_path) -> None:
    env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SIGNALLED,
            "SIGTERM",
            "--in-waitress",
            "--http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=process_env(env),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:  # the first bytes waitress reads stop it
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            break
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "received signal 15; finishing in-flight work" in stderr and "recbot stopped cleanly" in stderr


def test_ctrl_c_before_the_start_can_stop_cleanly_is_one_line_not_a_traceback(env, tmp_path) -> None:
    program = """
import os, signal, sys
import recbot.__main__

# As in a terminal: a process started in the background (CI's, `cmd &`) inherits SIGINT ignored,
# and Python then leaves it ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupted(settings):
    os.kill(os.getpid(), signal.SIGINT)  # while Slack is asked about the bot token, the slowest part
    return checked(settings)

checked = recbot.__main__.verify_bot_token
recbot.__main__.verify_bot_token = interrupted
sys.exit(recbot.__main__.main(sys.argv[1:]))
"""
    args = ["--http", "--host", "127.0.0.1", "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=tmp_path,
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("recbot stopped while starting (Ctrl-C)")
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())  # nothing made on disk yet


LOADING_INTERRUPTED = """
import os, runpy, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see the test above)

class HalfwayThroughTheImports:
    def find_spec(self, name, path=None, target=None):
        if name == "bot.store":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, HalfwayThroughTheImports())
sys.argv = ["recbot", *sys.argv[1:]]
runpy.run_module("recbot", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_recbot_loads_is_one_line_not_a_traceback(env, tmp_path) -> None:
    program = LOADING_INTERRUPTED
    done = subprocess.run(
        [sys.executable, "-c", program, "--http", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "recbot stopped while starting (Ctrl-C): nothing was served, nothing is left half done"
    ]


def test_a_ctrl_c_the_process_was_started_ignoring_stays_ignored_while_recbot_loads(env, tmp_path) -> None:
    """Started in the background by a script (`cmd &`), SIGINT is ignored: a Ctrl-C meant for the
    foreground program must not end recbot. migrate runs on and finishes."""
    program = LOADING_INTERRUPTED.replace("signal.default_int_handler)", "signal.SIG_IGN)")
    done = subprocess.run(
        [sys.executable, "-c", program, "migrate"],
        cwd=tmp_path,
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "upgraded from" in done.stdout, done.stderr


def test_socket_mode_is_ready_while_connected_and_counts_a_reconnect(env, slack: FakeSlack, tmp_path) -> None:
    port = free_port()
    env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{port}"
    base = f"http://127.0.0.1:{port}"
    first = SocketSlack().__enter__()
    slack.socket_url = first.url
    try:
        with recbot([], env, tmp_path) as process:
            ready = until(process, readyz(base, 200))
            connected = scrape(base + "/metrics")
            first.__exit__()  # Slack's end of the WebSocket goes away, and every reconnect fails
            gone = until(process, readyz(base, 503))
            disconnected = scrape(base + "/metrics")
            with SocketSlack() as second:
                slack.socket_url = second.url  # what apps.connections.open answers from now on
                again = until(process, readyz(base, 200))
                reconnected = scrape(base + "/metrics")
    finally:
        first.__exit__()
    assert ready == again == {"ok": True, "database": "ok", "socket_mode": "connected"}
    assert gone == {"ok": False, "database": "ok", "socket_mode": "disconnected"}
    assert connected.total("recbot_build_info", mode="socket") == 1
    assert [s.value("recbot_socket_mode_connected") for s in (connected, disconnected, reconnected)] == [1, 0, 1]
    assert connected.value("recbot_socket_mode_reconnects_total") == 0
    assert reconnected.value("recbot_socket_mode_reconnects_total") == 1
    # The first connection's URL was asked for before the services existed: the reconnects' asks are counted,
    # each (the one that found nobody there too).
    asked_again = len(slack.of("apps.connections.open")) - 1
    assert asked_again >= 1
    opened = reconnected.value("recbot_slack_api_calls_total", method="apps.connections.open", outcome="ok")
    assert opened == asked_again


def test_a_taken_metrics_address_refuses_the_start_before_anything_is_created(env, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env["RECBOT_METRICS_ADDR"] = f"127.0.0.1:{port}"
        lines = refused(["--http", "--host", "127.0.0.1", "--port", str(free_port())], env, tmp_path)
        socket_lines = refused([], env, tmp_path)
    expected = f"recbot cannot start: port {port} on 127.0.0.1 is already in use: stop what uses it, or {METRICS_FIX}"
    assert lines == socket_lines == [expected]
    assert os.listdir(tmp_path) == []  # no database, no seal key


def test_off_serves_no_metrics_listener(env, tmp_path) -> None:
    env["RECBOT_METRICS_ADDR"] = "off"
    main = free_port()
    with recbot(["--http", "--host", "127.0.0.1", "--port", str(main)], env, tmp_path) as process:
        until(process, lambda: requests.get(f"http://127.0.0.1:{main}/readyz", timeout=5).ok)
        listening = listening_ports(process.pid)
    assert listening == {main}  # the Slack-facing listener alone


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (Linux: its sockets' inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing: a connection just answered, not a listener
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_doctor_checks_the_metrics_address(settings_overrides, slack, agora) -> None:
    port = free_port()
    _, checks = run_doctor({**settings_overrides, "RECBOT_METRICS_ADDR": f"127.0.0.1:{port}"})
    assert (
        checks["Metrics listener"] == f"ok: recbot will serve /metrics, /healthz and /readyz on http://127.0.0.1:{port}"
    )
    _, checks = run_doctor({**settings_overrides, "RECBOT_METRICS_ADDR": "off"})  # HTTP mode: probes stay
    assert (
        checks["Metrics listener"]
        == "ok: off (RECBOT_METRICS_ADDR=off): no /metrics; /healthz and /readyz on the Slack port"
    )
    _, checks = run_doctor(
        {**settings_overrides, "RECBOT_METRICS_ADDR": "off", "SLACK_APP_TOKEN": "xapp-1-x"}, "socket"
    )
    assert checks["Metrics listener"] == "ok: off (RECBOT_METRICS_ADDR=off): no /metrics, /healthz or /readyz"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        taken_overrides = {
            **settings_overrides,
            "RECBOT_METRICS_ADDR": f"127.0.0.1:{port}",
            "SLACK_APP_TOKEN": APP_TOKEN,
        }
        _, checks = run_doctor(taken_overrides, mode="socket")
    assert checks["Metrics listener"] == (
        f"warn: port {port} on 127.0.0.1 is already in use: stop what uses it, or {METRICS_FIX} "
        "(if recbot itself runs there, that is expected)"
    )


def test_an_address_taken_after_the_checks_refuses_with_the_metrics_fix(bot) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = bot.services.settings.model_copy(update={"RECBOT_METRICS_ADDR": ("127.0.0.1", port)})
        services = SimpleNamespace(
            metrics=Metrics(), settings=settings, health=bot.services.health, readiness=bot.services.readiness
        )
        with pytest.raises(StartupError) as refusal:
            start_metrics(services, "http")  # type: ignore[arg-type]
    assert str(refusal.value) == f"port {port} on 127.0.0.1 is already in use: stop what uses it, or {METRICS_FIX}"


def test_an_ipv6_address_gone_after_the_checks_is_named_with_its_port_told_apart(bot) -> None:
    """The documentation's range is on no machine: binding there fails as for an address removed
    between the checks and the start (a network restart), for Slack's listener and the metrics one."""
    settings = bot.services.settings.model_copy(update={"RECBOT_METRICS_ADDR": ("2001:db8::1", 9464)})
    services = SimpleNamespace(
        metrics=Metrics(), settings=settings, health=bot.services.health, readiness=bot.services.readiness
    )
    with pytest.raises(StartupError) as refusal:
        start_metrics(services, "http")  # type: ignore[arg-type]
    assert str(refusal.value) == f"cannot listen on [2001:db8::1]:9464 (Cannot assign requested address): {METRICS_FIX}"
    with pytest.raises(StartupError) as refusal:
        serve_http(bot.app, bot.services, "2001:db8::1", 3000)
    assert str(refusal.value) == (
        "cannot listen on [2001:db8::1]:3000 (Cannot assign requested address): check --host and --port"
    )


def test_closing_the_listener_hangs_up_on_a_connection_a_scraper_keeps_open() -> None:
    """Prometheus keeps its connection to a target open between scrapes: a stop must not wait on it."""

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    listener = MetricsListener("127.0.0.1", 0, answer).start()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=3) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: recbot\r\n\r\n")
        response = b""
        while not response.endswith(b"ok"):
            response += kept.recv(1024)
        assert response.startswith(b"HTTP/1.1 200")
        listener.close()
        assert kept.recv(1024) == b""  # hung up on; before, the loop went on serving it (3 s: a timeout)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=3).close()
