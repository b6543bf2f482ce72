"""The doctor checks what a start needs, per mode, concurrently and bounded,
changes nothing, and exits non-zero on any failure."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, inspect, text

from bot.doctor import doctor
from bot.seal import resolve_seal_key
from bot.settings import Mode, Settings, load_settings
from bot.store import Store, migrations, open_store
from bot.store.engine import DatabaseInUse, only_process
from bot.store.schema import observed_configs
from bot.store.values import utcnow
from tests.conftest import APP_ID
from tests.fakes.agora import Fault
from tests.fakes.http import SilentServer
from tests.legacy_schema import rebuild
from tests.storage_servers import free_port
from tests.test_transport import TlsServer

ROOT = Path(__file__).resolve().parent.parent


def run_doctor(overrides: dict[str, Any], mode: str = "http") -> tuple[int, dict[str, str]]:
    """The exit code and each check's line by name."""
    out = io.StringIO()
    port = free_port()  # doctor binds it for a moment: a port nothing else holds
    code = doctor(mode, "127.0.0.1", port, out, load=lambda m: load_settings(m, _env_file=None, **overrides))
    lines = out.getvalue().splitlines()
    checks = {}
    for line in lines[1:-1]:
        status, _, rest = line.partition("]")
        checks[rest.strip().split(":")[0]] = status.strip("[ ") + ":" + rest.split(":", 1)[1]
    return code, checks


@pytest.fixture
def approvers_seen(slack) -> None:
    slack.channels["CAPPROVE"] = True


def test_all_green_in_http_mode_and_nothing_is_created(settings_overrides, slack, agora, approvers_seen) -> None:
    agora.put(APP_ID, "backup", "eu", {})
    code, checks = run_doctor(settings_overrides)
    assert code == 0, checks
    assert all(line.startswith("ok:") for line in checks.values()), checks
    assert "2 entry point(s) in App ID APPID01: backup, live" in checks["Agora"]
    assert "does not exist yet" in checks["Database"]
    assert "/slack/events" in checks["Slack HTTP mode"] and "Interactivity" in checks["Slack HTTP mode"]
    assert checks["Drift watch"] == "ok: off (RECBOT_DRIFT_INTERVAL_SECONDS is 0)"
    assert "2 approver(s)" in checks["Approvers"] and "the bot is in CAPPROVE" in checks["Approval channel"]
    database = Path(settings_overrides["DATABASE_URL"].removeprefix("sqlite:///"))
    assert not database.exists() and not Path(f"{database}.key").exists()
    assert [c.method for c in agora.calls()] == ["GET"] and agora.calls()[0].path.endswith("/fls/entry_points")


def test_a_misspelt_name_is_one_warning_more_shown_once_after_the_settings(
    settings_overrides, slack, agora, approvers_seen, monkeypatch, tmp_path
) -> None:
    agora.put(APP_ID, "backup", "eu", {})
    monkeypatch.chdir(tmp_path)  # no .env here
    port = free_port()

    def load(mode: Mode) -> Settings:
        return load_settings(mode, _env_file=None, **settings_overrides)

    def checklist() -> list[str]:
        out = io.StringIO()
        assert doctor("http", "127.0.0.1", port, out, load=load) == 0, out.getvalue()
        return out.getvalue().splitlines()

    before = checklist()
    monkeypatch.setenv("RECBOT_APROVERS", "UBOB")
    after = checklist()
    near_miss = (
        "[warn] Settings: RECBOT_APROVERS in the environment is not a name recbot reads: "
        "if it is meant as RECBOT_APPROVERS, rename it"
    )
    assert [line for line in after if line.startswith("[warn]")] == [near_miss]
    assert after[after.index(near_miss) - 1] == "[ok]   Settings: all present and valid"
    assert before[-1].endswith(" ok, 0 warning(s), 0 failed")
    assert after[-1] == before[-1].replace("0 warning(s)", "1 warning(s)")  # the same ok, one warning more


def test_socket_mode_checks_the_app_token_with_slack(settings_overrides, slack, agora, approvers_seen) -> None:
    slack.app_token, slack.socket_url = "xapp-1-right", "wss://wss-primary.slack.com/link/?ticket=1"
    code, checks = run_doctor({**settings_overrides, "SLACK_APP_TOKEN": "xapp-1-right"}, mode="socket")
    assert code == 0 and checks["Slack Socket Mode"].startswith("ok:")
    code, checks = run_doctor({**settings_overrides, "SLACK_APP_TOKEN": "xapp-1-wrong"}, mode="socket")
    assert code == 1 and checks["Slack Socket Mode"] == (
        "FAIL: Slack rejected SLACK_APP_TOKEN (invalid_auth): generate an App-Level Token with connections:write "
        "under Basic Information > App-Level Tokens, and turn Socket Mode on"
    )  # a start's very words


def test_an_answer_without_a_connection_url_fails_as_a_start_refuses_it(
    settings_overrides, slack, agora, approvers_seen
) -> None:
    slack.app_token = "xapp-1-right"  # the fake's answer has no url: doctor said ok, and a start then refused
    code, checks = run_doctor({**settings_overrides, "SLACK_APP_TOKEN": "xapp-1-right"}, mode="socket")
    assert code == 1 and "answered apps.connections.open without a connection URL" in checks["Slack Socket Mode"]


def test_settings_problems_are_the_same_list_as_at_start(settings_overrides) -> None:
    out = io.StringIO()
    overrides = {**settings_overrides, "SLACK_BOT_TOKEN": "xapp-in-the-wrong-place"}
    code = doctor("socket", "127.0.0.1", 3000, out, load=lambda m: load_settings(m, _env_file=None, **overrides))
    failed = [line for line in out.getvalue().splitlines() if line.startswith("[FAIL]")]
    assert code == 1 and len(failed) == 2
    assert "SLACK_BOT_TOKEN holds an App-Level Token" in failed[0] and "SLACK_APP_TOKEN is missing" in failed[1]
    assert "xapp-in-the-wrong-place" not in out.getvalue()


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"customer_secret": "rotated"}, "FAIL", "AGORA_CUSTOMER_SECRET"),
        ({"unknown_apps": {APP_ID}}, "FAIL", "App ID APPID01 was not found"),
        ({"configs": {}}, "warn", "has no entry points yet"),
    ],
)
def test_agora_findings(settings_overrides, slack, agora, approvers_seen, change, status, says) -> None:
    for name, value in change.items():
        setattr(agora, name, value)
    code, checks = run_doctor(settings_overrides)
    assert checks["Agora"].startswith(status) and says in checks["Agora"]
    assert code == (1 if status == "FAIL" else 0)


def test_agora_failing_on_its_side_is_not_blamed_on_the_settings(settings_overrides, slack, agora, approvers_seen):
    agora.inject(Fault(503, message="Service Unavailable"))
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and checks["Agora"].startswith("FAIL")
    assert "answered 503 (Service Unavailable): Agora's side is failing; run doctor again later" in checks["Agora"]
    assert "check the network" not in checks["Agora"]


def test_agora_refusing_access_names_the_customer_id_not_a_retry(settings_overrides, slack, agora, approvers_seen):
    agora.inject(Fault(403, message="no access to project"))
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and checks["Agora"].startswith("FAIL")
    assert (
        "refused AGORA_CUSTOMER_ID access to App ID" in checks["Agora"] and "(no access to project)" in checks["Agora"]
    )
    assert "again later" not in checks["Agora"]


def test_an_agora_api_url_that_redirects_names_the_setting_and_where_it_points(
    settings_overrides, slack, agora, approvers_seen
) -> None:
    agora.inject(Fault(301, {"Location": "https://api.example:8443/dev/v1/projects?x=1"}, "Moved Permanently"))
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and checks["Agora"].startswith("FAIL")
    assert "answered 301, a redirect to https://api.example:8443, which recbot does not follow" in checks["Agora"]
    assert "set AGORA_API_URL" in checks["Agora"] and "run doctor again later" not in checks["Agora"]


@pytest.mark.parametrize(
    ("location", "said"),
    [(None, "a redirect, which"), ("/elsewhere", "a redirect, which"), ("{own}/v2/x", "a redirect to another path,")],
)
def test_a_redirect_to_nowhere_named_or_within_agora_api_url_names_no_host(
    settings_overrides, slack, agora, approvers_seen, location, said
) -> None:
    headers = {} if location is None else {"Location": location.format(own=agora.url)}
    agora.inject(Fault(302, headers, "Found"))
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and f"answered 302, {said}" in checks["Agora"] and "set AGORA_API_URL" in checks["Agora"]


def test_an_untrusted_certificate_at_agora_names_the_setting_that_fixes_it(
    settings_overrides, slack, agora, approvers_seen, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    tls = TlsServer(tmp_path)
    try:
        code, checks = run_doctor({**settings_overrides, "AGORA_API_URL": tls.url})
    finally:
        tls.stop()
    assert code == 1 and checks["Agora"].startswith("FAIL")
    assert "TLS certificate" in checks["Agora"] and "REQUESTS_CA_BUNDLE" in checks["Agora"]


def test_database_reports_pending_migrations_without_applying_them(settings_overrides, slack, agora) -> None:
    store = open_store(settings_overrides["DATABASE_URL"])
    rebuild(store.engine, "v1")  # as recbot's first release left it
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and "1 open request(s) or job(s) are sealed with it" in checks["Database"]
    assert "restore the key from its backup" in checks["Database"]
    resolve_seal_key(None, settings_overrides["DATABASE_URL"])
    _, checks = run_doctor(settings_overrides)
    assert "sealed with another key than the seal key" in checks["Database"]  # a new key opens nothing old
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE change_requests SET sealed_patch = NULL"))  # the request given up
    _, checks = run_doctor(settings_overrides)
    head = migrations.head()
    with store.engine.connect() as conn:
        todo = [revision for revision, _ in migrations.pending(conn)]
    assert todo == [f"{n:04}" for n in range(2, 13)] and head == "0012"
    pending = (
        f"revision 0001 (schema_version 1, from before Alembic), head {head}; a start applies 11 revision(s): 0002 "
    )
    assert pending in checks["Database"] and "; 0009 agora_budget" in checks["Database"]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version")).scalar() == 1  # still
        assert "alembic_version" not in inspect(conn).get_table_names()
    store.close()


def test_a_database_a_newer_recbot_upgraded_fails_and_one_up_to_date_is_ok(settings_overrides, slack, agora) -> None:
    store = open_store(settings_overrides["DATABASE_URL"])
    resolve_seal_key(None, settings_overrides["DATABASE_URL"])
    _, checks = run_doctor(settings_overrides)
    assert (
        checks["Database"].startswith("ok")
        and f"revision {migrations.head()}, head {migrations.head()}; up to date" in (checks["Database"])
    )
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and checks["Database"] == (
        f"FAIL: the database is at revision 9999, which this recbot does not know (its head is {migrations.head()}): "
        "a newer recbot upgraded it; run that recbot, or restore the backup taken before that upgrade"
    )
    store.close()


def test_a_sqlite_file_another_recbot_runs_on_fails_in_the_words_of_the_start_it_would_refuse(
    settings_overrides, slack, agora
) -> None:
    url = settings_overrides["DATABASE_URL"]
    open_store(url).close()
    resolve_seal_key(None, url)
    path = Path(url.removeprefix("sqlite:///"))
    with only_process(url):  # as a running recbot holds it
        code, checks = run_doctor(settings_overrides)
        with pytest.raises(DatabaseInUse) as refused:
            with only_process(url):
                pass
    assert code == 1 and checks["Database"] == f"FAIL: {refused.value}"
    assert f"another recbot is running on the SQLite file {path}" in checks["Database"]
    code, checks = run_doctor(settings_overrides)  # stopped: the lock file stays, held by nobody
    assert Path(f"{path.resolve()}.lock").exists() and checks["Database"].startswith("ok"), checks["Database"]
    with only_process(url):  # doctor's own look let go of it
        pass


def test_an_unreachable_postgresql_fails(settings_overrides, slack, agora, unused_port) -> None:
    overrides = {
        **settings_overrides,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{unused_port}/test",
        "RECBOT_SEAL_KEY": Fernet.generate_key().decode(),
    }
    code, checks = run_doctor(overrides)
    assert code == 1 and checks["Database"].startswith("FAIL") and "OperationalError" in checks["Database"]


def test_groups_count_as_their_members(settings_overrides, slack, agora, approvers_seen) -> None:
    slack.usergroups["S0OPS"] = ["UBOB"]
    too_few = {**settings_overrides, "RECBOT_APPROVERS": "S0OPS", "RECBOT_REQUIRED_APPROVALS": "2"}
    code, checks = run_doctor(too_few)
    assert code == 1 and "1 approver(s) with groups counted as their members, 2 needed" in checks["Approvers"]
    slack.usergroups["S0OPS"] = ["UBOB", "UCAROL", "UDAVE"]
    code, checks = run_doctor(too_few)
    assert code == 0 and checks["Approvers"].startswith("ok: 3 approver(s)")


def test_a_bot_outside_the_approval_channel_is_a_warning(settings_overrides, slack, agora) -> None:
    slack.channels["CAPPROVE"] = False
    code, checks = run_doctor(settings_overrides)
    assert (
        code == 0 and checks["Approval channel"].startswith("warn") and "/invite @recbot" in checks["Approval channel"]
    )


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m recbot ARGS` in `cwd` with `env` and none of recbot's settings from this process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "recbot", *args],
        cwd=cwd,
        env={**base, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_doctor_against_silent_upstreams_finishes_quickly_and_quietly(settings_overrides, tmp_path) -> None:
    silent = SilentServer().start()
    try:
        env = {k: str(v) for k, v in settings_overrides.items()}
        env.update(SLACK_API_URL=silent.url + "/api/", AGORA_API_URL=silent.url)
        began = time.monotonic()
        done = cli(["doctor", "--http"], tmp_path, env)
        took = time.monotonic() - began
    finally:
        silent.stop()
    assert done.returncode == 1 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("recbot doctor") and "failed" in lines[-1]
    assert all(line.startswith(("[ok]", "[warn]", "[FAIL]")) for line in lines[1:-1]), lines  # no log noise
    assert any(line.startswith("[FAIL] Agora") for line in lines) and any("Slack bot token" in line for line in lines)
    assert took < 15, f"doctor took {took:.1f} s against a silent upstream"  # generous: it takes about 3.5 s


def test_doctor_without_settings_exits_1_and_names_them(tmp_path) -> None:
    done = cli(["doctor"], tmp_path, {})
    assert done.returncode == 1
    assert "[FAIL] Settings: SLACK_BOT_TOKEN is missing" in done.stdout and "SLACK_APP_TOKEN is missing" in done.stdout


def test_a_misspelt_name_is_shown_when_only_the_command_line_fails(settings_overrides, monkeypatch, tmp_path) -> None:
    """The settings load, --port does not: doctor stops there, and still says what it will not read."""
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("RECBOT_APROVERS", "UBOB")
    out = io.StringIO()
    code = doctor(
        "http", "127.0.0.1", "99999", out, load=lambda m: load_settings(m, _env_file=None, **settings_overrides)
    )
    shown = out.getvalue().splitlines()
    assert code == 1 and any(line.startswith("[FAIL] Command line: --port") for line in shown), shown
    near_miss = "RECBOT_APROVERS in the environment is not a name recbot reads: if it is meant as RECBOT_APPROVERS"
    assert f"[warn] Settings: {near_miss}, rename it" in shown, shown
    assert not any(line.startswith("[FAIL] Settings") for line in shown), shown


def test_http_mode_names_every_url_slack_needs(settings_overrides, slack, agora, approvers_seen) -> None:
    """The four places app.yaml's HTTP-mode edit puts https://YOUR-HOST/slack/events."""
    _, checks = run_doctor(settings_overrides)
    line = checks["Slack HTTP mode"]
    for place in (
        "the slash command's URL",
        "Interactivity's Request URL",
        "Options Load URL (the entry-point picker's search)",
        "Event Subscriptions' Request URL",
    ):
        assert place in line, line


def test_a_host_name_fails_http_mode_without_asking_a_name_server(
    settings_overrides, slack, agora, approvers_seen, monkeypatch
) -> None:
    """Where recbot listens is an IP address: a host name is refused as typed, never looked up
    (a DNS query would leave this machine, and a start must not hang on a name server)."""
    import socket

    def no_lookups(*args, **kwargs):
        raise AssertionError(f"looked up {args[0]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    out = io.StringIO()
    load = lambda m: load_settings(m, _env_file=None, **settings_overrides)  # noqa: E731
    code = doctor("http", "no-such-host.invalid", 3000, out, load=load)
    assert code == 1
    assert "--host is a host name, not an IP address: pass an IP address of this machine" in out.getvalue()


def remember_targets(database_url: str, targets: list[tuple[str, str, str]]) -> Store:
    """A store (migrated, its seal key made) remembering `targets` as the drift watch does."""
    store = open_store(database_url)
    resolve_seal_key(None, database_url)
    with store.engine.begin() as conn:
        for app_id, entry_point, region in targets:
            row = {"app_id": app_id, "entry_point": entry_point, "region": region}
            conn.execute(insert(observed_configs).values(**row, baseline="{}", seen_at=utcnow()))
    return store


def watched(settings_overrides: dict[str, Any], **change: str) -> dict[str, Any]:
    return {**settings_overrides, "AGORA_RATE_LIMIT": "1", "RECBOT_DRIFT_INTERVAL_SECONDS": "30", **change}


def test_drift_warns_when_a_pass_over_the_remembered_targets_outlasts_the_interval(
    settings_overrides, slack, agora, approvers_seen
) -> None:
    """At 1 call/s a 30 s interval fits 30 reads: 31 remembered targets (in any App ID) do not."""
    _, checks = run_doctor(watched(settings_overrides, RECBOT_DRIFT_INTERVAL_SECONDS="300"))
    assert checks["Drift watch"].startswith("ok: a pass over 0 target(s)")  # no database yet, and none made
    database = Path(settings_overrides["DATABASE_URL"].removeprefix("sqlite:///"))
    assert not database.exists()
    store = remember_targets(settings_overrides["DATABASE_URL"], [("OTHER", f"ep{i}", "eu") for i in range(30)])
    code, checks = run_doctor(watched(settings_overrides))
    assert code == 0 and checks["Drift watch"].startswith("ok: a pass over 30 target(s) takes about 30.0 s"), checks
    remember_targets(settings_overrides["DATABASE_URL"], [(APP_ID, "live", "na")])
    code, checks = run_doctor(watched(settings_overrides))
    line = checks["Drift watch"]
    assert code == 0 and line.startswith("warn: a pass over 31 target(s) takes about 31.0 s at AGORA_RATE_LIMIT 1")
    assert "longer than RECBOT_DRIFT_INTERVAL_SECONDS (30 s)" in line
    assert line.endswith("set RECBOT_DRIFT_INTERVAL_SECONDS to at least 31, or watch fewer targets")
    store.close()


def test_drift_all_counts_the_listed_entry_points_in_every_region_once(
    settings_overrides, slack, agora, approvers_seen
) -> None:
    """With RECBOT_DRIFT_ALL a pass lists (1 call) and reads each listed entry point in 4 regions;
    a remembered target among them is read once. 7 entry points: 29 calls fit 30 s; 8: 33 do not."""
    for i in range(6):
        agora.put(APP_ID, f"ep{i}", "eu", {})
    store = remember_targets(settings_overrides["DATABASE_URL"], [(APP_ID, "live", "na"), (APP_ID, "ep0", "cn")])
    _, checks = run_doctor(watched(settings_overrides, RECBOT_DRIFT_ALL="true"))
    assert checks["Drift watch"].startswith("ok: a pass over 28 target(s) takes about 29.0 s"), checks
    agora.put(APP_ID, "ep6", "na", {})
    _, checks = run_doctor(watched(settings_overrides, RECBOT_DRIFT_ALL="true"))
    assert checks["Drift watch"].startswith("warn: a pass over 32 target(s) takes about 33.0 s"), checks
    assert "at least 33" in checks["Drift watch"]
    assert [c.method for c in agora.calls()] == ["GET", "GET"]  # the Agora check's list, nothing more
    store.close()


def test_drift_without_the_list_counts_what_it_can(settings_overrides, slack, agora, approvers_seen) -> None:
    agora.customer_secret = "rotated"
    code, checks = run_doctor(watched(settings_overrides, RECBOT_DRIFT_ALL="true"))
    assert code == 1 and checks["Agora"].startswith("FAIL")
    assert checks["Drift watch"].startswith("ok: a pass over 0 target(s) (without the entry points")


def test_an_upstream_warned_of_is_one_warning_more(
    settings_overrides, slack, agora, approvers_seen, monkeypatch
) -> None:
    """The doctor's full run counts what bot.settings.cleartext_upstreams finds (its own tests
    say what that is; an http:// upstream off this machine cannot be reached from a test)."""
    warning = "AGORA_API_URL is http:// to elsewhere"
    monkeypatch.setattr("bot.doctor.cleartext_upstreams", lambda settings: [warning])
    out = io.StringIO()
    code = doctor(
        "http", "127.0.0.1", free_port(), out, load=lambda m: load_settings(m, _env_file=None, **settings_overrides)
    )
    lines = out.getvalue().splitlines()
    assert code == 0 and f"[warn] Upstreams: {warning}" in lines, lines
    assert lines[-1].endswith("1 warning(s), 0 failed")
