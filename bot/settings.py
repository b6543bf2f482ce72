"""Settings from the environment and an optional `.env`; the names are public contract."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.models import check_path_segment

HOW_TO_FIX: dict[str, str] = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-...) from OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "the Signing Secret from Basic Information > App Credentials",
    "SLACK_APP_TOKEN": "an App-Level Token (xapp-...) with connections:write, for Socket Mode",
    "AGORA_CUSTOMER_ID": "the Customer ID from Agora Console > RESTful API",
    "AGORA_CUSTOMER_SECRET": "the Customer Secret from Agora Console > RESTful API",
    "AGORA_APP_ID": "the App ID of your Agora project",
    "AGORA_DEFAULT_REGION": "one of cn, ap, na, eu",
    "RECBOT_APPROVERS": "comma-separated Slack user IDs (U...) and user-group IDs (S...)",
    "RECBOT_REQUESTERS": "comma-separated Slack user IDs (U...) and user-group IDs (S...), or unset",
    "RECBOT_ALLOWED_CHANNELS": "comma-separated Slack channel IDs (C..., G..., D...), or unset",
}

SlackIds = Annotated[tuple[str, ...], NoDecode]


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
    RECBOT_APPROVERS: SlackIds = ()
    RECBOT_REQUESTERS: SlackIds = ()
    RECBOT_ALLOWED_CHANNELS: SlackIds = ()
    RECBOT_APPROVAL_CHANNEL: str | None = None
    RECBOT_APPROVAL_FOR: Literal["secrets", "all"] = "secrets"
    RECBOT_REQUIRED_APPROVALS: int = Field(default=1, ge=1, le=10)
    RECBOT_REQUEST_TTL_SECONDS: int = Field(default=86400, ge=1)
    DATABASE_URL: str = "sqlite:///recbot.db"
    RECBOT_SEAL_KEY: SecretStr | None = None
    RECBOT_LOG_FORMAT: Literal["text", "json"] = "text"

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS", "RECBOT_ALLOWED_CHANNELS", mode="before")
    @classmethod
    def _split_ids(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(part.strip() for part in v.split(",") if part.strip())
        return v

    @field_validator("RECBOT_APPROVERS", "RECBOT_REQUESTERS")
    @classmethod
    def _user_or_group_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [x for x in v if not (x[:1] in ("U", "W", "S") and x.isalnum() and x.isupper())]
        if bad:
            raise ValueError(f"not Slack user or group IDs: {', '.join(bad)}")
        return v

    @field_validator("AGORA_APP_ID")
    @classmethod
    def _app_id(cls, v: str) -> str:
        return check_path_segment(v, "App ID")

    @field_validator("SLACK_API_URL", "AGORA_API_URL")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("SLACK_API_URL")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"


class SettingsError(Exception):
    """The settings are missing or invalid; the message lists every problem."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise one SettingsError naming every problem
    and how to fix it; values are never echoed, so no secret is printed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            name = str(error["loc"][0]) if error["loc"] else "settings"
            problem = "is missing" if error["type"] == "missing" else f"is invalid: {error['msg']}"
            hint = HOW_TO_FIX.get(name)
            lines.append(f"  - {name} {problem}" + (f" (set it to {hint})" if hint else ""))
        raise SettingsError("recbot cannot start; fix these settings:\n" + "\n".join(lines)) from None
