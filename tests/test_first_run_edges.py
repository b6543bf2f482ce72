"""What a first run gets wrong and how recbot says so: a credential with an invisible character, a
database URL with a password in its query or a SQLite path that cannot be a file, limits with no
sane bound, Slack's own trouble taken for a bad token, a port in use, a wrong signing secret, a
Socket Mode answer without a URL. Start and doctor say the same, in one line, never a value."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot.agora import AgoraClient, AgoraError, AgoraUnauthorized
from bot.doctor import doctor
from bot.metrics import Metrics
from bot.seal import SealError, resolve_seal_key
from bot.server import StartupError, socket_mode_url, verify_bot_token
from bot.services import metered_copy
from bot.settings import SettingsError, how_to_fix, load_settings
from bot.slack_web import NoRedirectWebClient
from handlers.blocks import edit_form as form
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, SIGNING_SECRET
from tests.driver import SlackDriver
from tests.fakes.http import LoopbackServer
from tests.fakes.slack import FakeSlack
from tests.test_doctor import cli, run_doctor
from tests.test_startup import APP_TOKEN, doctor_failures, refused

HTTP = ["--http", "--host", "127.0.0.1", "--port", "0"]
SEAL_KEY = Fernet.generate_key().decode()
# A valid value of every setting that holds a token, a secret or an ID.
CREDENTIALS = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_APP_TOKEN": APP_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "AGORA_CUSTOMER_ID": CUSTOMER_ID,
    "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
    "AGORA_APP_ID": APP_ID,
    "RECBOT_SEAL_KEY": SEAL_KEY,
}
NOT_ASCII = "contains a character that is not printable ASCII (often an invisible one pasted along with it)"


@pytest.fixture
def env(settings_overrides: dict[str, Any], slack: FakeSlack) -> dict[str, str]:
    """The environment of a `python -m recbot` that would start in Socket Mode."""
    slack.app_token = APP_TOKEN
    return {**{k: str(v) for k, v in settings_overrides.items()}, "SLACK_APP_TOKEN": APP_TOKEN}


def problems(mode: str = "socket", **values: Any) -> list[str]:
    try:
        load_settings(mode, _env_file=None, **values)  # type: ignore[arg-type]
    except SettingsError as exc:
        return exc.problems
    return []


# 1. A credential with an invisible or non-ASCII character


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
@pytest.mark.parametrize("junk", ["\u200b", "\ufeff", "\u00a0", "é", "\r\n", "\n", "\t", "\x00"], ids=repr)
@pytest.mark.parametrize("where", ["end", "middle", "start"])
def test_a_credential_with_an_invisible_or_non_ascii_character_is_refused_by_name(
    settings_overrides, name, junk, where
) -> None:
    good = CREDENTIALS[name]
    value = {"end": good + junk, "middle": good[:6] + junk + good[6:], "start": junk + good}[where]
    (line,) = problems(**{**settings_overrides, **CREDENTIALS, name: value})
    assert line == f"{name} {NOT_ASCII}: {how_to_fix(name, 'socket')}", line
    assert good not in line


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_a_credential_with_a_space_says_so(settings_overrides, name) -> None:
    good = CREDENTIALS[name]
    (line,) = problems(**{**settings_overrides, **CREDENTIALS, name: good[:6] + " " + good[6:]})
    assert line == f"{name} contains a space: {how_to_fix(name, 'socket')}"


@given(name=st.sampled_from(sorted(CREDENTIALS)), value=st.text(min_size=1, max_size=40))
def test_a_credential_is_refused_as_not_ascii_exactly_when_it_is_not(name: str, value: str) -> None:
    base = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "AGORA_CUSTOMER_ID": "c",
        "AGORA_CUSTOMER_SECRET": "s",
        "AGORA_APP_ID": "A",
        "SLACK_APP_TOKEN": "xapp-1",
    }
    found = problems(**{**base, name: value})
    outside = any(not "\x21" <= ch <= "\x7e" for ch in value)
    assert outside == any(line.startswith(f"{name} contains ") for line in found), found
    assert all(value.strip() not in line for line in found if len(value.strip()) >= 8)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGORA_CUSTOMER_ID", CUSTOMER_ID + "\u200b"),
        ("AGORA_CUSTOMER_ID", CUSTOMER_ID + "\r\nX-Injected: 1"),
        ("SLACK_BOT_TOKEN", BOT_TOKEN + "\u200b"),
        ("SLACK_APP_TOKEN", APP_TOKEN + "\u200b"),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET + "\u200b"),
        ("AGORA_CUSTOMER_SECRET", "é" + CUSTOMER_SECRET),
    ],
    ids=["customer-id-zwsp", "customer-id-crlf", "bot-token-zwsp", "app-token-zwsp", "signing-zwsp", "secret-e"],
)
def test_start_and_doctor_refuse_such_a_credential_in_the_same_line(env, tmp_path, name, value) -> None:
    env[name] = value
    before = sorted(os.listdir(tmp_path))
    (line,) = refused([], env, tmp_path)
    assert line == f"recbot cannot start: {name} {NOT_ASCII}: {how_to_fix(name, 'socket')}"
    assert doctor_failures([], env, tmp_path) == [line.removeprefix("recbot cannot start: ")]
    assert sorted(os.listdir(tmp_path)) == before


def test_a_slack_token_that_cannot_be_sent_is_one_line_not_a_traceback(settings, slack: FakeSlack) -> None:
    """Settings refuse such tokens; were one to slip past them, the start still says which."""
    bad = settings.model_copy(update={"SLACK_BOT_TOKEN": SecretStr(BOT_TOKEN + "\u200b")})
    with pytest.raises(StartupError, match=r"^SLACK_BOT_TOKEN contains a character that cannot be sent"):
        verify_bot_token(bad)
    with pytest.raises(StartupError, match=r"^SLACK_APP_TOKEN contains a character that cannot be sent"):
        socket_mode_url(APP_TOKEN + "\u200b", slack.api_url)
    assert slack.calls == []


@pytest.mark.parametrize("customer_id", [CUSTOMER_ID + "\u200b", CUSTOMER_ID + "\r\nX-Injected: 1"], ids=repr)
def test_agora_credentials_that_cannot_be_sent_are_an_agora_error_sent_nowhere(agora, customer_id) -> None:
    from bot.models import Target

    client = AgoraClient(
        base_url=agora.url, customer_id=customer_id, customer_secret=CUSTOMER_SECRET, backoff_base=0.01
    )
    try:
        with pytest.raises(AgoraError) as caught:
            client.get_config(Target(app_id=APP_ID, entry_point="live", region="na"))
    finally:
        client.close()
    assert "cannot be sent" in caught.value.user_message() and "`./run doctor` checks" in caught.value.user_message()
    assert agora.calls() == []  # not sent, and not retried as a network failure


# 3. A password in DATABASE_URL


DB_PASSWORD = "query-password-not-to-print"


def test_a_password_in_the_database_urls_query_is_never_printed(env, tmp_path, unused_port) -> None:
    env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{unused_port}/test?password={DB_PASSWORD}&sslmode=off"
    env["RECBOT_SEAL_KEY"] = SEAL_KEY
    done = cli(HTTP, tmp_path, env)
    assert done.returncode == 2 and DB_PASSWORD not in done.stderr and "password" not in done.stderr, done.stderr
    assert f"cannot use the database at postgresql://postgres@127.0.0.1:{unused_port}/test (" in done.stderr
    checked = cli(["doctor", *HTTP], tmp_path, env)
    assert DB_PASSWORD not in checked.stdout and "password" not in checked.stdout
    assert f"[FAIL] Database: cannot use the database at postgresql://postgres@127.0.0.1:{unused_port}/test (" in (
        checked.stdout
    )


@given(password=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=6))
def test_no_password_survives_the_shown_database_url(password: str) -> None:
    from bot.settings import shown_database_url

    secret = "PW" + password
    for url in (
        f"postgresql://u:{secret}@db:5432/recbot",
        f"postgresql://u@db/recbot?password={secret}",
        f"postgresql://u@db/recbot?sslmode=require&password={secret}",
        f"postgresql://u:{secret}@db/recbot?password={secret}",
        f"sqlite:///recbot.db?password={secret}",
    ):
        assert secret not in shown_database_url(url)


# 4. SQLite paths: start refuses what doctor fails, before creating anything


@pytest.mark.parametrize(
    ("database", "says"),
    [
        ("{tmp}/missing/recbot.db", "folder {tmp}/missing does not exist: create it or change DATABASE_URL"),
        ("{tmp}/deeper/still/recbot.db", "folder {tmp}/deeper/still does not exist: create it or change DATABASE_URL"),
        (
            "{tmp}/folder/",
            "DATABASE_URL names the folder {tmp}/folder, not a file: add the file's name, "
            "e.g. sqlite:///{tmp}/folder/recbot.db",
        ),
        (
            "{tmp}/folder",
            "DATABASE_URL names the folder {tmp}/folder, not a file: add the file's name, "
            "e.g. sqlite:///{tmp}/folder/recbot.db",
        ),
        ("{tmp}/a-file/recbot.db", "{tmp}/a-file is a file, not a folder: change DATABASE_URL"),
        (
            "{tmp}/a-pipe",
            "DATABASE_URL names {tmp}/a-pipe, which is not a file (a pipe, a device or a socket): change DATABASE_URL",
        ),
        ("{tmp}/" + "a" * 300 + ".db", "DATABASE_URL names a path the system refuses (File name too long): change it"),
    ],
    ids=["missing-folder", "missing-folders", "folder-with-slash", "folder", "file-as-folder", "pipe", "too-long"],
)
def test_a_sqlite_path_that_cannot_be_a_file_is_refused_before_anything_is_created(
    env,
    tmp_path,
    database,
    says,
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    os.mkfifo(tmp_path / "a-pipe")  # SQLite would wait on it forever
    env["DATABASE_URL"] = "sqlite:///" + database.format(tmp=tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    (line,) = refused(HTTP, env, tmp_path)
    assert line == "recbot cannot start: " + says.format(tmp=tmp_path), line
    assert "server" not in line
    assert doctor_failures(HTTP, env, tmp_path) == [line.removeprefix("recbot cannot start: ")]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no folder, no key, no database


@pytest.mark.parametrize("url", ["sqlite:///file:x.db?mode=memory&uri=true", "sqlite:///recbot.db?timeout=1"])
def test_a_sqlite_url_with_a_query_is_refused_by_the_settings(env, tmp_path, url) -> None:
    """It ended in a TypeError's traceback (mode=memory&uri=true), after a seal key was made."""
    env["DATABASE_URL"] = url
    (line,) = refused(HTTP, env, tmp_path)
    assert line == (
        "recbot cannot start: DATABASE_URL has a query (?...), which recbot does not pass on to SQLite: "
        "remove the query"
    )
    assert doctor_failures(HTTP, env, tmp_path) == [line.removeprefix("recbot cannot start: ")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_by_the_settings(env, tmp_path, url) -> None:
    env["DATABASE_URL"] = url
    (line,) = refused(HTTP, env, tmp_path)
    assert line.startswith("recbot cannot start: DATABASE_URL names no file (an in-memory SQLite database loses")
    assert line.endswith(how_to_fix("DATABASE_URL", "http"))
    assert doctor_failures(HTTP, env, tmp_path) == [line.removeprefix("recbot cannot start: ")]


def test_a_sqlite_file_recbot_cannot_use_is_no_server(env, tmp_path) -> None:
    (tmp_path / "recbot.db").write_bytes(b"this is not a SQLite database, nor anything else" * 100)
    (tmp_path / "recbot.db.key").write_text(SEAL_KEY)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'recbot.db'}"
    (line,) = refused(HTTP, env, tmp_path)
    assert f"cannot use the SQLite database {tmp_path / 'recbot.db'} (" in line and "server" not in line, line
    (found,) = doctor_failures(HTTP, env, tmp_path)
    assert f"cannot use the SQLite database {tmp_path / 'recbot.db'} (" in found and "server" not in found, found


def test_commands_suggested_in_messages_run_in_the_venv_or_through_run() -> None:
    with pytest.raises(SealError) as caught:
        resolve_seal_key(None, "postgresql://db/recbot")
    assert "`.venv/bin/python -c '" in str(caught.value)
    assert "`./run doctor` checks" in AgoraUnauthorized("x").user_message()


# 5. Bounds of the request TTL and of the storage check's timeout


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("RECBOT_REQUEST_TTL_SECONDS", "2592001", "must be at most 2592000"),
        ("RECBOT_REQUEST_TTL_SECONDS", "315360000000", "must be at most 2592000"),
        ("RECBOT_REQUEST_TTL_SECONDS", "99999999999999999999999", "must be at most 2592000"),
        ("RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS", "0.000001", "must be at least 0.5"),
        ("RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS", "0.49", "must be at least 0.5"),
        ("RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS", "30.5", "must be at most 30"),
    ],
)
def test_the_ttl_and_the_storage_check_timeout_have_sane_bounds(settings_overrides, name, value, says) -> None:
    (line,) = problems("http", **{**settings_overrides, name: value})
    assert line == f"{name} {says}: {how_to_fix(name, 'http')}"


def test_the_bounds_say_why_and_are_accepted(settings_overrides) -> None:
    assert "30 days" in how_to_fix("RECBOT_REQUEST_TTL_SECONDS", "http")
    assert "no check reaches its endpoint" in how_to_fix("RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS", "http")
    bounds = {"RECBOT_REQUEST_TTL_SECONDS": "2592000", "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": "0.5"}
    settings = load_settings(_env_file=None, **{**settings_overrides, **bounds})
    assert settings.RECBOT_REQUEST_TTL_SECONDS == 2592000 and settings.RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS == 0.5


# 6. Slack's own trouble is not a rejected token


@pytest.mark.parametrize(
    ("args", "method", "error", "says", "blames"),
    [
        (HTTP, "auth.test", "fatal_error", "Slack is unavailable (fatal_error): try again in a minute", None),
        (HTTP, "auth.test", "internal_error", "Slack is unavailable (internal_error): try again in a minute", None),
        (HTTP, "auth.test", "service_unavailable", "Slack is unavailable (service_unavailable)", None),
        (HTTP, "auth.test", "ratelimited", "Slack is rate-limiting recbot (ratelimited): try again in a minute", None),
        (HTTP, "auth.test", "account_inactive", "Slack rejected SLACK_BOT_TOKEN (account_inactive): copy", "BOT"),
        (HTTP, "auth.test", "token_revoked", "Slack rejected SLACK_BOT_TOKEN (token_revoked): copy", "BOT"),
        ([], "apps.connections.open", "internal_error", "Slack is unavailable (internal_error)", None),
        ([], "apps.connections.open", "not_allowed_token_type", "Slack rejected SLACK_APP_TOKEN (not_allowed_", "APP"),
        ([], "apps.connections.open", "invalid_auth", "Slack rejected SLACK_APP_TOKEN (invalid_auth): generate", "APP"),
    ],
)
def test_only_token_errors_blame_the_token(env, tmp_path, slack, args, method, error, says, blames) -> None:
    slack.errors[method] = error
    (line,) = refused(args, env, tmp_path)
    assert says in line, line
    assert ("TOKEN" in line) == (blames is not None), line
    assert os.listdir(tmp_path) == []


def test_a_rate_limited_start_says_so(env, tmp_path, slack) -> None:
    slack.rate_limit("auth.test", times=5, retry_after=1)
    (line,) = refused(HTTP, env, tmp_path)
    assert "Slack is rate-limiting recbot (ratelimited): try again in a minute" in line and "TOKEN" not in line


@pytest.mark.parametrize(
    ("error", "says"),
    [
        ("service_unavailable", "Slack is unavailable (service_unavailable)"),
        ("invalid_auth", "Slack rejected SLACK_BOT_TOKEN (invalid_auth): copy the Bot User OAuth Token"),
    ],
)
def test_doctor_tells_slacks_trouble_from_a_bad_token(settings_overrides, slack, agora, error, says) -> None:
    slack.errors["auth.test"] = error
    _, checks = run_doctor(settings_overrides)
    line = checks["Slack bot token"]
    assert line.startswith("FAIL") and says in line and ("SLACK_BOT_TOKEN" in line) == (error == "invalid_auth")


def test_doctor_says_slack_is_rate_limiting(settings_overrides, slack, agora) -> None:
    slack.rate_limit("auth.test", times=1, retry_after=1)
    _, checks = run_doctor(settings_overrides)
    assert "Slack is rate-limiting recbot" in checks["Slack bot token"] and "TOKEN" not in checks["Slack bot token"]


# 7. doctor --http and a port in use


def test_doctor_warns_of_a_port_in_use_with_the_starts_words(env, settings_overrides, slack, agora, tmp_path) -> None:
    slack.channels["CAPPROVE"] = True
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        (started,) = refused(["--http", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
        out = io.StringIO()
        load = lambda m: load_settings(m, _env_file=None, **settings_overrides)  # noqa: E731
        code = doctor("http", "127.0.0.1", port, out, load=load)
    (line,) = [line for line in out.getvalue().splitlines() if "Slack HTTP mode" in line]
    assert line.startswith("[warn]") and started.removeprefix("recbot cannot start: ") in line, line
    assert code == 0, out.getvalue()


# 8. A wrong signing secret is named in the log, once a minute


def test_a_wrong_signing_secret_is_named_in_the_log_at_most_once_a_minute(bot, slack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = SlackDriver(bot.url, "not-the-signing-secret-at-all", slack.response_url())
    for _ in range(3):
        assert wrong.command("get live na").status_code == 401
    logs = [r.getMessage() for r in caplog.records]
    named = [line for line in logs if "SLACK_SIGNING_SECRET" in line]
    assert len(named) == 1 and "requests with an invalid signature were refused" in named[0], logs
    for text in (SIGNING_SECRET, "not-the-signing-secret-at-all", "get live na", "get+live+na", "UALICE"):
        assert not any(text in line for line in logs), text


def test_the_throttle_lets_one_through_a_minute() -> None:
    from bot.server import Throttle

    now = [1000.0]
    throttle = Throttle(60, clock=lambda: now[0])
    assert throttle.ready() and not throttle.ready()
    now[0] += 59.9
    assert not throttle.ready()
    now[0] += 0.1
    assert throttle.ready() and not throttle.ready()


# 9. Socket Mode without a URL


def test_an_answer_without_a_connection_url_is_a_one_line_refusal(slack: FakeSlack) -> None:
    slack.socket_url = None
    with pytest.raises(StartupError, match="without a connection URL"):
        socket_mode_url(APP_TOKEN, slack.api_url)
    answers_ok_alone = LoopbackServer(
        lambda *_: (200, {"Content-Type": "application/json"}, json.dumps({"ok": True}).encode())
    ).start()
    try:
        with pytest.raises(StartupError, match="without a connection URL"):
            socket_mode_url(APP_TOKEN, answers_ok_alone.url + "/api/")
    finally:
        answers_ok_alone.stop()


@pytest.fixture
def elsewhere() -> Any:
    """A server that records what reaches it: where a redirect from SLACK_API_URL points."""
    reached: list[dict[str, str]] = []

    def record(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        reached.append(headers)
        return 200, {"Content-Type": "application/json"}, b'{"ok": true, "url": "wss://x.example/", "team": "Evil"}'

    server = LoopbackServer(record).start()
    server.reached = reached  # type: ignore[attr-defined]
    yield server
    server.stop()


def redirecting(to: str, status: int = 302) -> LoopbackServer:
    return LoopbackServer(lambda *_: (status, {"Location": to + "/api/auth.test"}, b"")).start()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_from_slack_api_url_is_not_followed_and_names_the_setting(
    env, tmp_path, settings_overrides, elsewhere, status
) -> None:
    """urllib would carry the token's Authorization header on to the redirect's target."""
    portal = redirecting(elsewhere.url, status)
    try:
        said = f"SLACK_API_URL answered auth.test with a redirect to {elsewhere.url} (HTTP {status}), which"
        (line,) = refused(HTTP, {**env, "SLACK_API_URL": portal.url + "/api/"}, tmp_path)
        assert said in line and "it would carry SLACK_BOT_TOKEN there" in line and "https://slack.com/api/" in line
        _, checks = run_doctor({**settings_overrides, "SLACK_API_URL": portal.url + "/api/"})
        assert checks["Slack bot token"].startswith("FAIL") and said in checks["Slack bot token"]
        with pytest.raises(StartupError, match="redirect"):
            socket_mode_url(APP_TOKEN, portal.url + "/api/")
    finally:
        portal.stop()
    assert elsewhere.reached == []  # no token went there, nor anything else


def test_the_listeners_clients_follow_no_redirect_directly_or_through_a_proxy(elsewhere) -> None:
    portal = redirecting(elsewhere.url)
    try:
        clients = [
            metered_copy(NoRedirectWebClient(token=BOT_TOKEN, base_url=portal.url + "/api/"), Metrics()),
            NoRedirectWebClient(token=BOT_TOKEN, base_url="http://slack.invalid/api/", proxy=portal.url),
        ]
        for client in clients:
            with pytest.raises(SlackApiError) as refused_call:
                client.chat_postMessage(channel="C1", text="hi")
            assert refused_call.value.response.status_code == 302
    finally:
        portal.stop()
    assert elsewhere.reached == []


@pytest.mark.parametrize(
    ("status", "body"), [(404, b"<html>Not Found</html>"), (200, b"<html>Sign in to continue</html>")]
)
def test_an_answer_that_is_not_slacks_names_slack_api_url(env, tmp_path, settings_overrides, status, body) -> None:
    """A wrong path, or a proxy's login page: not the token's fault."""
    page = LoopbackServer(lambda *_: (status, {"Content-Type": "text/html"}, body)).start()
    try:
        said = f"what answered auth.test at SLACK_API_URL is not Slack's Web API (HTTP {status}). Set SLACK_API_URL"
        (line,) = refused(HTTP, {**env, "SLACK_API_URL": page.url + "/api/"}, tmp_path)
        assert said in line and "SLACK_BOT_TOKEN" not in line
        # One line: not slack_sdk's own besides it, quoting the page.
        assert cli(HTTP, tmp_path, {**env, "SLACK_API_URL": page.url + "/api/"}).stderr.splitlines() == [line]
        _, checks = run_doctor({**settings_overrides, "SLACK_API_URL": page.url + "/api/"})
        assert said in checks["Slack bot token"] and "SLACK_BOT_TOKEN" not in checks["Slack bot token"]
        channel = f"conversations.info at SLACK_API_URL is not Slack's Web API (HTTP {status})"
        assert channel in checks["Approval channel"] and "scope" not in checks["Approval channel"]
    finally:
        page.stop()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((302, {"Location": "http://127.0.0.1:9/login"}, b""), "with a redirect to http://127.0.0.1:9 (HTTP 302)"),
        ((200, {"Content-Type": "text/html"}, b"<html>Proxy login</html>"), "is not Slack's Web API (HTTP 200)"),
    ],
)
def test_a_proxy_that_answers_itself_is_named_not_only_slack_api_url(env, tmp_path, slack, answer, said) -> None:
    """The proxy (HTTPS_PROXY) may be what answered: the operator is sent to it first."""
    proxy = LoopbackServer(lambda *_: answer).start()
    try:
        direct = {"NO_PROXY": "", "no_proxy": "", "HTTPS_PROXY": proxy.url}
        (line,) = refused(HTTP, {**env, **direct}, tmp_path)
    finally:
        proxy.stop()
    assert said in line and "SLACK_API_URL (through the proxy in HTTPS_PROXY)" in line and "Check that proxy" in line
    assert proxy.url not in line.replace("http://127.0.0.1:9", "")  # the proxy's value is never shown


def test_a_relative_redirect_is_named_by_the_host_it_stays_on(env, tmp_path, elsewhere) -> None:
    portal = LoopbackServer(lambda *_: (302, {"Location": "/other/api/auth.test"}, b"")).start()
    try:
        (line,) = refused(HTTP, {**env, "SLACK_API_URL": portal.url + "/api/"}, tmp_path)
    finally:
        portal.stop()
    assert f"with a redirect to {portal.url} (HTTP 302)" in line


def test_socket_mode_never_falls_back_to_serving_http(env, tmp_path, slack: FakeSlack) -> None:
    slack.socket_url = None
    done = cli([], tmp_path, env, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("recbot cannot start: ")]
    assert "Slack answered apps.connections.open without a connection URL: try again in a minute" in line
    assert "serving HTTP" not in done.stderr


# 11. Polish: the form, doctor's own words, --port and --host


def storage_values(**change: Any) -> form.FormValues:
    values = {"change_storage": True, "vendor": 1, "region": 0, "bucket": "rec-bucket"}
    values |= {"access_key": "AKIAEXAMPLE12345", "secret_key": "secret-example-987"}
    return form.FormValues(**(values | change))


def test_the_same_key_in_both_fields_is_refused_on_the_form() -> None:
    proposal, errors = form.to_proposal(storage_values(access_key="SAME-KEY-12345", secret_key="SAME-KEY-12345"))
    assert proposal is None
    assert errors == {
        form.BLOCK_SECRET_KEY: "The access key and the secret key are the same: paste each in its own field."
    }


@pytest.mark.parametrize(
    ("change", "block", "says"),
    [
        ({"bucket": "a" * 300}, form.BLOCK_BUCKET, "Amazon S3 bucket names are 3-63 lowercase letters"),
        ({"bucket": "a" * 64}, form.BLOCK_BUCKET, "Amazon S3 bucket names are 3-63 lowercase letters"),
        ({"access_key": "K" * 600}, form.BLOCK_ACCESS_KEY, "keys are at most 512 printable ASCII characters"),
        ({"secret_key": "K" * 513}, form.BLOCK_SECRET_KEY, "keys are at most 512 printable ASCII characters"),
        ({"vendor": 5, "secret_key": "Zm9v" * 200}, form.BLOCK_SECRET_KEY, "at most 512 characters"),
    ],
    ids=["bucket-300", "bucket-64", "access-600", "secret-513", "azure-key-800"],
)
def test_oversize_fields_get_the_vendors_rule_not_pydantics_words(change, block, says) -> None:
    if change.get("vendor") == 5:
        change |= {"region": None, "access_key": "devstoreaccount1", "bucket": "recordings"}
    proposal, errors = form.to_proposal(storage_values(**change))
    assert proposal is None and says in errors[block], errors
    assert not any("should have" in text for text in errors.values()), errors


def test_doctor_does_not_tell_itself_to_run_doctor(settings_overrides, slack, agora) -> None:
    agora.customer_secret = "rotated-elsewhere"
    _, checks = run_doctor(settings_overrides)
    line = checks["Agora"]
    assert line.startswith("FAIL") and "AGORA_CUSTOMER_SECRET" in line and "doctor" not in line, line


def test_doctor_names_the_seal_key_only_when_the_first_start_makes_one(settings_overrides, slack, agora) -> None:
    _, generated = run_doctor(settings_overrides)
    assert generated["Database"].endswith("the first start creates it and its seal key")
    _, configured = run_doctor({**settings_overrides, "RECBOT_SEAL_KEY": SEAL_KEY})
    assert configured["Database"].endswith("the first start creates it") and "seal key" not in configured["Database"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--port", "70000"],
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log "
            "names): pass the port to listen on, e.g. --port 3000",
        ),
        (["--host", "[::1]"], "--host has brackets around an IPv6 address: pass it without them, e.g. --host ::1"),
    ],
)
def test_port_and_host_problems_say_what_is_accepted(env, tmp_path: Path, args, says) -> None:
    (line,) = refused(["--http", *args], env, tmp_path)
    assert line == "recbot cannot start: " + says
    assert doctor_failures(["--http", *args], env, tmp_path) == [says]
