"""RECBOT_METRICS_ADDR and the metrics listener as an operator meets them: the Slack-facing port
named as the metrics address, an IPv6 address in the logged URL, HEAD probes, and the applies
counter a rule's rate() can see from the first failure."""

from __future__ import annotations

import io
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.doctor import doctor
from bot.metrics_listener import on_slack_port
from bot.settings import load_settings
from tests.fakes.slack import FakeSlack
from tests.metrics_helpers import scrape
from tests.storage_servers import free_port
from tests.test_doctor import cli
from tests.test_metrics_listener import listening_ports, recbot, until
from tests.test_socket_mode import APP_TOKEN
from tests.test_startup import refused


@pytest.fixture
def env(settings_overrides: dict[str, Any], slack: FakeSlack) -> dict[str, str]:
    slack.app_token = APP_TOKEN
    return {**{k: str(v) for k, v in settings_overrides.items()}, "SLACK_APP_TOKEN": APP_TOKEN}


SLACK_PORT_WORDS = "the Slack-facing --port: /metrics is never served where Slack reaches"


def test_the_slack_facing_port_as_metrics_address_is_refused_before_anything_is_created(env, tmp_path) -> None:
    port = free_port()
    lines = {}
    for metrics in (f"127.0.0.1:{port}", f"0.0.0.0:{port}", f"localhost:{port}"):
        env["RECBOT_METRICS_ADDR"] = metrics
        lines[metrics] = refused(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    assert all(len(said) == 1 and SLACK_PORT_WORDS in said[0] for said in lines.values()), lines
    assert "already in use" not in str(lines)  # recbot itself would hold it: not something to stop
    assert os.listdir(tmp_path) == []  # no database, no seal key


def test_the_same_port_on_another_interface_or_in_socket_mode_is_not_the_slack_port() -> None:
    assert on_slack_port(("127.0.0.2", 3000), "127.0.0.1", 3000) is None
    assert on_slack_port(("127.0.0.1", 0), "127.0.0.1", 0) is None  # two free ports: never the same
    assert on_slack_port(None, "127.0.0.1", 3000) is None
    assert on_slack_port(("::", 3000), "127.0.0.1", 3000) is not None


def test_doctor_fails_the_slack_facing_port_as_a_start_does(settings_overrides, slack, agora) -> None:
    port = free_port()
    overrides = {**settings_overrides, "RECBOT_METRICS_ADDR": f"0.0.0.0:{port}"}
    out = io.StringIO()
    code = doctor("http", "127.0.0.1", port, out, load=lambda m: load_settings(m, _env_file=None, **overrides))
    line = next(x for x in out.getvalue().splitlines() if "Metrics listener" in x)
    assert code == 1
    assert line.startswith("[FAIL]") and SLACK_PORT_WORDS in line, line


def test_doctor_names_an_ipv6_metrics_address_as_a_url(settings_overrides, slack, agora) -> None:
    overrides = {**settings_overrides, "RECBOT_METRICS_ADDR": "[::1]:0"}
    out = io.StringIO()
    doctor("http", "127.0.0.1", free_port(), out, load=lambda m: load_settings(m, _env_file=None, **overrides))
    assert "/readyz on http://[::1]:<a free port>" in out.getvalue()


def test_an_ipv6_metrics_address_is_logged_as_a_url_that_works(env, tmp_path: Path) -> None:
    env["RECBOT_METRICS_ADDR"] = "[::1]:0"
    main = free_port()
    with recbot(["--http", "--host", "127.0.0.1", "--port", str(main)], env, tmp_path) as process:
        until(process, lambda: requests.get(f"http://127.0.0.1:{main}/readyz", timeout=5).ok)
        (port,) = until(process, lambda: listening_ports(process.pid) - {main})
        assert scrape(f"http://[::1]:{port}/metrics").value("recbot_database_up") == 1
    stderr = process.stopped_stderr
    logged = re.findall(r"recbot metrics on (\S+)/metrics", stderr)
    assert logged == [f"http://[::1]:{port}"], stderr  # a URL curl and Prometheus accept, the port named
    assert f"recbot serving HTTP on 127.0.0.1:{main} (POST /slack/events, GET /healthz, /readyz)" in stderr


def test_an_ipv6_slack_facing_address_is_logged_with_its_port_told_apart(env, tmp_path: Path) -> None:
    main = free_port()
    with recbot(["--http", "--host", "::1", "--port", str(main)], env, tmp_path) as process:
        until(process, lambda: requests.get(f"http://[::1]:{main}/readyz", timeout=5).ok)
    assert f"recbot serving HTTP on [::1]:{main} (POST /slack/events" in process.stopped_stderr


def test_a_start_logs_a_misspelt_name_and_doctor_warns_of_it(env, tmp_path) -> None:
    env["RECBOT_REQUESTER"] = "UALICE"
    near_miss = "RECBOT_REQUESTER in the environment is not a name recbot reads: if it is meant as RECBOT_REQUESTERS"
    doctor = cli(["doctor", "--http", "--port", str(free_port())], tmp_path, env, timeout=60)
    assert any(line.startswith(f"[warn] Settings: {near_miss}") for line in doctor.stdout.splitlines()), doctor.stdout
    assert doctor.returncode == 0, doctor.stdout  # a warning, not a failure
    port = free_port()
    with recbot(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as process:
        until(process, lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).ok)
    assert f"WARNING recbot [-] {near_miss}" in process.stopped_stderr


def test_a_line_of_env_recbot_cannot_read_is_logged_once_in_the_logs_own_format(env, tmp_path: Path) -> None:
    env["RECBOT_LOG_FORMAT"] = "json"
    (tmp_path / ".env").write_text("\n\n# a comment\n\nSLACK_BOT_TOKEN xoxb-pasted-wrong\n")
    port = free_port()
    with recbot(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as process:
        until(process, lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).ok)
    lines = [json.loads(line) for line in process.stopped_stderr.splitlines()]  # python-dotenv's own line is gone
    warned = [line["message"] for line in lines if ".env" in line["message"]]
    assert warned == [
        ".env line 5 is not NAME=value (a name of letters, digits and _, then =), so recbot ignores it: "
        "write each as NAME=value, or delete it"
    ]
    assert "xoxb-pasted-wrong" not in process.stopped_stderr


def test_doctor_names_an_ipv6_slack_facing_address_as_a_url(env, tmp_path: Path) -> None:
    port = free_port()
    doctor = cli(["doctor", "--http", "--host", "::1", "--port", str(port)], tmp_path, env, timeout=60)
    assert f"recbot will listen on http://[::1]:{port}/slack/events;" in doctor.stdout, doctor.stdout
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as taken:
        busy = taken.getsockname()[1]
        doctor = cli(["doctor", "--http", "--host", "::1", "--port", str(busy)], tmp_path, env, timeout=60)
    assert f"port {busy} on [::1] is already in use" in doctor.stdout, doctor.stdout


def test_the_slack_facing_probes_answer_head_too(bot) -> None:
    """A load balancer's check of the Slack-facing /readyz may be HEAD (HAProxy's httpchk HEAD)."""
    for path in ("/healthz", "/readyz"):
        head = requests.head(bot.url + path, timeout=5)
        assert (head.status_code, head.headers["Content-Type"], head.content) == (200, "application/json", b"")


def test_head_probes_answer_as_get_without_a_body(bot) -> None:
    base = bot.metrics_url.removesuffix("/metrics")
    for path in ("/metrics", "/healthz", "/readyz"):
        got, head = requests.get(base + path, timeout=5), requests.head(base + path, timeout=5)
        assert (head.status_code, head.headers["Content-Type"]) == (got.status_code, got.headers["Content-Type"])
        assert head.status_code == 200 and head.content == b""
    posted = requests.post(base + "/readyz", timeout=5)
    assert posted.status_code == 405 and posted.headers["Allow"] == "GET, HEAD"


def test_every_apply_outcome_is_scraped_from_zero(bot) -> None:
    """A failed apply's series must exist at 0 before it: Prometheus sees no increase in a series
    born at 1, and RecbotAppliesFailing (rate > 0) would miss a process's first failure."""
    found = scrape(bot.metrics_url)
    for outcome in ("applied", "failed", "stale"):
        assert ("recbot_applies_total", frozenset({("outcome", outcome)})) in found.samples
        assert found.value("recbot_applies_total", outcome=outcome) == 0
