"""What serving the Bolt app is made of: the WSGI gate of HTTP mode on waitress (a
multi-threaded production WSGI server) with `/healthz`, Socket Mode's handler, the
listening address and Slack's tokens checked before a start, and a clean finish.
recbot/serve.py runs them until SIGTERM."""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urljoin

from prometheus_client import Counter
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.builtin.client import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from sqlalchemy.exc import SQLAlchemyError
from waitress.server import create_server

from bot.agora import redirected_to
from bot.background import Background
from bot.inbound import check_request, is_handled
from bot.metrics import Metrics
from bot.metrics_listener import MetricsListener, address, bracketed
from bot.services import MeteredWebClient, Services, slack_client, slack_proxy_variable, slack_unreachable
from bot.settings import Settings, database_unusable, is_host_name, is_ip_address, is_port, shown_database_url
from bot.slack_web import NoRedirectWebClient, unlogged_answers

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20  # Slack payloads are a few KB; refuse anything huge before parsing

HealthCheck = Callable[[], dict[str, Any]]

# When the Slack request now being dispatched arrived (time.monotonic()): noted by the HTTP gate or
# the Socket Mode handler on the thread that then runs Bolt's dispatch, read by recbot's middleware.
_arrived: ContextVar[float | None] = ContextVar("recbot_arrived", default=None)


def note_arrival() -> None:
    """A Slack request arrived now; Bolt dispatches it on this thread next."""
    _arrived.set(time.monotonic())


def take_arrival() -> float:
    """When the request being dispatched arrived (now, when nothing noted it), forgotten once read:
    a thread serves request after request."""
    arrived = _arrived.get()
    _arrived.set(None)
    return time.monotonic() if arrived is None else arrived


def _json(start_response: Callable[..., Any], status: str, content: dict[str, Any]) -> list[bytes]:
    body = json.dumps(content).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


SIGNATURE_WARNING = (
    "requests with an invalid signature were refused; if every Slack request fails, check SLACK_SIGNING_SECRET "
    "(the Signing Secret under Basic Information > App Credentials)"
)
SIGNATURE_WARNING_EVERY = 60.0  # seconds: a wrong secret fails every request, and one line a minute says so


class Throttle:
    """True at most once every `every` seconds: a warning that repeats per request would flood the log."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def ready(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self._every:
                return False
            self._last = now
            return True


def wsgi_app(
    app: App, health: HealthCheck, signing_secret: str, clock: Callable[[], float] = time.monotonic
) -> Callable[..., Iterable[bytes]]:
    """POST /slack/events to Bolt once signed and well-formed, GET /healthz to `health`. Refused
    signatures are logged at most once a minute, naming the setting, never the request."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)
    verifier = SignatureVerifier(signing_secret)
    bad_signature = Throttle(SIGNATURE_WARNING_EVERY, clock)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path in ("/healthz", "/readyz") and method in ("GET", "HEAD"):  # in HTTP mode, ready is healthy
            report = health()
            return _json(start_response, "200 OK" if report.get("ok") else "503 Service Unavailable", report)
        if path == EVENTS_PATH and method == "POST":
            note_arrival()
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            headers["content-type"] = environ.get("CONTENT_TYPE", "")
            refused = check_request(body, headers, verifier)
            if refused:
                status, reason = refused
                if status == 401 and bad_signature.ready():
                    log.warning(SIGNATURE_WARNING)
                return _json(
                    start_response, f"{status} {'Unauthorized' if status == 401 else 'Bad Request'}", {"error": reason}
                )
            environ["wsgi.input"] = io.BytesIO(body)
        return slack(environ, start_response)

    return application


def make_http_server(app: App, services: Services, host: str, port: int, threads: int = 16) -> Any:
    """A waitress server, not yet running: call `.run()`, stop with `.close()`."""
    return create_server(
        wsgi_app(app, services.health, services.settings.SLACK_SIGNING_SECRET.get_secret_value()),
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_BODY_BYTES,
        ident="recbot",
    )


REFUSED_WARNING_EVERY = 60.0  # seconds: Slack refusing every connection would otherwise warn every 5 s


class CountingSocketModeClient(SocketModeClient):
    """slack_sdk's Socket Mode client, which reconnects on its own (on a close, or when its monitor
    finds the session dead), counting every connection it opens after the first."""

    def __init__(self, *, reconnects: Counter | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reconnects = reconnects
        self._opened = 0
        self._was_connected = False
        self._refused = Throttle(REFUSED_WARNING_EVERY)

    def connect(self) -> None:
        super().connect()  # a handshake Slack refused is only logged: the monitor tries a new URL
        self._opened += 1  # a reconnect holds connect_operation_lock; the first connect is alone
        if self._opened > 1 and self._reconnects is not None:
            self._reconnects.inc()
        if self.is_connected():
            if not self._was_connected:
                self._was_connected = True
                log.info("recbot connected in Socket Mode")
        elif self._refused.ready():  # slack_sdk says "A new session has been established" even so
            log.warning(
                "Slack did not accept the Socket Mode connection (slack_sdk logged its answer); "
                "a new one is tried every 5 s"
            )


class GuardedSocketModeHandler(SocketModeHandler):
    """Acks and drops envelopes of a shape recbot does not handle instead of
    letting Bolt's parsing raise on them, as the HTTP gate does; notes each envelope's arrival."""

    def __init__(self, app: App, app_token: str, web_client: WebClient, metrics: Metrics | None = None) -> None:
        # Bolt's SocketModeHandler.__init__, with a client that counts its reconnects.
        self.app = app
        self.app_token = app_token
        self.client = CountingSocketModeClient(
            reconnects=metrics.socket_mode_reconnects if metrics is not None else None,
            app_token=app_token,
            logger=app.logger,
            web_client=web_client,
            proxy=app.client.proxy,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        note_arrival()
        if not is_handled(req.type, req.payload):
            log.warning("dropped a Socket Mode envelope recbot does not handle (type %s)", req.type)
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        super().handle(client, req)


def socket_mode_handler(app: App, app_token: str, api_url: str, metrics: Metrics | None = None) -> SocketModeHandler:
    """Socket Mode over the WebSocket URL that `apps.connections.open` returns; with `metrics`, its
    calls of apps.connections.open and its reconnects are counted, and its connection shown."""
    if metrics is None:
        return GuardedSocketModeHandler(app, app_token, NoRedirectWebClient(token=app_token, base_url=api_url))
    web_client = MeteredWebClient(metrics, token=app_token, base_url=api_url)
    handler = GuardedSocketModeHandler(app, app_token, web_client, metrics)
    client = handler.client
    metrics.socket_mode_connected.set_function(lambda: 1.0 if client.is_connected() else 0.0)
    return handler


class StartupError(Exception):
    """recbot cannot start; the message is one line: what is wrong and how to fix it."""


HOST_FIX = (
    "pass an IP address of this machine, e.g. --host 127.0.0.1 behind a reverse proxy on this host, "
    "or --host 0.0.0.0 for every interface"
)


def listen_problems(host: str, port: str) -> list[str]:
    """What is wrong with `--host` and `--port` as typed, one `<what is wrong>: <how to fix it>`
    line each; none when they are an address and a port. The host is an IP address (or
    localhost): a host name would be looked up in DNS, and where recbot listens should not
    hang on a name server. Port 0 asks for any free port, which the start's log names
    (tests use it); a port past 65535 would wrap around silently."""
    problems = []
    if host.startswith("[") and host.endswith("]") and is_ip_address(host[1:-1]):
        problems.append(f"--host has brackets around an IPv6 address: pass it without them, e.g. --host {host[1:-1]}")
    elif is_host_name(host) and host != "localhost":
        problems.append(f"--host is a host name, not an IP address: {HOST_FIX}")
    elif not (is_ip_address(host) or host == "localhost"):
        problems.append(f"--host is not an IP address: {HOST_FIX}")
    if not is_port(port):
        problems.append(
            "--port must be a whole number from 0 to 65535 (0 takes any free port, which the log names): "
            "pass the port to listen on, e.g. --port 3000"
        )
    return problems


def _listen_addresses(host: str, port: int) -> list[tuple[Any, ...]] | str:
    """The addresses waitress would listen on, or the problem line when `host` has none.
    `host` is an IP address or localhost (listen_problems): nothing asks a name server."""
    numeric = 0 if host == "localhost" else socket.AI_NUMERICHOST
    try:
        return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | numeric))
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return f"--host {host} resolves to no address ({reason}): {HOST_FIX}"


def in_use(host: str, port: int, fix: str = "pass --port") -> str:
    """The words for a port something else listens on, the start's and doctor's."""
    return f"port {port} on {bracketed(host)} is already in use: stop what uses it, or {fix}"


def cannot_listen(host: str, port: int, port_fix: str = "pass --port", host_fix: str = HOST_FIX) -> str | None:
    """Why waitress could not listen on `host`:`port`, found by binding each address as it
    will and letting go at once, so that a start is refused before it creates anything."""
    found = _listen_addresses(host, port)
    if isinstance(found, str):
        return found
    for family, kind, proto, _name, sockaddr in found:
        try:
            with socket.socket(family, kind, proto) as trial:
                trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
                trial.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return in_use(host, port, port_fix)
            return f"cannot listen on {address(host, port)} ({exc.strerror}): {host_fix}"
    return None


def finish(app: App, services: Services, sweeper: Background, metrics: MetricsListener | None = None) -> None:
    """Let listeners that already acked finish (an approval being applied), then close the store
    (and the metrics listener: scraped until the end)."""
    services.drift.stop()  # a pass can outlast the sweeper's join: end it, not close the store under it
    sweeper.stop()
    app.listener_runner.listener_executor.shutdown(wait=True)
    if metrics is not None:
        metrics.close()
    services.close()
    log.info("recbot stopped cleanly")


# What Slack answers when a token is wrong, revoked, of the wrong kind or short of a scope:
# only these blame the token. Rate limits and Slack's own trouble say so instead.
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
    }
)
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
SLACK_TROUBLE = frozenset({"fatal_error", "internal_error", "service_unavailable", "request_timeout"})
_SLACK_ERROR = re.compile(r"[a-z_]{1,64}")
SLACK_API_URL_FIX = "Set SLACK_API_URL to Slack's Web API, https://slack.com/api/ (or the proxy that stands in for it)"
BOT_USER_OAUTH_ADVICE = (
    "copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions, after installing the app to the workspace"
)
APP_LEVEL_ADVICE = (
    "generate an App-Level Token with connections:write under Basic Information > App-Level Tokens, "
    "and turn Socket Mode on"
)


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code, or the HTTP status when the answer had none (an HTML error page is not quoted)."""
    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
    return error if isinstance(error, str) and _SLACK_ERROR.fullmatch(error) else f"HTTP {exc.response.status_code}"


def slack_trouble(exc: SlackApiError) -> str | None:
    """`<what>: <how to fix>` when Slack is rate-limiting or failing, whatever the token; None otherwise."""
    error, status = slack_error(exc), exc.response.status_code
    if status == 429 or error in RATE_LIMITED:
        return f"Slack is rate-limiting recbot ({error}): try again in a minute"
    if status >= 500 or error in SLACK_TROUBLE:
        return f"Slack is unavailable ({error}): try again in a minute (https://status.slack.com shows incidents)"
    return None


def slack_refusal(exc: SlackApiError, setting: str, method: str, fix: str) -> str:
    """Why Slack refused `method` with the token in `setting`: the token only when Slack says so;
    SLACK_API_URL when what answered was a redirect (not followed) or not Slack's API at all."""
    trouble = slack_trouble(exc) or not_slacks_answer(exc, setting, method)
    if trouble:
        return trouble
    error = slack_error(exc)
    if error in TOKEN_ERRORS:
        return f"Slack rejected {setting} ({error}): {fix}"
    return f"Slack answered {method} with {error}: check {setting} ({fix}), or try again in a minute"


def not_slacks_answer(exc: SlackApiError, setting: str, method: str) -> str | None:
    """`<what>: <how to fix>` naming SLACK_API_URL when what answered `method` was a redirect (not
    followed: it would carry the token in `setting` elsewhere) or not Slack's API at all (no error
    code of Slack's: a proxy's page, a 404 of a wrong path); None when it was Slack."""
    status, asked = exc.response.status_code, exc.response.api_url
    proxy = slack_proxy_variable(asked)
    # Through a proxy, the proxy may be what answered: it is named, and checked first.
    where, fix = (
        (f"SLACK_API_URL (through the proxy in {proxy})", f"Check that proxy, or: {SLACK_API_URL_FIX}")
        if proxy
        else ("SLACK_API_URL", SLACK_API_URL_FIX)
    )
    if 300 <= status < 400:
        headers = exc.response.headers or {}
        said = next((v for k, v in headers.items() if k.lower() == "location"), None)
        location = redirected_to(urljoin(asked, said)) if said else None  # a relative one names the same host
        return (
            f"{where} answered {method} with a redirect{f' to {location}' if location else ''} (HTTP {status}), "
            f"which recbot does not follow: it would carry {setting} there. {fix}"
        )
    error = slack_error(exc)
    if error.startswith("HTTP "):
        return f"what answered {method} at {where} is not Slack's Web API ({error}). {fix}"
    return None


def _unsendable(setting: str) -> StartupError:
    # Settings refuse such a value; this keeps a token that slipped past them from ending in a traceback.
    return StartupError(
        f"{setting} contains a character that cannot be sent to Slack (not printable ASCII): "
        f"set it again, pasting the value alone"
    )


# What PostgreSQL's refusals mean for recbot, by psycopg's name for them (SQLSTATE 42501, 3F000).
POSTGRESQL_FIXES = {
    "InsufficientPrivilege": (
        "the user in DATABASE_URL may not create or write recbot's tables; grant it (e.g. make it the "
        "database's owner, or GRANT CREATE, USAGE ON SCHEMA public TO it), or change DATABASE_URL"
    ),
    "InvalidSchemaName": (
        "the schema recbot is to use (search_path in DATABASE_URL's options) does not exist: create it, "
        "or change DATABASE_URL"
    ),
}


def database_problem(database_url: str, exc: SQLAlchemyError) -> str:
    """`<what>: <how to fix>` for a database recbot could not use (a start's, migrate's and doctor's
    words), with what the driver said where it tells what to fix: SQLite's own words (they
    hold no secret), or the PostgreSQL database that does not exist."""
    orig = getattr(exc, "orig", None) or exc
    said = " ".join(str(orig).split())
    shown = shown_database_url(database_url)
    missing = re.search(r'(database|role) "([^"]{1,128})" does not exist', said)
    if missing:
        what, name = missing.groups()
        create = "createdb" if what == "database" else "createuser"
        return (
            f"the {what} {name!r} does not exist on the server of {shown}: create it (e.g. {create}), "
            "or change DATABASE_URL"
        )
    if type(orig).__name__ in POSTGRESQL_FIXES:
        return f"cannot use the database at {shown} ({type(orig).__name__}): {POSTGRESQL_FIXES[type(orig).__name__]}"
    reason = type(orig).__name__
    if isinstance(orig, sqlite3.Error) and said:
        reason += f": {said[:200]}"
    return database_unusable(database_url, reason)


def verify_bot_token(settings: Settings) -> None:
    """auth.test with the bot token, or StartupError saying why Slack refused it."""
    try:
        with unlogged_answers():
            slack_client(settings).auth_test()
    except SlackApiError as exc:
        raise StartupError(slack_refusal(exc, "SLACK_BOT_TOKEN", "auth.test", BOT_USER_OAUTH_ADVICE)) from None
    except UnicodeError:
        raise _unsendable("SLACK_BOT_TOKEN") from None
    except (SlackClientError, OSError) as exc:
        raise StartupError(slack_unreachable(settings.SLACK_API_URL, exc)) from None


def socket_mode_url(app_token: str, api_url: str, client: WebClient | None = None) -> str:
    """The WebSocket URL of a new Socket Mode connection, or StartupError saying why there is none;
    asked with `client` when given (doctor's answers sooner and retries nothing)."""
    client = client or NoRedirectWebClient(token=app_token, base_url=api_url, timeout=10)
    try:
        with unlogged_answers():
            answer = client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise StartupError(slack_refusal(exc, "SLACK_APP_TOKEN", "apps.connections.open", APP_LEVEL_ADVICE)) from None
    except UnicodeError:
        raise _unsendable("SLACK_APP_TOKEN") from None
    except (SlackClientError, OSError) as exc:
        raise StartupError(slack_unreachable(api_url, exc)) from None
    url = answer.get("url") if isinstance(answer.data, dict) else None
    if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
        raise StartupError(
            "Slack answered apps.connections.open without a connection URL: try again in a minute, "
            "and check that Socket Mode is on (Settings > Socket Mode)"
        )
    return url
