"""Every way a start can fail: a real `python -m recbot` process, exit code 2,
one line on stderr saying what is wrong and how to fix it, no traceback and
no value of any setting."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.server import StartupError, socket_mode_url
from bot.services import SLACK_PROXY_VARIABLES, slack_proxy_variable
from tests.conftest import BOT_TOKEN, CUSTOMER_SECRET, SIGNING_SECRET
from tests.storage_servers import free_port
from tests.test_doctor import cli

APP_TOKEN = "xapp-1-A01-right-token"


@pytest.fixture
def env(settings_overrides: dict[str, Any], slack) -> dict[str, str]:
    slack.app_token = APP_TOKEN
    return {**{k: str(v) for k, v in settings_overrides.items()}, "SLACK_APP_TOKEN": APP_TOKEN}


def refused(args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The failure lines of a start that must be refused."""
    done = cli(args, cwd, env, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("recbot cannot start: ")]
    assert lines, done.stderr
    for secret in (BOT_TOKEN, SIGNING_SECRET, CUSTOMER_SECRET, APP_TOKEN, DB_PASSWORD, *env.values()):
        if len(secret) > 8 and not secret.startswith(("http://", "sqlite:", "postgresql:")):
            assert secret not in done.stderr, f"a setting's value was printed: {secret}"
    return lines


DB_PASSWORD = "db-password-not-to-print"
SHARED = "postgresql://postgres:" + DB_PASSWORD + "@127.0.0.1:{port}/test"


@pytest.mark.parametrize(
    ("args", "change", "says"),
    [
        ([], {"SLACK_APP_TOKEN": None}, ["SLACK_APP_TOKEN is missing: ", "--http"]),
        ([], {"SLACK_APP_TOKEN": "xoxb-2-bot-token-in-the-app-slot"}, ["belongs in SLACK_BOT_TOKEN"]),
        ([], {"SLACK_BOT_TOKEN": "xapp-2-app-token-in-the-bot-slot"}, ["belongs in SLACK_APP_TOKEN: move it"]),
        (["--http"], {"DATABASE_URL": "postgresql://postgres@127.0.0.1/test"}, ["RECBOT_SEAL_KEY is required"]),
        (["--http"], {"DATABASE_URL": "mysql://root@127.0.0.1/recbot"}, ["DATABASE_URL must start with sqlite:///"]),
        ([], {"SLACK_APP_TOKEN": "xapp-1-A01-wrong-token"}, ["Slack rejected SLACK_APP_TOKEN (invalid_auth)"]),
        ([], {"SLACK_BOT_TOKEN": "xoxb-wrong-bot-token"}, ["Slack rejected SLACK_BOT_TOKEN (invalid_auth)"]),
        (
            ["--http"],
            {"DATABASE_URL": SHARED, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
            ["cannot use the database at postgresql://postgres:***@127.0.0.1:", "check DATABASE_URL"],
        ),
    ],
    ids=[
        "no-app-token",
        "bot-token-as-app-token",
        "app-token-as-bot-token",
        "shared-db-without-seal-key",
        "mysql-url",
        "app-token-rejected",
        "bot-token-rejected",
        "postgresql-unreachable",
    ],
)
def test_a_start_that_cannot_work_says_why_in_one_line(env, tmp_path, unused_port, args, change, says) -> None:
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value.format(port=unused_port)
    listen = ["--port", str(free_port())] if "--http" in args else []  # not 3000, which something may hold
    (line,) = refused([*args, *listen], env, tmp_path)
    assert all(part in line for part in says), line
    if "database" not in line:  # refused before the store or its seal key was created
        assert not (tmp_path / "recbot.db").exists() and not (tmp_path / "recbot.db.key").exists()


def test_several_setting_problems_are_one_list(env, tmp_path) -> None:
    env.pop("SLACK_APP_TOKEN")
    env["RECBOT_APPROVERS"] = "bob"
    lines = refused([], env, tmp_path)
    assert len(lines) == 2 and "SLACK_APP_TOKEN is missing" in lines[0] and "RECBOT_APPROVERS" in lines[1]
    assert not (tmp_path / "recbot.db").exists()  # refused before anything was created


def test_a_port_in_use_is_named(env, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        (line,) = refused(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def doctor_failures(args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """What `./run doctor ARGS` says failed, without the `[FAIL] <check>: ` prefix."""
    done = cli(["doctor", *args], cwd, env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, (done.stdout, done.stderr)
    failed = [line for line in done.stdout.splitlines() if line.startswith("[FAIL]")]
    return [line.split(": ", 1)[1] for line in failed]


UTF8_FIX = "save .env with the UTF-8 encoding (Save As in most editors)"
LATIN1_ENV = "SLACK_BOT_TOKEN=xoxb-1\nAGORA_CUSTOMER_SECRET=café\n".encode("latin-1")


@pytest.mark.parametrize(
    ("args", "change", "says"),
    [
        (
            ["--http", "--port", "-1"],
            {},
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log names): pass the port",
        ),
        (
            ["--http", "--port", "70000"],
            {},
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log names): pass the port",
        ),
        (
            ["--http", "--port", "http"],
            {},
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log names): pass the port",
        ),
        (
            ["--http", "--port", "9" * 5000],  # past what int() reads from a string: a refusal, not a traceback
            {},
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log names): pass the port",
        ),
        (["--http", "--host", "999.1.1.1"], {}, "--host is not an IP address: pass an IP address of this machine"),
        (["--http", "--host", "recbot.internal"], {}, "--host is a host name, not an IP address: pass an IP"),
        (["--http", "--host", "my host"], {}, "--host is not an IP address: pass an IP address of this machine"),
        (
            ["--http", "--host", "2001:db8::1", "--port", "3000"],  # documentation's range: on no machine
            {},
            "cannot listen on [2001:db8::1]:3000 (Cannot assign requested address): pass an IP address of this",
        ),
        (
            [],
            {".env": LATIN1_ENV},
            f"line 2 is not UTF-8 text: {UTF8_FIX}",
        ),
        (["--http"], {"AGORA_RATE_LIMIT": "0.001"}, "AGORA_RATE_LIMIT must be at least 1: set it to"),
        (
            ["--http"],
            {"AGORA_RATE_LIMIT": "nan"},
            "AGORA_RATE_LIMIT must be a finite number, not nan, inf or too large to hold: set",
        ),
        (["--http"], {"RECBOT_DRIFT_INTERVAL_SECONDS": "0.01"}, "must be 0 (off) or from 30 to 86400 seconds: set"),
        (["--http"], {"SLACK_API_URL": "http://127.0.0.1:99999/api/"}, "SLACK_API_URL has a port that is not a number"),
        (["--http"], {"AGORA_API_URL": "https:///v1"}, "AGORA_API_URL has no host name: set it to"),
        (["--http"], {"RECBOT_STORAGE_ENDPOINT_OVERRIDE": "http://a b:9000"}, "contains spaces or control characters"),
        (["--http"], {"RECBOT_AZURE_ENDPOINT_OVERRIDE": "http://az:10000/?x=1"}, "must not have a query (?...)"),
        (["--http"], {"RECBOT_APPROVERS": "U0\u00c4PP"}, "RECBOT_APPROVERS has 1 entry that is not a Slack user ID"),
    ],
    ids=[
        "port-negative",
        "port-too-big",
        "port-not-a-number",
        "port-of-5000-digits",
        "host-not-an-address",
        "host-a-name",
        "host-with-a-space",
        "host-ipv6-not-on-this-machine",
        "env-not-utf8",
        "rate-too-low",
        "rate-nan",
        "drift-interval-too-short",
        "slack-url-port",
        "agora-url-no-host",
        "storage-override-space",
        "azure-override-query",
        "approver-non-ascii",
    ],
)
def test_a_bad_value_is_one_line_before_anything_is_created_and_doctor_says_the_same(
    env, tmp_path, args, change, says
) -> None:
    for name, value in change.items():
        if name == ".env":
            (tmp_path / ".env").write_bytes(value)
        else:
            env[name] = value
    before = sorted(os.listdir(tmp_path))
    (line,) = refused(args, env, tmp_path)
    assert says in line and line.count(": ") == 2, line  # after the prefix: `<what is wrong>: <how to fix it>`
    assert sorted(os.listdir(tmp_path)) == before  # no SQLite file, no key file
    assert doctor_failures(args, env, tmp_path) == [line.removeprefix("recbot cannot start: ")]
    assert sorted(os.listdir(tmp_path)) == before


def test_a_metrics_address_not_on_this_machine_is_named_with_its_port_told_apart(env, tmp_path, unused_port) -> None:
    env["RECBOT_METRICS_ADDR"] = "[2001:db8::1]:9464"  # the documentation's range: on no machine
    done = cli(["--http", "--port", str(unused_port)], tmp_path, env, timeout=60)  # 3000 may be taken
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "recbot cannot start: cannot listen on [2001:db8::1]:9464 (Cannot assign requested address): "
        "set RECBOT_METRICS_ADDR to another IP:port, or to off"
    )
    assert os.listdir(tmp_path) == []


def test_a_misspelt_name_is_named_beside_the_setting_it_leaves_missing(env, tmp_path) -> None:
    del env["SLACK_SIGNING_SECRET"]
    (tmp_path / ".env").write_text(f"SLACK_SIGNIN_SECRET={SIGNING_SECRET}\n")
    near_miss = (
        "SLACK_SIGNIN_SECRET in .env is not a name recbot reads: if it is meant as SLACK_SIGNING_SECRET, rename it"
    )
    env["RECBOT_APROVERS"] = "UBOB"  # a typo too, but not why the start is refused
    missing, named = refused(["--http"], env, tmp_path)
    assert missing.startswith("recbot cannot start: SLACK_SIGNING_SECRET is missing: ")
    assert named == f"recbot cannot start: {near_miss}"
    doctor = cli(["doctor", "--http", "--port", "99999"], tmp_path, env, timeout=60)
    shown = doctor.stdout.splitlines()
    assert f"[warn] Settings: {near_miss}" in shown and any("RECBOT_APROVERS" in line for line in shown)
    assert any(line.startswith("[FAIL] Command line: --port") for line in shown), shown
    assert SIGNING_SECRET not in doctor.stdout + doctor.stderr


def test_an_agora_reached_in_clear_across_the_network_is_warned_of_at_start_and_by_the_doctor(env, tmp_path) -> None:
    """Warned of, not refused (an emulator in a container is http:// on purpose); nothing is
    sent there to say so: this start stops at its port, taken, and the doctor at --port."""
    env["AGORA_API_URL"] = "http://agora-emulator.example:8080"
    warning = (
        "AGORA_API_URL is http:// to agora-emulator.example, not this machine: the storage access and secret "
        "keys of every change (in the PATCH's body) would cross the network unencrypted"
    )
    with refusing_port() as taken:
        done = cli(["--http", "--port", str(taken)], tmp_path, env, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (logged,) = [line for line in done.stderr.splitlines() if "AGORA_API_URL is http://" in line]
    assert "WARNING" in logged and warning in logged
    assert done.stderr.strip().splitlines()[-1].startswith("recbot cannot start: ")
    doctor = cli(["doctor", "--http", "--port", "99999"], tmp_path, env, timeout=60)
    assert any(line.startswith(f"[warn] Upstreams: {warning}") for line in doctor.stdout.splitlines()), doctor.stdout
    env["AGORA_API_URL"] = "http://127.0.0.1:9"
    doctor = cli(["doctor", "--http", "--port", "99999"], tmp_path, env, timeout=60)
    assert "Upstreams" not in doctor.stdout


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections while the caller runs: bound, never listening,
    so no server of another test can take it meanwhile (a port closed after use can be)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


NO_PROXY_SET = dict.fromkeys(("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"), "")


@pytest.mark.parametrize(
    ("variables", "url", "named"),
    [
        ({}, "https://slack.com/api/", None),
        ({"HTTPS_PROXY": "http://a:3128", "HTTP_PROXY": "http://b:3128"}, "https://slack.com/api/", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://a:3128", "https_proxy": "http://b:3128"}, "https://slack.com/api/", "HTTPS_PROXY"),
        ({"https_proxy": "http://a:3128", "HTTP_PROXY": "http://b:3128"}, "https://slack.com/api/", "https_proxy"),
        ({"HTTP_PROXY": "http://a:3128", "http_proxy": "http://b:3128"}, "https://slack.com/api/", "HTTP_PROXY"),
        ({"HTTPS_PROXY": "", "http_proxy": "http://b:3128"}, "https://slack.com/api/", "http_proxy"),
        ({"HTTPS_PROXY": "http://a:3128"}, "http://10.1.2.3:8080/api/", "HTTPS_PROXY"),  # http:// too
        ({"HTTPS_PROXY": "   "}, "https://slack.com/api/", None),
        ({"HTTPS_PROXY": "http://a:3128", "NO_PROXY": "slack.com"}, "https://slack.com/api/", None),
        ({"HTTPS_PROXY": "http://a:3128", "no_proxy": ".example.com"}, "https://slack.com/api/", "HTTPS_PROXY"),
        ({"ALL_PROXY": "http://a:3128"}, "https://slack.com/api/", None),
    ],
)
def test_the_proxy_named_is_the_one_slack_sdk_and_urllib_pick(monkeypatch, variables, url, named) -> None:
    for name in (*SLACK_PROXY_VARIABLES, "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert slack_proxy_variable(url) == named


@pytest.mark.parametrize(
    ("mode", "proxy"),
    [(["--http"], {}), ([], {}), (["--http"], {"HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "*"})],
    ids=["http", "socket", "proxy-not-for-slack"],
)
def test_a_slack_that_cannot_be_reached_is_said_so_with_the_network_to_check(env, tmp_path, mode, proxy) -> None:
    with refusing_port() as port:
        env["SLACK_API_URL"] = f"http://127.0.0.1:{port}/api/"
        env.update({**NO_PROXY_SET, **proxy})
        (line,) = refused(mode, env, tmp_path)
    assert line == f"recbot cannot start: cannot reach Slack at {env['SLACK_API_URL']} (URLError): check the network"


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy"])
def test_a_proxy_slack_calls_cannot_get_through_is_named_by_its_variable_not_its_value(
    env, tmp_path, variable: str
) -> None:
    """slack_sdk sends Web API calls through HTTPS_PROXY or HTTP_PROXY, even to an http:// URL:
    Slack itself answers here, so only the proxy can be what failed."""
    with refusing_port() as port:
        proxy = f"http://ops:proxy-password@127.0.0.1:{port}"
        env.update({**NO_PROXY_SET, variable: proxy})
        done = cli(["--http"], tmp_path, env, timeout=60)
        doctor = cli(["doctor", "--http"], tmp_path, env, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"recbot cannot start: cannot reach Slack at {env['SLACK_API_URL']} through the proxy in {variable} "
        "(URLError): check that proxy, or check the network"
    )
    assert "proxy-password" not in done.stderr and proxy not in done.stderr
    assert f"through the proxy in {variable} (URLError): check that proxy, or check the network and SLACK_API_URL" in (
        doctor.stdout
    )
    assert "proxy-password" not in doctor.stdout + doctor.stderr


def test_socket_modes_connection_call_names_the_proxy_it_went_through(monkeypatch) -> None:
    """apps.connections.open, a Socket Mode start's call after auth.test, fails through the proxy too."""
    for name in (*SLACK_PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with refusing_port() as port:
        monkeypatch.setenv("https_proxy", f"http://ops:proxy-password@127.0.0.1:{port}")
        api_url = f"http://127.0.0.1:{port}/api/"
        with pytest.raises(StartupError) as caught:
            socket_mode_url(APP_TOKEN, api_url)
    assert str(caught.value) == (
        f"cannot reach Slack at {api_url} through the proxy in https_proxy (URLError): "
        "check that proxy, or check the network"
    )


def test_an_http_mode_start_does_not_suggest_http_mode(env, tmp_path) -> None:
    env["SLACK_APP_TOKEN"] = "xoxb-2-bot-token-in-the-app-slot"
    (line,) = refused(["--http"], env, tmp_path)
    assert "belongs in SLACK_BOT_TOKEN" in line and "--http" not in line and "HTTP mode does not use it" in line


def test_a_port_in_use_is_refused_before_anything_is_created(env, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        (line,) = refused(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert os.listdir(tmp_path) == []
