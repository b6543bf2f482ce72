"""Settings from the environment and an optional `.env`; the names are public contract.

One validation for start and doctor: every problem at once, each with how to
fix it, and never a value (a value may be a secret)."""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.models import check_path_segment

Mode = Literal["socket", "http"]

HOW_TO_FIX: dict[str, str] = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-...) from OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "the Signing Secret from Basic Information > App Credentials",
    "SLACK_APP_TOKEN": "an App-Level Token (xapp-...) with connections:write from Basic Information, "
    "or run in HTTP mode with --http",
    "AGORA_CUSTOMER_ID": "the Customer ID from Agora Console > RESTful API",
    "AGORA_CUSTOMER_SECRET": "the Customer Secret from Agora Console > RESTful API",
    "AGORA_APP_ID": "the App ID of your Agora project (Agora Console > Projects)",
    "AGORA_DEFAULT_REGION": "one of cn, ap, na, eu",
    "AGORA_RATE_LIMIT": "Agora calls per second for this process (Agora allows about 50 per account)",
    "RECBOT_APPROVERS": "comma-separated Slack user IDs (U..., W...) and user-group IDs (S...)",
    "RECBOT_REQUESTERS": "comma-separated Slack user IDs (U..., W...) and user-group IDs (S...), or unset",
    "RECBOT_ALLOWED_CHANNELS": "comma-separated Slack channel IDs (C..., G..., D...), or unset",
    "RECBOT_APPROVAL_CHANNEL": "a Slack channel ID (C... or G...), or unset to send cards to each approver",
    "DATABASE_URL": "sqlite:///path/to/recbot.db, or postgresql://user@host:5432/db",
    "RECBOT_STORAGE_PROBE": "require (a refused probe stops the change), warn, or off",
    "RECBOT_DRIFT_INTERVAL_SECONDS": "seconds between drift watch passes (0 turns the watch off)",
    "RECBOT_DRIFT_ALL": "true or false",
    "RECBOT_SEAL_KEY": "a key from `.venv/bin/python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'`, the same in every recbot process",
}

SlackIds = Annotated[tuple[str, ...], NoDecode]
DATABASE_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


def _slack_ids(ids: tuple[str, ...], prefixes: str, what: str) -> tuple[str, ...]:
    bad = [x for x in ids if not (x[:1] in prefixes and len(x) > 1 and x.isalnum() and x.isupper())]
    if bad:
        # Show the shape, not the value: an ID is not secret, but a misplaced token in this field would be.
        raise ValueError(
            f"has {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} that {'is' if len(bad) == 1 else 'are'} not {what}"
        )
    return ids


class Settings(BaseSettings):
    """Everything recbot reads from its environment. Secrets are SecretStr."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    SLACK_BOT_TOKEN: SecretStr
    SLACK_SIGNING_SECRET: SecretStr
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_API_URL: str = "https://slack.com/api/"
    AGORA_CUSTOMER_ID: str
    AGORA_CUSTOMER_SECRET: SecretStr
    AGORA_API_URL: str = "https://api.agora.io"
    AGORA_APP_ID: str
    AGORA_DEFAULT_REGION: Literal["cn", "ap", "na", "eu"] = "na"
    # Agora allows about 50 requests per second per account; with several recbot processes, split it.
    AGORA_RATE_LIMIT: float = Field(default=40.0, gt=0, le=1000)
    RECBOT_APPROVERS: SlackIds = ()
    RECBOT_REQUESTERS: SlackIds = ()
    RECBOT_ALLOWED_CHANNELS: SlackIds = ()
    RECBOT_APPROVAL_CHANNEL: str | None = None
    RECBOT_APPROVAL_FOR: Literal["secrets", "all"] = "secrets"
    RECBOT_REQUIRED_APPROVALS: int = Field(default=1, ge=1, le=10)
    RECBOT_REQUEST_TTL_SECONDS: int = Field(default=86400, ge=1)
    DATABASE_URL: str = "sqlite:///recbot.db"
    # Validated even when unset: a shared database needs one (see _seal_key).
    RECBOT_SEAL_KEY: SecretStr | None = Field(default=None, validate_default=True)
    RECBOT_LOG_FORMAT: Literal["text", "json"] = "text"
    RECBOT_STORAGE_PROBE: Literal["require", "warn", "off"] = "require"
    RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0, le=30)
    # Tests and air-gapped sites: one S3-compatible server, one Azure Blob server, for every vendor and region.
    RECBOT_STORAGE_ENDPOINT_OVERRIDE: str | None = None
    RECBOT_AZURE_ENDPOINT_OVERRIDE: str | None = None
    # How often the drift watch reads what recbot remembers again; 0 turns it off.
    RECBOT_DRIFT_INTERVAL_SECONDS: float = Field(default=300.0, ge=0, le=86400)
    # Also watch every entry point of AGORA_APP_ID the list call returns, in every API region.
    RECBOT_DRIFT_ALL: bool = False

    @field_validator("SLACK_BOT_TOKEN")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        token = v.get_secret_value()
        if token.startswith("xapp-"):
            raise ValueError("holds an App-Level Token (xapp-...); that one belongs in SLACK_APP_TOKEN")
        if not token.startswith("xoxb-"):
            raise ValueError("must be a Bot User OAuth Token, which starts with xoxb-")
        return v

    @field_validator("SLACK_APP_TOKEN")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        token = v.get_secret_value() if v is not None else None
        if token is None or token == "":
            return None
        if token.startswith("xoxb-"):
            raise ValueError("holds a Bot User OAuth Token (xoxb-...); that one belongs in SLACK_BOT_TOKEN")
        if not token.startswith("xapp-"):
            raise ValueError("must be an App-Level Token, which starts with xapp-")
        return v

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS", "RECBOT_ALLOWED_CHANNELS", mode="before")
    @classmethod
    def _split_ids(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(part.strip() for part in v.split(",") if part.strip())
        return v

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS")
    @classmethod
    def _user_or_group_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _slack_ids(v, "UWS", "Slack user IDs (U..., W...) or user-group IDs (S...)")

    @field_validator("RECBOT_ALLOWED_CHANNELS")
    @classmethod
    def _channel_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _slack_ids(v, "CGD", "Slack channel IDs (C..., G..., D...)")

    @field_validator("RECBOT_APPROVAL_CHANNEL")
    @classmethod
    def _approval_channel(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not (v[:1] in "CG" and v.isalnum() and v.isupper()):
            raise ValueError("must be a channel ID (C... or G...), as in the channel's details in Slack")
        return v

    @field_validator("AGORA_APP_ID")
    @classmethod
    def _app_id(cls, v: str) -> str:
        return check_path_segment(v, "App ID")

    @field_validator(
        "SLACK_API_URL", "AGORA_API_URL", "RECBOT_STORAGE_ENDPOINT_OVERRIDE", "RECBOT_AZURE_ENDPOINT_OVERRIDE"
    )
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("SLACK_API_URL")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if not v.startswith(DATABASE_SCHEMES):
            raise ValueError("must start with sqlite:/// (the embedded store) or postgresql:// (shared)")
        return v

    @field_validator("RECBOT_SEAL_KEY")
    @classmethod
    def _seal_key(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            if str(info.data.get("DATABASE_URL", "")).startswith(("postgresql://", "postgres://")):
                raise ValueError("is required with a shared (PostgreSQL) database")
            return None
        try:
            Fernet(v.get_secret_value().encode())
        except ValueError:
            raise ValueError("is not a valid key (44 url-safe base64 characters)") from None
        return v


class SocketModeSettings(Settings):
    """Socket Mode, the default, cannot connect without an App-Level Token."""

    SLACK_APP_TOKEN: SecretStr


class SettingsError(Exception):
    """The settings are missing or invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _problem(error: dict[str, object]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if isinstance(loc, tuple) and loc else "settings"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    problem = "is missing" if error.get("type") == "missing" else message
    hint = HOW_TO_FIX.get(name)
    if error.get("type") != "missing" and not problem.startswith(("is ", "must ", "holds ", "has ")):
        problem = f"is invalid: {problem}"
    return f"{name} {problem}" + (f" (set it to {hint})" if hint else "")


def load_settings(mode: Mode = "http", **overrides: object) -> Settings:
    """Read the settings for `mode`, or raise one SettingsError naming every
    problem and how to fix it; values are never echoed, so no secret is printed."""
    model = SocketModeSettings if mode == "socket" else Settings
    try:
        return model(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise SettingsError([_problem(dict(e)) for e in errors]) from None
