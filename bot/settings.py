"""Settings from the environment and an optional `.env`; the names are public contract.

One validation for start and doctor: every problem at once, each as `<what is
wrong>: <how to fix it>`, and never a value (a value may be a secret)."""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from dotenv.parser import parse_stream
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.models import check_path_segment

Mode = Literal["socket", "http"]

# recbot names the `.env` lines it cannot read itself (unread_names), in its log's format;
# python-dotenv's own warning would be a plain-text line in a JSON log, numbered differently.
logging.getLogger("dotenv.main").setLevel(logging.ERROR)

ENV_FILE = ".env"
# Below one call a second, every Agora call waits more than a second for its turn: at 0.001 one
# `/recording get` could wait 17 minutes, and a list of 800 targets would take nine days.
MIN_RATE_LIMIT = 1.0
MAX_RATE_LIMIT = 1000.0
# A pass more often than every 30 s spends the Agora budget on re-reads (4 targets every 10 ms
# is 400 calls a second) and announces nothing a person could act on sooner; 0 turns it off.
MIN_DRIFT_INTERVAL = 30.0
MAX_DRIFT_INTERVAL = 86400.0
# A request approved weeks later would apply a change nobody remembers asking for, and its sealed
# keys would wait that long; far past any date a datetime holds, every submit would fail.
MAX_REQUEST_TTL = 30 * 86400
# Below half a second no storage check reaches its endpoint, so `require` would quietly
# become a warning on every change.
MIN_PROBE_TIMEOUT = 0.5
MAX_PROBE_TIMEOUT = 30.0

_USERS = "comma-separated Slack user IDs (U..., W..., from a profile's menu > Copy member ID) and user-group IDs (S...)"
_CHANNELS = "comma-separated Slack channel IDs (C..., G..., D..., at the bottom of a channel's details)"

# How to fix each setting, said after what is wrong with it. Every field of Settings has one.
HOW_TO_FIX: dict[str, str] = {
    "SLACK_BOT_TOKEN": "set it to the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page",
    "SLACK_SIGNING_SECRET": "set it to the Signing Secret from the app's Basic Information > App Credentials",
    "SLACK_APP_TOKEN": "set it to an App-Level Token (xapp-...) with the connections:write scope "
    "(Basic Information > App-Level Tokens), or run in HTTP mode with --http",
    "SLACK_API_URL": "set it to the base URL of the Slack Web API, or remove it to use https://slack.com/api/",
    "AGORA_CUSTOMER_ID": "set it to the Customer ID from Agora Console > Developer Toolkit > RESTful API",
    "AGORA_CUSTOMER_SECRET": "set it to the Customer Secret from Agora Console > Developer Toolkit > RESTful API",
    "AGORA_API_URL": "set it to the base URL of the Agora API, or remove it to use https://api.agora.io",
    "AGORA_APP_ID": "set it to the App ID of your Agora project (Agora Console > Projects)",
    "AGORA_DEFAULT_REGION": "set it to one of cn, ap, na, eu, or remove it to use na",
    "AGORA_RATE_LIMIT": f"set it to the Agora calls per second of the whole deployment, from {MIN_RATE_LIMIT:g} to "
    f"{MAX_RATE_LIMIT:g} (default 40; Agora allows about 50 per account)",
    "RECBOT_APPROVERS": f"set it to {_USERS}",
    "RECBOT_REQUESTERS": f"set it to {_USERS}, or remove it to let everyone request changes",
    "RECBOT_ALLOWED_CHANNELS": f"set it to {_CHANNELS}, or remove it to answer in every channel",
    "RECBOT_APPROVAL_CHANNEL": "set it to a channel ID (C... or G..., at the bottom of the channel's details), "
    "or remove it to send the cards to each approver",
    "RECBOT_APPROVAL_FOR": "set it to secrets (only changes carrying storage credentials need approval) or all",
    "RECBOT_REQUIRED_APPROVALS": "set it to how many distinct approvers a change needs, from 1 to 10 (default 1)",
    "RECBOT_REQUEST_TTL_SECONDS": f"set it to how many seconds a change request can be approved, from 1 to "
    f"{MAX_REQUEST_TTL} (30 days, default 86400, a day; a change approved later than that is one nobody remembers "
    "asking for, and its sealed keys would wait as long)",
    "RECBOT_BULK_MAX_TARGETS": "set it to how many targets one fleet-wide job may change at most, 1 or more "
    "(default 2000)",
    "DATABASE_URL": "set it to sqlite:///path/to/recbot.db (default sqlite:///recbot.db), "
    "or postgresql://user@host:5432/db for several processes",
    "RECBOT_SEAL_KEY": "set it to the output of `.venv/bin/python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'`, the same in every recbot process",
    "RECBOT_LOG_FORMAT": "set it to text or json",
    "RECBOT_STORAGE_PROBE": "set it to require (a refusal stops the change), warn or off",
    "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": f"set it to how many seconds the whole storage check may take, from "
    f"{MIN_PROBE_TIMEOUT:g} to {MAX_PROBE_TIMEOUT:g} (default 5; in less, no check reaches its endpoint, and every "
    "refusal would become a warning)",
    "RECBOT_STORAGE_ENDPOINT_OVERRIDE": "set it to one S3-compatible server as http://host:port, "
    "or remove it (tests and air-gapped sites only)",
    "RECBOT_AZURE_ENDPOINT_OVERRIDE": "set it to one Azure Blob server as http://host:port, "
    "or remove it (tests and air-gapped sites only)",
    "RECBOT_DRIFT_INTERVAL_SECONDS": f"set it to the seconds between drift watch passes, from "
    f"{MIN_DRIFT_INTERVAL:g} to {MAX_DRIFT_INTERVAL:g} (default 300), or 0 to turn the watch off",
    "RECBOT_DRIFT_ALL": "set it to true or false (default false)",
    "RECBOT_METRICS_ADDR": "set it to the address of the metrics listener as IP:port, e.g. 127.0.0.1:9464 "
    "(the default; [::1]:9464 for IPv6, port 0 for any free port, which the log names), or to off",
}

# HTTP mode does not use an App-Level Token: advice to get one, or to pass --http, would not fit.
HOW_TO_FIX_IN_HTTP_MODE: dict[str, str] = {
    "SLACK_APP_TOKEN": "remove it (HTTP mode does not use it), or set it to an App-Level Token (xapp-...) "
    "for Socket Mode",
}


def how_to_fix(name: str, mode: Mode) -> str:
    """The fix of setting `name` in `mode`."""
    return (HOW_TO_FIX_IN_HTTP_MODE if mode == "http" else {}).get(name) or HOW_TO_FIX[name]


class Problem(ValueError):
    """What is wrong with a setting's value (never the value), and a fix when the setting's own does not fit."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


SlackIds = Annotated[tuple[str, ...], NoDecode]
# Tokens, secrets and IDs go into HTTP headers and signatures: printable ASCII without spaces. A
# zero-width space pasted along with one would fail every call with an encoding error instead.
CREDENTIALS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "AGORA_CUSTOMER_ID",
    "AGORA_CUSTOMER_SECRET",
    "AGORA_APP_ID",
    "RECBOT_SEAL_KEY",
)
PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")


def credential_problem(value: str) -> str | None:
    """What keeps `value` from being a token, secret or ID (never the character itself), or None."""
    if PRINTABLE_ASCII.fullmatch(value):
        return None
    if " " in value and PRINTABLE_ASCII.fullmatch(value.replace(" ", "")):
        return "contains a space"
    return "contains a character that is not printable ASCII (often an invisible one pasted along with it)"


DATABASE_SCHEMES = ("sqlite://", "postgresql://", "postgres://")

# ASCII only: str.isalnum and str.isupper accept letters such as Ä, which no Slack ID has.
USER_OR_GROUP_ID = re.compile(r"[UWS][A-Z0-9]+")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")
APPROVAL_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]+")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _slack_ids(ids: tuple[str, ...], shape: re.Pattern[str], what: str) -> tuple[str, ...]:
    bad = [x for x in ids if not shape.fullmatch(x)]
    if bad:
        # Show the shape, not the value: an ID is not secret, but a misplaced token in this field would be.
        raise Problem(
            f"has {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} that {'is' if len(bad) == 1 else 'are'} not {what}"
        )
    return ids


def is_host_name(host: str) -> bool:
    """A DNS name (letters, digits, '-', '_' in dot-separated labels) that cannot be taken for
    an IPv4 address: a last label of digits (999.1.1.1) is a mistyped address, not a name."""
    labels = host.removesuffix(".").split(".")
    return 0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def listen_address(value: str) -> tuple[str, int] | None:
    """`IP:port` (`[IPv6]:port`; `localhost:port`) as a host and a port; None for off (or empty).
    An address, not a name: where recbot listens should not hang on a name server."""
    if value.strip().lower() in ("", "off"):
        return None
    if "://" in value:
        raise Problem("is a URL, not an IP address and a port")
    if "@" in value or "/" in value:
        raise Problem("is not an IP address and a port (IP:port)")
    if value.strip().startswith("[") and value.strip().endswith("]"):
        raise Problem("has no port (write [::1]:9464)")
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not is_ip_address(host) or ":" not in host:
            raise Problem("has brackets around something that is not an IPv6 address")
    elif ":" in host:
        raise Problem("has an IPv6 address without brackets (write [::1]:9464)")
    if not sep or not (is_ip_address(host) or host == "localhost"):
        raise Problem("is not an IP address and a port (IP:port)")
    if not is_port(port):
        raise Problem("has a port that is not a number from 0 to 65535")
    return host, int(port)


def is_port(text: str) -> bool:
    """A port to listen on as typed: digits only, 0 to 65535 (0: any free port)."""
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def is_ip_address(host: str) -> bool:
    """An IPv4 or IPv6 address as typed, without brackets."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL recbot can connect to; Problem saying what it lacks if not."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise Problem("contains spaces or control characters")
    if not url.isascii():  # what cannot be sent on the wire, refused here rather than blamed on a token later
        raise Problem("contains characters other than ASCII (a host name in its xn-- form, a path %-encoded)")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Problem("is not a URL (check the brackets around an IPv6 address)") from None
    if parts.scheme not in ("http", "https"):
        raise Problem("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise Problem("must not hold a user name or password")
    host = parts.hostname or ""
    if not host:
        raise Problem("has no host name")
    if not (is_ip_address(host) or is_host_name(host)):
        raise Problem("has a host that is neither a host name nor an IP address")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise Problem("has a port that is not a number from 1 to 65535")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise Problem("must not have a query (?...) or a fragment (#...)")
    return url


def is_this_machine(host: str) -> bool:
    """`localhost`, or an address whose traffic never leaves the machine: loopback (127.0.0.0/8,
    ::1, and 127.x written as IPv6) or unspecified (0.0.0.0, ::, which a connection takes as this one)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


# What crosses the network in every call to each upstream, in clear over http://.
_CARRIED = {
    "AGORA_API_URL": "the storage access and secret keys of every change (in the PATCH's body)",
    "SLACK_API_URL": "the bot token (every call's Authorization header)",
}


def cleartext_upstreams(settings: Settings) -> list[str]:
    """A warning for each upstream URL that is http:// to a host other than this machine (an
    emulator in a container, say): what its calls carry would cross the network unencrypted."""
    warnings = []
    for name, url in (("AGORA_API_URL", settings.AGORA_API_URL), ("SLACK_API_URL", settings.SLACK_API_URL)):
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_this_machine(parts.hostname or ""):
            warnings.append(
                f"{name} is http:// to {parts.hostname}, not this machine: {_CARRIED[name]} would cross the "
                "network unencrypted; use https:// unless that host is an emulator on a network you trust"
            )
    return warnings


class DatabaseUrlSettings(BaseSettings):
    """DATABASE_URL alone: all that `recbot migrate --sql` reads, so that a DBA printing the SQL of
    an upgrade is given neither the bot's credentials nor the seal key that opens stored secrets."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore", case_sensitive=True
    )
    MODE: ClassVar[Mode] = "http"

    DATABASE_URL: str = "sqlite:///recbot.db"

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if not v.isprintable():  # a newline would name a file, and split the lines that show it into a forged one
            raise Problem("contains a control character (a line break, a tab): set it again, on one line")
        if not v.startswith(DATABASE_SCHEMES):
            raise Problem("must start with sqlite:/// (the embedded store) or postgresql:// (shared)")
        try:
            url = make_url(v)
            port = url.port
        except (ArgumentError, ValueError):
            raise Problem("is not a database URL") from None
        if port is not None and not 1 <= port <= 65535:
            raise Problem("has a port that is not a number from 1 to 65535")
        if url.get_backend_name() == "sqlite" and url.query:
            # recbot opens the file itself: a query (mode=memory, uri=true) would be ignored or break that.
            raise Problem("has a query (?...), which recbot does not pass on to SQLite", "remove the query")
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            # recbot keeps open requests, the audit log and what it watches: all would be lost at exit.
            raise Problem("names no file (an in-memory SQLite database loses every request and the audit log at exit)")
        return v


class DatabaseSettings(DatabaseUrlSettings):
    """The database and its seal key: all that `recbot migrate` reads, so that whoever upgrades the
    schema (a DBA, a deploy job) needs no Slack or Agora credential."""

    # Validated even when unset: a shared database needs one (see _seal_key).
    RECBOT_SEAL_KEY: SecretStr | None = Field(default=None, validate_default=True)

    # check_fields=False: the credentials but the seal key are Settings' fields, checked there by this.
    @field_validator(*CREDENTIALS, mode="before", check_fields=False)
    @classmethod
    def _printable_ascii(cls, v: object) -> object:
        # Before the fields' own checks: "must start with xoxb-" would hide an invisible first character.
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        found = credential_problem(raw) if isinstance(raw, str) else None
        if found:
            raise Problem(found)
        return v

    @field_validator("RECBOT_SEAL_KEY")
    @classmethod
    def _seal_key(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            if str(info.data.get("DATABASE_URL", "")).startswith(("postgresql://", "postgres://")):
                raise Problem("is required with a shared (PostgreSQL) database")
            return None
        try:
            Fernet(v.get_secret_value().encode())
        except ValueError:
            raise Problem("is not a valid key (44 url-safe base64 characters)") from None
        return v


class Settings(DatabaseSettings):
    """Everything recbot reads from its environment. Secrets are SecretStr."""

    SLACK_BOT_TOKEN: SecretStr
    SLACK_SIGNING_SECRET: SecretStr = Field(min_length=1)
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_API_URL: str = "https://slack.com/api/"
    AGORA_CUSTOMER_ID: str = Field(min_length=1)
    AGORA_CUSTOMER_SECRET: SecretStr = Field(min_length=1)
    AGORA_API_URL: str = "https://api.agora.io"
    AGORA_APP_ID: str
    AGORA_DEFAULT_REGION: Literal["cn", "ap", "na", "eu"] = "na"
    # Agora allows about 50 requests per second per account; every instance on one PostgreSQL shares this rate.
    AGORA_RATE_LIMIT: float = Field(default=40.0, ge=MIN_RATE_LIMIT, le=MAX_RATE_LIMIT, allow_inf_nan=False)
    RECBOT_APPROVERS: SlackIds = ()
    RECBOT_REQUESTERS: SlackIds = ()
    RECBOT_ALLOWED_CHANNELS: SlackIds = ()
    RECBOT_APPROVAL_CHANNEL: str | None = None
    RECBOT_APPROVAL_FOR: Literal["secrets", "all"] = "secrets"
    RECBOT_REQUIRED_APPROVALS: int = Field(default=1, ge=1, le=10)
    RECBOT_REQUEST_TTL_SECONDS: int = Field(default=86400, ge=1, le=MAX_REQUEST_TTL)
    # A fleet-wide job's targets at most: a bigger one is refused before anything is asked of anyone.
    RECBOT_BULK_MAX_TARGETS: int = Field(default=2000, ge=1)
    RECBOT_LOG_FORMAT: Literal["text", "json"] = "text"
    RECBOT_STORAGE_PROBE: Literal["require", "warn", "off"] = "require"
    RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS: float = Field(
        default=5.0, ge=MIN_PROBE_TIMEOUT, le=MAX_PROBE_TIMEOUT, allow_inf_nan=False
    )
    # Tests and air-gapped sites: one S3-compatible server, one Azure Blob server, for every vendor and region.
    RECBOT_STORAGE_ENDPOINT_OVERRIDE: str | None = None
    RECBOT_AZURE_ENDPOINT_OVERRIDE: str | None = None
    # How often the drift watch reads what recbot remembers again; 0 turns it off.
    RECBOT_DRIFT_INTERVAL_SECONDS: float = Field(default=300.0, allow_inf_nan=False)
    # Also watch every entry point of AGORA_APP_ID the list call returns, in every API region.
    RECBOT_DRIFT_ALL: bool = False
    # /metrics, /healthz and /readyz, never on the Slack-facing listener; None: off (set to off, or empty).
    RECBOT_METRICS_ADDR: Annotated[tuple[str, int] | None, NoDecode] = ("127.0.0.1", 9464)

    @field_validator("SLACK_BOT_TOKEN")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        token = v.get_secret_value()
        if token.startswith("xapp-"):
            if cls.MODE == "http":
                raise Problem("holds an App-Level Token (xapp-...), which HTTP mode does not use")
            raise Problem(
                "holds an App-Level Token (xapp-...), which belongs in SLACK_APP_TOKEN",
                fix="move it to SLACK_APP_TOKEN, and set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...) "
                "from the app's OAuth & Permissions page",
            )
        if not token.startswith("xoxb-"):
            raise Problem("must be a Bot User OAuth Token, which starts with xoxb-")
        return v

    @field_validator("SLACK_APP_TOKEN")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        token = v.get_secret_value() if v is not None else None
        if token is None or token == "":
            return None
        if token.startswith("xoxb-"):
            raise Problem("holds a Bot User OAuth Token (xoxb-...), which belongs in SLACK_BOT_TOKEN")
        if not token.startswith("xapp-"):
            raise Problem("must be an App-Level Token, which starts with xapp-")
        return v

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS", "RECBOT_ALLOWED_CHANNELS", mode="before")
    @classmethod
    def _split_ids(cls, v: object) -> object:
        if isinstance(v, str):
            ids = tuple(part.strip() for part in v.split(",") if part.strip())
            if not ids and v:
                # Read as unset, commas, spaces or an invisible character alone would let everyone in:
                # a list meant to limit would fail open.
                raise Problem(
                    "has no ID, only commas, spaces or invisible characters: list the IDs, comma-separated, "
                    "or leave it empty (NAME=) to unset it"
                )
            return ids
        return v

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS")
    @classmethod
    def _user_or_group_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _slack_ids(v, USER_OR_GROUP_ID, "a Slack user ID (U..., W...) or user-group ID (S...)")

    @field_validator("RECBOT_ALLOWED_CHANNELS")
    @classmethod
    def _channel_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _slack_ids(v, CHANNEL_ID, "a Slack channel ID (C..., G..., D...)")

    @field_validator("RECBOT_APPROVAL_CHANNEL")
    @classmethod
    def _approval_channel(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not APPROVAL_CHANNEL_ID.fullmatch(v):
            raise Problem("is not a channel ID (C... or G...)")
        return v

    @field_validator("AGORA_APP_ID")
    @classmethod
    def _app_id(cls, v: str) -> str:
        try:
            return check_path_segment(v, "App ID")
        except ValueError as exc:
            raise Problem(str(exc).removeprefix("App ID ")) from None

    @field_validator("SLACK_API_URL", "AGORA_API_URL")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v:
            raise Problem("is empty")
        return check_url(v)

    @field_validator("RECBOT_STORAGE_ENDPOINT_OVERRIDE", "RECBOT_AZURE_ENDPOINT_OVERRIDE")
    @classmethod
    def _override_url(cls, v: str | None) -> str | None:
        return check_url(v) if v else None

    @field_validator("SLACK_API_URL")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @field_validator("RECBOT_DRIFT_INTERVAL_SECONDS")
    @classmethod
    def _drift_interval(cls, v: float) -> float:
        if v != 0 and not MIN_DRIFT_INTERVAL <= v <= MAX_DRIFT_INTERVAL:
            raise Problem(f"must be 0 (off) or from {MIN_DRIFT_INTERVAL:g} to {MAX_DRIFT_INTERVAL:g} seconds")
        return v

    @field_validator("RECBOT_METRICS_ADDR", mode="before")
    @classmethod
    def _metrics_addr(cls, v: object) -> object:
        return listen_address(v) if isinstance(v, str) else v


def shown_database_url(database_url: str) -> str:
    """DATABASE_URL as it may be printed: the password hidden and no query, where a password may be too."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):
        return "DATABASE_URL"
    return url.set(query={}).render_as_string(hide_password=True)


def is_sqlite(database_url: str) -> bool:
    """Whether DATABASE_URL names the embedded SQLite store (a file, not a server)."""
    return make_url(database_url).get_backend_name() == "sqlite"


def sqlite_file_problem(database_url: str) -> str | None:
    """Why the SQLite file DATABASE_URL names cannot be created or opened, as `<what>: <how to fix>`
    (a start checks this before it creates anything), or None (PostgreSQL, or a usable path)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    path = Path(url.database)
    try:
        if path.is_dir() or url.database.endswith("/"):
            return (
                f"DATABASE_URL names the folder {path}, not a file: add the file's name, "
                f"e.g. sqlite:///{path / 'recbot.db'}"
            )
        if path.exists() and not path.is_file():  # SQLite would wait on a pipe forever, or write beside a device
            return f"DATABASE_URL names {path}, which is not a file (a pipe, a device or a socket): change DATABASE_URL"
        folder = path.resolve().parent
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder: change DATABASE_URL"
        if not folder.is_dir():
            return f"folder {folder} does not exist: create it or change DATABASE_URL"
    except OSError as exc:  # a name too long, a loop of links
        return f"DATABASE_URL names a path the system refuses ({exc.strerror or type(exc).__name__}): change it"
    return None


def database_unusable(database_url: str, reason: str) -> str:
    """`<what>: <how to fix>` when the database cannot be used; a SQLite file is no server."""
    if is_sqlite(database_url):
        return (
            f"cannot use the SQLite database {make_url(database_url).database} ({reason}): check DATABASE_URL, "
            "and that recbot's user can read and write the file and its folder"
        )
    return (
        f"cannot use the database at {shown_database_url(database_url)} ({reason}): "
        "check DATABASE_URL and that the server is running"
    )


class SocketModeSettings(Settings):
    """Socket Mode, the default, cannot connect without an App-Level Token."""

    MODE: ClassVar[Mode] = "socket"
    SLACK_APP_TOKEN: SecretStr


class SettingsError(Exception):
    """The settings are missing or invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _what(kind: str, ctx: dict[str, Any]) -> str:
    """Pydantic's finding in words a Slack admin reads at a glance."""
    bound = {"greater_than": "more than", "greater_than_equal": "at least"}
    bound |= {"less_than": "less than", "less_than_equal": "at most"}
    for key, words in zip(("gt", "ge", "lt", "le"), bound.values(), strict=True):
        if key in ctx and kind in bound:
            return f"must be {words} {_number(ctx[key])}"
    return {
        "missing": "is missing",
        "finite_number": "must be a finite number, not nan, inf or too large to hold",
        "float_parsing": "is not a number",
        "float_type": "is not a number",
        "int_parsing": "is not a whole number",
        "int_type": "is not a whole number",
        "int_from_float": "is not a whole number",
        "bool_parsing": "is not true or false",
        "bool_type": "is not true or false",
        "literal_error": "is not one of the accepted values",
        "too_short": "is empty",
        "string_too_short": "is empty",
    }.get(kind, "is invalid")


def _problem(error: dict[str, Any], mode: Mode) -> str:
    """`<setting> <what is wrong>: <how to fix it>`."""
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else "settings"
    ctx = error.get("ctx") or {}
    found = ctx.get("error")
    if isinstance(found, Problem):
        what, fix = found.what, found.fix
    else:
        what, fix = _what(str(error.get("type")), ctx), None
    return f"{name} {what}: {fix or how_to_fix(name, mode)}"


def _unreadable_env_file(exc: UnicodeDecodeError) -> str:
    # The line number, not the bytes: the line may hold a secret.
    line = exc.object[: exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else 0
    where = f"{ENV_FILE} line {line}" if line else ENV_FILE
    return f"{where} is not UTF-8 text: save {ENV_FILE} with the UTF-8 encoding (Save As in most editors)"


# A name the environment or `.env` could give a setting; anything else in `.env` is a line recbot ignores.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SHOWN_LINE_NUMBERS = 10
SETTING_NAMES = frozenset(SocketModeSettings.model_fields)  # Settings' and any Socket Mode adds


class Unread(NamedTuple):
    """Something in the environment or `.env` that looks meant for recbot but is not read, as
    `<what>: <how to fix>`; `meant`, the setting it may have been meant for."""

    text: str
    meant: str | None = None


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one letter added, dropped, changed or two swapped turns `a` into `b` (a typo)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        swapped = a[start + 2 :] == b[start + 2 :] and a[start : start + 2] == b[start : start + 2][::-1]
        return a[start + 1 :] == b[start + 1 :] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1 :] == shorter[start:]


def _misnamed(name: str, where: str, present: set[str]) -> Unread | None:
    """Why `name` looks meant for recbot but is not read: in small letters, or one typo from a
    name it reads (a misspelt setting silently stays at its default, or shows only as missing).
    Names further off are other tools' (Kubernetes sets RECBOT_METRICS_PORT for a Service)."""
    if name in SETTING_NAMES:
        return None
    typed = name.upper()
    meant = (
        typed if typed in SETTING_NAMES else next((r for r in sorted(SETTING_NAMES) if _one_edit_apart(typed, r)), None)
    )
    if meant is None:
        return None
    if meant in present:
        return Unread(f"{name} in {where} is not read, and {meant} is set: delete {name}", meant)
    if meant == name.upper():
        return Unread(f"{name} in {where} is not read (recbot's names are in capitals): rename it {meant}", meant)
    return Unread(f"{name} in {where} is not a name recbot reads: if it is meant as {meant}, rename it", meant)


def _line_numbers(lines: list[int]) -> str:
    """`.env` line numbers as a person reads them, the first ten only: a file may have thousands."""
    shown = ", ".join(str(n) for n in lines[:SHOWN_LINE_NUMBERS])
    if len(lines) > SHOWN_LINE_NUMBERS:
        shown += f" and {len(lines) - SHOWN_LINE_NUMBERS:,} more"
    return shown


def _set_twice(name: str, lines: list[tuple[int, str | None]]) -> Unread:
    """A setting on several `.env` lines, as (line, value): the last is read, and the others look as
    if they counted; when the last gives no value, it is the one to delete (it unsets the others')."""
    where = f"{name} is on {len(lines)} lines of {ENV_FILE} ({_line_numbers([line for line, _ in lines])})"
    last, value = lines[-1]
    if _sets(name, value):
        return Unread(f"{where}, and only the last is read: delete the others", name)
    return Unread(f"{where}, and the last, line {last}, gives it no value, so it is unset: delete line {last}", name)


def _unparsed(lines: list[int]) -> Unread:
    """One warning for every `.env` line that is not NAME=value, by number alone (it may hold a secret)."""
    shown = _line_numbers(lines)
    where = f"{ENV_FILE} line {shown} is" if len(lines) == 1 else f"{ENV_FILE} lines {shown} are"
    return Unread(
        f"{where} not NAME=value (a name of letters, digits and _, then =), so recbot ignores "
        f"{'it' if len(lines) == 1 else 'them'}: write each as NAME=value, or delete it"
    )


def env_file_bindings(env_file: Path) -> list[tuple[int, str | None, str | None]]:
    """`.env` as (line, name, value): name None for a line that is not NAME=value, value None for
    a name without `=`; empty for no `.env`, or one the settings cannot read (theirs to say)."""
    if not env_file.is_file():  # a pipe would hang the read
        return []
    try:
        text = env_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line + len(original) - len(original.lstrip("\n"))  # blank lines before it
        if binding.key is not None or binding.error:
            found.append((line, None if binding.error else binding.key, binding.value))
    return found


def _sets(name: str, value: str | None) -> bool:
    """Whether `name=value` gives the setting a value: an empty one is ignored (a bare name too),
    but an empty RECBOT_METRICS_ADDR turns the listener off."""
    return bool(value) or (value == "" and name == "RECBOT_METRICS_ADDR")


def unread_names(environ: Mapping[str, str] | None = None, env_file: Path = Path(ENV_FILE)) -> list[Unread]:
    """What in the environment or `.env` looks meant for recbot but is ignored: a name one typo
    (or its capitals) from a setting's, a setting on several `.env` lines (all but the last), and
    `.env` lines that are not NAME=value. A start logs them (and names those of a missing setting
    in its refusal); doctor warns of them."""
    environ = os.environ if environ is None else environ
    bindings = env_file_bindings(env_file)
    in_environment = {name for name, value in environ.items() if _sets(name, value)}
    present = in_environment | {name for _, name, value in bindings if name and _sets(name, value)}
    found = [u for name in sorted(environ) if _NAME.match(name) and (u := _misnamed(name, "the environment", present))]
    unparsed: list[int] = []
    lines_of: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for line, name, value in bindings:
        if name in SETTING_NAMES and name not in in_environment:  # the environment's value wins over .env
            lines_of[name].append((line, value))  # a bare name too: after a value, it unsets it
        elif name is None or value is None or not _NAME.match(name):
            unparsed.append(line)
        elif unread := _misnamed(name, ENV_FILE, present):
            found.append(unread)
    for name, lines in lines_of.items():
        if len(lines) > 1:
            found.append(_set_twice(name, lines))
        elif lines[0][1] is None:
            unparsed.append(lines[0][0])
    found = list(dict.fromkeys(found))  # a typo on several lines is one warning
    return found + ([_unparsed(sorted(unparsed))] if unparsed else [])


def _metrics_addr_emptied(env_file: Path | None) -> bool:
    """Whether RECBOT_METRICS_ADDR is set empty where it is read: the environment, else `.env`."""
    if "RECBOT_METRICS_ADDR" in os.environ:
        return os.environ["RECBOT_METRICS_ADDR"] == ""
    values = {name: value for _, name, value in env_file_bindings(env_file)} if env_file else {}
    return values.get("RECBOT_METRICS_ADDR") == ""


def _env_file_of(overrides: dict[str, object]) -> Path | None:
    """The `.env` the settings read: ENV_FILE, or a test's `_env_file` (None: none)."""
    chosen = overrides.get("_env_file", ENV_FILE)
    return Path(chosen) if isinstance(chosen, str | Path) else None


def load_settings(mode: Mode = "http", **overrides: object) -> Settings:
    """Read the settings for `mode`, or raise one SettingsError naming every
    problem and how to fix it; values are never echoed, so no secret is printed."""
    return _load(SocketModeSettings if mode == "socket" else Settings, mode, overrides)


def load_database_settings(**overrides: object) -> DatabaseSettings:
    """Read DATABASE_URL and RECBOT_SEAL_KEY alone (what `recbot migrate` needs), as `load_settings`
    reads them: from the environment and .env, every problem in one SettingsError."""
    return _load(DatabaseSettings, "http", overrides)


def load_database_url(**overrides: object) -> DatabaseUrlSettings:
    """Read DATABASE_URL alone (what `recbot migrate --sql` needs), as `load_settings` reads it."""
    return _load(DatabaseUrlSettings, "http", overrides)


_Loaded = TypeVar("_Loaded", bound=DatabaseUrlSettings)


def _load(model: type[_Loaded], mode: Mode, overrides: dict[str, object]) -> _Loaded:
    env_file = _env_file_of(overrides)
    if env_file is not None and env_file.is_dir():  # pydantic-settings would skip it without a word
        raise SettingsError([f"{env_file} is a folder: make it a file (or remove it, and set the environment)"])
    if env_file is not None and env_file.is_symlink() and not env_file.exists():  # else read as no .env at all
        raise SettingsError(
            [
                f"{env_file} is a link to {os.readlink(env_file)}, which leads to no file (it is missing, or a loop "
                "of links): make it point to a file "
                "(or remove it, and set the environment)"
            ]
        )
    if env_file is not None and env_file.exists() and not env_file.is_file():  # a pipe would hang the start
        raise SettingsError(
            [f"{env_file} is not a file (a pipe or a device): make it a file (or remove it, and set the environment)"]
        )
    if issubclass(model, Settings) and "RECBOT_METRICS_ADDR" not in overrides and _metrics_addr_emptied(env_file):
        overrides["RECBOT_METRICS_ADDR"] = "off"  # empty turns it off (the settings ignore empty values)
    try:
        return model(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise SettingsError([_problem(dict(e), mode) for e in errors]) from None
    except UnicodeDecodeError as exc:
        raise SettingsError([_unreadable_env_file(exc)]) from None
    except OSError as exc:
        raise SettingsError(
            [f"{ENV_FILE} cannot be read ({exc.strerror or type(exc).__name__}): make it a file recbot's user can read"]
        ) from None
