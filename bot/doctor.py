"""`python -m recbot doctor [--http]`: checks what a start in that mode needs,
changing nothing. Checks run at once, each bounded, and are printed as they
finish; the exit code is 1 if any failed."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.access import is_group
from bot.agora import (
    AgoraClient,
    AgoraError,
    AgoraForbidden,
    AgoraNotFound,
    AgoraRedirected,
    AgoraUnauthorized,
    AgoraUnavailable,
    AgoraUntrusted,
    redirected_to,
)
from bot.catalog import API_REGIONS
from bot.metrics_listener import METRICS_FIX, on_slack_port, url
from bot.models import Target
from bot.seal import SealError, key_file_for, missing_key, other_key, resolve_seal_key
from bot.server import (
    BOT_USER_OAUTH_ADVICE,
    EVENTS_PATH,
    POSTGRESQL_FIXES,
    StartupError,
    cannot_listen,
    database_problem,
    in_use,
    listen_problems,
    not_slacks_answer,
    slack_error,
    slack_refusal,
    slack_trouble,
    socket_mode_url,
)
from bot.services import slack_unreachable
from bot.settings import (
    Mode,
    Settings,
    SettingsError,
    cleartext_upstreams,
    load_settings,
    shown_database_url,
    sqlite_file_problem,
    unread_names,
)
from bot.slack_web import NoRedirectWebClient
from bot.store import a_sealed_value, migrations, sealed_rows
from bot.store.engine import make_engine, sqlite_in_use, sqlite_unwritable
from bot.store.schema import observed_configs

# Each upstream call gives up after this; the doctor as a whole after DEADLINE.
CHECK_TIMEOUT = 2
DEADLINE = 3.0
SHOWN_ENTRY_POINTS = 5
# Agora allows an account about this many calls a second; above it, expect 429s.
AGORA_ACCOUNT_RATE = 50
# How long the drift check waits for the Agora check's list of entry points (RECBOT_DRIFT_ALL).
LIST_WAIT = DEADLINE - 0.5

EntryPoints = Future[list[str] | None]  # the Agora check's list, None when it failed

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        return f"[{self.status}]".ljust(7) + f"{self.name}: {self.detail}"


def _slack(token: str, settings: Settings) -> WebClient:
    """A client that answers within CHECK_TIMEOUT and retries nothing."""
    return NoRedirectWebClient(token=token, base_url=settings.SLACK_API_URL, timeout=CHECK_TIMEOUT, retry_handlers=[])


NETWORK_FIX = "check the network and SLACK_API_URL"


def _slack_failure(exc: Exception, settings: Settings, method: str, fix: str) -> str:
    """What went wrong, and what to fix: Slack's error and `fix`, waiting when Slack is rate-limiting
    or failing, SLACK_API_URL when what answered is not Slack, the network when nothing did."""
    if isinstance(exc, SlackApiError):
        problem = slack_trouble(exc) or not_slacks_answer(exc, "SLACK_BOT_TOKEN", method)
        return problem or f"Slack said {slack_error(exc)}: {fix}"
    return slack_unreachable(settings.SLACK_API_URL, exc, NETWORK_FIX)


SLACK_FAILURES = (SlackApiError, SlackClientError, OSError)


def check_bot_token(settings: Settings) -> Check:
    try:
        answer = _slack(settings.SLACK_BOT_TOKEN.get_secret_value(), settings).auth_test()
    except SlackApiError as exc:  # in a start's words
        return Check(
            "Slack bot token", "FAIL", slack_refusal(exc, "SLACK_BOT_TOKEN", "auth.test", BOT_USER_OAUTH_ADVICE)
        )
    except SLACK_FAILURES as exc:
        return Check("Slack bot token", "FAIL", slack_unreachable(settings.SLACK_API_URL, exc, NETWORK_FIX))
    return Check("Slack bot token", "ok", f"bot {answer.get('user')} in workspace {answer.get('team')}")


def check_app_token(settings: Settings) -> Check:
    """Socket Mode: the App-Level Token opens a connection URL (nothing connects to it), as a start asks."""
    assert settings.SLACK_APP_TOKEN is not None
    token = settings.SLACK_APP_TOKEN.get_secret_value()
    try:
        socket_mode_url(token, settings.SLACK_API_URL, _slack(token, settings))
    except StartupError as exc:
        return Check("Slack Socket Mode", "FAIL", str(exc))
    return Check("Slack Socket Mode", "ok", "the app token opens a Socket Mode connection")


def _listen_url(host: str, port: int) -> str:
    """Where recbot will listen, as a URL; port 0 is the free one the start's log names."""
    return url(host, port) if port else url(host, 0).removesuffix("0") + "<a free port>"


def check_request_url(host: str, port: int) -> Check:
    unusable = cannot_listen(host, port)
    if unusable == in_use(host, port):
        # Not a failure: doctor often runs beside the recbot that holds the port.
        return Check("Slack HTTP mode", "warn", f"{unusable} (if recbot itself runs there, that is expected)")
    if unusable:
        return Check("Slack HTTP mode", "FAIL", unusable)
    return Check(
        "Slack HTTP mode",
        "ok",
        f"recbot will listen on {_listen_url(host, port)}{EVENTS_PATH}; Slack must reach it as "
        f"https://YOUR-HOST{EVENTS_PATH}, set as the slash command's URL, Interactivity's Request URL, "
        "Interactivity's Options Load URL (the entry-point picker's search) and Event Subscriptions' "
        "Request URL (the Home tab)",
    )


def check_metrics_listener(settings: Settings, slack_port: tuple[str, int] | None = None) -> Check:
    """Where /metrics, /healthz and /readyz will be served: taken is a warning, as for the HTTP port;
    the Slack-facing `slack_port` (HTTP mode's --host and --port) fails, as a start refuses it."""
    name = "Metrics listener"
    if settings.RECBOT_METRICS_ADDR is None:
        if slack_port:  # HTTP mode: the Slack-facing port answers the probes all the same
            return Check(
                name, "ok", "off (RECBOT_METRICS_ADDR=off): no /metrics; /healthz and /readyz on the Slack port"
            )
        return Check(name, "ok", "off (RECBOT_METRICS_ADDR=off): no /metrics, /healthz or /readyz")
    clash = slack_port and on_slack_port(settings.RECBOT_METRICS_ADDR, *slack_port)
    if clash:
        return Check(name, "FAIL", clash)
    host, port = settings.RECBOT_METRICS_ADDR
    unusable = cannot_listen(host, port, port_fix=METRICS_FIX, host_fix=METRICS_FIX)
    if unusable == in_use(host, port, METRICS_FIX):
        return Check(name, "warn", f"{unusable} (if recbot itself runs there, that is expected)")
    if unusable:
        return Check(name, "FAIL", unusable)
    return Check(name, "ok", f"recbot will serve /metrics, /healthz and /readyz on {_listen_url(host, port)}")


def check_agora(settings: Settings, listed: EntryPoints | None = None) -> Check:
    """Lists the App ID's entry points; `listed` gets the names (None on failure) for the drift check."""
    names: list[str] | None = None
    try:
        check, names = _list_entry_points(settings)
        return check
    finally:
        if listed is not None:
            listed.set_result(names)


def _list_entry_points(settings: Settings) -> tuple[Check, list[str] | None]:
    client = AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        connect_timeout=CHECK_TIMEOUT,
        read_timeout=CHECK_TIMEOUT,
        max_retries=0,
    )
    app = settings.AGORA_APP_ID
    try:
        names = client.list_entry_points(app)
    except AgoraNotFound:
        return Check(
            "Agora", "FAIL", f"App ID {app} was not found: check AGORA_APP_ID (Agora Console > Projects)"
        ), None
    except AgoraUnauthorized:
        return Check(
            "Agora",
            "FAIL",
            "Agora rejected AGORA_CUSTOMER_ID / AGORA_CUSTOMER_SECRET (401): set them to a Customer ID and "
            "Customer Secret from Agora Console > Developer Toolkit > RESTful API",
        ), None
    except AgoraForbidden as exc:
        said = f" ({exc.upstream_message})" if exc.upstream_message else ""
        return Check(
            "Agora",
            "FAIL",
            f"Agora refused AGORA_CUSTOMER_ID access to App ID {app} (403){said}: check in Agora Console that "
            "this Customer ID belongs to the account that owns the project",
        ), None
    except AgoraUntrusted:
        return Check(
            "Agora",
            "FAIL",
            f"the TLS certificate shown for {settings.AGORA_API_URL} is not one recbot trusts: if a proxy or "
            "gateway re-signs traffic, set REQUESTS_CA_BUNDLE to its CA bundle",
        ), None
    except AgoraRedirected as exc:
        same_host = exc.location == redirected_to(settings.AGORA_API_URL)
        to = "" if exc.location is None else " to another path" if same_host else f" to {exc.location}"
        return Check(
            "Agora",
            "FAIL",
            f"{settings.AGORA_API_URL} answered {exc.status}, a redirect{to}, which recbot does not follow: "
            "set AGORA_API_URL to the address Agora's API answers at",
        ), None
    except AgoraUnavailable as exc:
        if exc.status is not None:  # Agora's own trouble: nothing in recbot's settings to fix
            said = f"{settings.AGORA_API_URL} answered {exc.status} ({exc.upstream_message}): Agora's side is failing"
            return Check("Agora", "FAIL", f"{said}; run doctor again later"), None
        return Check(
            "Agora",
            "FAIL",
            f"no proper answer from {settings.AGORA_API_URL} ({exc.upstream_message}): "
            "check the network and AGORA_API_URL",
        ), None
    except AgoraError as exc:
        return Check("Agora", "FAIL", exc.user_message()), None
    finally:
        client.close()
    if not names:
        return Check("Agora", "warn", f"App ID {app} has no entry points yet: create one in Agora Console"), names
    shown = ", ".join(names[:SHOWN_ENTRY_POINTS]) + (
        f" and {len(names) - SHOWN_ENTRY_POINTS} more" if len(names) > SHOWN_ENTRY_POINTS else ""
    )
    return Check("Agora", "ok", f"{len(names)} entry point(s) in App ID {app}: {shown}"), names


def _sqlite_file_missing(database_url: str) -> bool:
    """True when DATABASE_URL names a SQLite file that does not exist (connecting would create it)."""
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and bool(url.database) and not Path(str(url.database)).exists()


def remembered_targets(settings: Settings) -> set[tuple[str, str, str]]:
    """The (App ID, entry point, region) the drift watch reads again, as the database holds
    them now: nothing is created or migrated (no file, no table: none remembered)."""
    if _sqlite_file_missing(settings.DATABASE_URL):
        return set()
    engine = make_engine(settings.DATABASE_URL, connect_timeout=CHECK_TIMEOUT, read_only=True)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(observed_configs.name):
                return set()
            c = observed_configs.c
            return {(a, e, r) for a, e, r in conn.execute(select(c.app_id, c.entry_point, c.region))}
    finally:
        engine.dispose()


def listed_targets(app_id: str, names: list[str]) -> set[tuple[str, str, str]]:
    """What RECBOT_DRIFT_ALL adds: every listed entry point recbot can address, in every API region."""
    targets = set()
    for name in names:
        try:
            Target(app_id=app_id, entry_point=name, region=next(iter(API_REGIONS)))
        except ValidationError:
            continue  # not one path segment: the watch skips it too
        targets |= {(app_id, name, region) for region in API_REGIONS}
    return targets


def check_drift(settings: Settings, listed: EntryPoints) -> Check:
    """Whether a drift pass over the watched targets fits in RECBOT_DRIFT_INTERVAL_SECONDS at
    AGORA_RATE_LIMIT: if not, passes run back to back and take most of the Agora budget."""
    interval, rate = settings.RECBOT_DRIFT_INTERVAL_SECONDS, settings.AGORA_RATE_LIMIT
    if interval == 0:
        return Check("Drift watch", "ok", "off (RECBOT_DRIFT_INTERVAL_SECONDS is 0)")
    try:
        targets = remembered_targets(settings)
    except SQLAlchemyError:
        return Check("Drift watch", "warn", "could not read the targets it watches: see the Database check")
    calls, unknown = len(targets), ""
    if settings.RECBOT_DRIFT_ALL:
        try:
            names = listed.result(timeout=LIST_WAIT)
        except FutureTimeout:
            names = None
        if names is None:
            unknown = " (without the entry points RECBOT_DRIFT_ALL adds, which the Agora check could not list)"
        else:
            targets |= listed_targets(settings.AGORA_APP_ID, names)
            calls = len(targets) + 1  # and the list call
    seconds = calls / rate
    taken = f"a pass over {len(targets)} target(s){unknown} takes about {seconds:.1f} s at AGORA_RATE_LIMIT {rate:g}"
    if seconds > interval:
        return Check(
            "Drift watch",
            "warn",
            f"{taken}, longer than RECBOT_DRIFT_INTERVAL_SECONDS ({interval:g} s), so passes would run back to "
            f"back on most of recbot's Agora calls: set RECBOT_DRIFT_INTERVAL_SECONDS to at least "
            f"{math.ceil(seconds)}, or watch fewer targets",
        )
    return Check("Drift watch", "ok", f"{taken}, every {interval:g} s")


def check_database(settings: Settings) -> Check:
    """Reads the revision, what a start would apply, and whether a start would make a seal key;
    opens the database read-only, so it creates no file and migrates nothing."""
    url = make_url(settings.DATABASE_URL)
    shown = shown_database_url(settings.DATABASE_URL)
    # What a start refuses, in its words.
    unusable = (
        sqlite_file_problem(settings.DATABASE_URL)
        or sqlite_unwritable(settings.DATABASE_URL)
        or sqlite_in_use(settings.DATABASE_URL)
    )
    if unusable:
        return Check("Database", "FAIL", unusable)
    key = key_file_for(settings.DATABASE_URL) if settings.RECBOT_SEAL_KEY is None else None
    key_missing = key is not None and not key.exists()
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        made = "it and its seal key" if key_missing else "it"
        return Check("Database", "ok", f"{url.database} does not exist yet; the first start creates {made}")
    engine = make_engine(settings.DATABASE_URL, connect_timeout=CHECK_TIMEOUT, read_only=True)
    head = migrations.head()
    try:
        with engine.connect() as conn:
            try:
                where = migrations.position(conn)
                todo = migrations.pending(conn)
            except migrations.UnknownRevision as exc:
                return Check("Database", "FAIL", str(exc))
            sealed = sealed_rows(conn) if key_missing else 0
            refusal = _cannot_create(conn) if todo and conn.dialect.name == "postgresql" else None
            sample = None if key_missing else a_sealed_value(conn)
    except SQLAlchemyError as exc:
        return Check("Database", "FAIL", database_problem(settings.DATABASE_URL, exc))
    finally:
        engine.dispose()
    if refusal:
        fix = POSTGRESQL_FIXES[refusal]
        return Check("Database", "FAIL", f"a start would refuse: cannot use the database at {shown} ({refusal}): {fix}")
    if sealed and key is not None:
        return Check("Database", "FAIL", f"a start would refuse: {missing_key(key, sealed)}")
    if sample is not None:
        configured = settings.RECBOT_SEAL_KEY.get_secret_value() if settings.RECBOT_SEAL_KEY else None
        try:
            key_now = resolve_seal_key(configured, settings.DATABASE_URL)  # the file exists: it makes none
        except SealError as exc:  # the file cannot be read
            return Check("Database", "FAIL", str(exc))
        mismatch = other_key(key_now, configured is not None, settings.DATABASE_URL, sample)
        if mismatch:
            return Check("Database", "FAIL", mismatch)
    applies = "; ".join(f"{revision} {title}" for revision, title in todo)
    plan = f"a start applies {len(todo)} revision(s): {applies}" if todo else "up to date"
    keyed = f"; the seal key {key} does not exist, and nothing is sealed yet: a start makes it" if key_missing else ""
    return Check("Database", "ok", f"{shown}: {where.describe()}, head {head}; {plan}{keyed}")


def _cannot_create(conn: Connection) -> str | None:
    """Why a start could not create recbot's tables on this PostgreSQL, as psycopg names the
    error a start meets (a key of POSTGRESQL_FIXES); None when it could. Asked, not tried:
    doctor opens the database to read only."""
    query = text("SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')")
    schema, may = conn.execute(query).one()
    if schema is None:
        return "InvalidSchemaName"
    return None if may else "InsufficientPrivilege"


def check_rate_limit(settings: Settings) -> Check | None:
    """A warning when AGORA_RATE_LIMIT is above what Agora allows an account; None otherwise."""
    rate = settings.AGORA_RATE_LIMIT
    if rate <= AGORA_ACCOUNT_RATE:
        return None
    return Check(
        "Agora rate limit",
        "warn",
        f"AGORA_RATE_LIMIT is {rate:g} calls/s, but Agora allows an account about {AGORA_ACCOUNT_RATE} a second: "
        f"expect Agora to refuse calls (429) at busy times; set it to {AGORA_ACCOUNT_RATE} or less (default 40)",
    )


def check_approvers(settings: Settings) -> Check:
    ids, needed = settings.RECBOT_APPROVERS, settings.RECBOT_REQUIRED_APPROVALS
    if not ids:
        return Check("Approvers", "FAIL", "RECBOT_APPROVERS is empty: storage changes could never be approved")
    people = {i for i in ids if not is_group(i)}
    unreadable = []
    client = _slack(settings.SLACK_BOT_TOKEN.get_secret_value(), settings)
    for group in filter(is_group, ids):
        try:
            people |= set(client.usergroups_users_list(usergroup=group)["users"])
        except SLACK_FAILURES as exc:
            unreadable.append(
                f"{group} ({_slack_failure(exc, settings, 'usergroups.users.list', 'check the usergroups:read scope')})"
            )
    groups = f"; could not read group(s) {', '.join(unreadable)}" if unreadable else ""
    grouped = " with groups counted as their members" if any(map(is_group, ids)) else ""
    count = f"{len(people)} approver(s){grouped}, {needed} needed"
    if len(people) < needed:
        return Check("Approvers", "FAIL", f"{count}: no storage change could get enough approvals{groups}")
    if unreadable:
        return Check("Approvers", "warn", count + groups)
    if len(people) == needed:
        return Check("Approvers", "warn", f"{count}: an approver's own request can never get enough approvals")
    return Check("Approvers", "ok", count)


def check_approval_channel(settings: Settings) -> Check:
    channel = settings.RECBOT_APPROVAL_CHANNEL
    if not channel:
        return Check("Approval channel", "ok", "unset: each approver gets the cards as a direct message")
    try:
        info = _slack(settings.SLACK_BOT_TOKEN.get_secret_value(), settings).conversations_info(channel=channel)
    except SLACK_FAILURES as exc:
        return Check(
            "Approval channel",
            "warn",
            f"could not check {channel}: "
            + _slack_failure(
                exc,
                settings,
                "conversations.info",
                "it may be private without the bot in it (invite it), or the app lacks "
                "the channels:read and groups:read scopes (reinstall it from app.yaml)",
            ),
        )
    if not info["channel"].get("is_member"):
        return Check(
            "Approval channel", "warn", f"the bot is not in {channel}: cards cannot be posted until `/invite @recbot`"
        )
    return Check("Approval channel", "ok", f"the bot is in {channel}")


def checks_for(settings: Settings, mode: Mode, host: str, port: int) -> list[tuple[str, Callable[[], Check]]]:
    slack_mode = ("Slack Socket Mode", lambda: check_app_token(settings))
    if mode == "http":
        slack_mode = ("Slack HTTP mode", lambda: check_request_url(host, port))
    listed: EntryPoints = Future()
    return [
        ("Slack bot token", lambda: check_bot_token(settings)),
        slack_mode,
        ("Metrics listener", lambda: check_metrics_listener(settings, (host, port) if mode == "http" else None)),
        ("Agora", lambda: check_agora(settings, listed)),
        ("Database", lambda: check_database(settings)),
        ("Drift watch", lambda: check_drift(settings, listed)),
        ("Approvers", lambda: check_approvers(settings)),
        ("Approval channel", lambda: check_approval_channel(settings)),
    ]


def run_checks(
    checks: list[tuple[str, Callable[[], Check]]], on_result: Callable[[Check], None], deadline: float = DEADLINE
) -> list[Check]:
    """Run every check at once on daemon threads (a hung one cannot hold up
    the exit); report each as it finishes, and any still running at the
    deadline as failed."""
    results: queue.Queue[Check] = queue.Queue()

    def run(name: str, check: Callable[[], Check]) -> None:
        try:
            results.put(check())
        except Exception as exc:  # noqa: BLE001 - a check's crash is its finding
            results.put(Check(name, "FAIL", f"the check itself failed ({type(exc).__name__})"))

    for name, check in checks:
        threading.Thread(target=run, args=(name, check), name=f"doctor-{name}", daemon=True).start()
    done: list[Check] = []
    ends = time.monotonic() + deadline
    while len(done) < len(checks):
        try:
            result = results.get(timeout=max(0.0, ends - time.monotonic()))
        except queue.Empty:
            break
        done.append(result)
        on_result(result)
    for name, _check in checks:
        if name not in {c.name for c in done}:
            silent = Check(name, "FAIL", f"no answer within {deadline:.0f} s")
            done.append(silent)
            on_result(silent)
    return done


def doctor(
    mode: Mode, host: str, port: int | str, out: TextIO, load: Callable[[Mode], Settings] = load_settings
) -> int:
    """Print the live checklist for a start in `mode`; 1 if anything failed."""
    how = "HTTP mode" if mode == "http" else "Socket Mode"
    print(f"recbot doctor: checking what `./run{' --http' if mode == 'http' else ''}` ({how}) needs", file=out)

    def show(check: Check) -> None:
        print(check.line(), file=out, flush=True)

    settings: Settings | None = None
    try:
        settings = load(mode)
    except SettingsError as exc:
        for problem in exc.problems:
            show(Check("Settings", "FAIL", problem))
    unread = [Check("Settings", "warn", name.text) for name in unread_names()]
    cleartext = [Check("Upstreams", "warn", w) for w in (cleartext_upstreams(settings) if settings else [])]
    arguments = listen_problems(host, str(port))
    for problem in arguments:
        show(Check("Command line", "FAIL", problem))
    if settings is None or arguments:
        for check in unread + cleartext:  # beside what may be missing because of them
            show(check)
        where = "the settings (in .env or the environment)" if settings is None else ""
        where += (" and " if where and arguments else "") + ("--host and --port" if arguments else "")
        print(f"Fix {where} as said above, then run the doctor again.", file=out)
        return 1
    show(Check("Settings", "ok", "all present and valid"))
    rate = check_rate_limit(settings)
    warnings = unread + cleartext + ([rate] if rate else [])
    for check in warnings:
        show(check)
    results = run_checks(checks_for(settings, mode, host, int(port)), show) + warnings
    failed = sum(c.failed for c in results)
    warned = sum(c.status == "warn" for c in results)
    print(f"{len(results) + 1 - failed - warned} ok, {warned} warning(s), {failed} failed", file=out)
    return 1 if failed else 0
