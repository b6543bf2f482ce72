"""What a Slack request must be before Bolt sees it: signed, UTF-8, and of a
shape recbot handles (commands, interactions, Events API events). Bolt's own
parsing raises on malformed payloads, so they are answered here with 400
instead of a crash."""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import SignatureVerifier


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class SlashCommand(_Loose):
    command: Literal["/recording"]
    user_id: str = Field(min_length=1, max_length=32)
    channel_id: str = Field(default="", max_length=32)
    trigger_id: str = Field(min_length=1, max_length=256)
    response_url: str = Field(pattern=r"^https?://", max_length=2000)
    text: str = Field(default="", max_length=40000)


class User(_Loose):
    id: str = Field(min_length=1, max_length=32)


class View(_Loose):
    id: str = Field(min_length=1, max_length=64)
    type: str
    callback_id: str = Field(max_length=255)
    private_metadata: str = Field(default="", max_length=3000)
    state: dict[str, Any] = Field(default_factory=dict)


class Action(_Loose):
    action_id: str = Field(min_length=1, max_length=255)


class BlockActions(_Loose):
    type: Literal["block_actions"]
    user: User
    actions: list[Action] = Field(min_length=1, max_length=10)
    view: View | None = None
    container: dict[str, Any] = Field(default_factory=dict)


class ViewSubmission(_Loose):
    type: Literal["view_submission"]
    user: User
    view: View


class BlockSuggestion(_Loose):
    """An external select asking for its options (what the user typed is `value`)."""

    type: Literal["block_suggestion"]
    user: User
    action_id: str = Field(min_length=1, max_length=255)
    block_id: str = Field(min_length=1, max_length=255)
    value: str = Field(default="", max_length=200)


class Interaction(BaseModel):
    payload: BlockActions | ViewSubmission | BlockSuggestion = Field(discriminator="type")


class HomeOpened(_Loose):
    """Someone opened recbot's App Home (its Home or Messages tab)."""

    type: Literal["app_home_opened"]
    user: str = Field(min_length=1, max_length=32)
    tab: str = Field(default="home", max_length=32)


class EventCallback(_Loose):
    """An Events API event; recbot subscribes to `app_home_opened` only."""

    type: Literal["event_callback"]
    event: HomeOpened


class UrlVerification(_Loose):
    """Slack checking the Request URL when it is saved: answered with the challenge."""

    type: Literal["url_verification"]
    challenge: str = Field(min_length=1, max_length=500)


class EventsRequest(BaseModel):
    payload: EventCallback | UrlVerification = Field(discriminator="type")


def check_request(body: bytes, headers: dict[str, str], verifier: SignatureVerifier) -> tuple[int, str] | None:
    """None if Bolt may handle the request, else (status, reason)."""
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return 400, "body is not UTF-8"
    if not verifier.is_valid_request(text, headers):
        return 401, "invalid signature"
    if headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            event = json.loads(text)
        except ValueError:
            return 400, "body is not JSON"
        return None if is_handled("events", event) else (400, "not an event recbot handles")
    try:
        form = parse_qs(text, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return 400, "body is not a form"
    fields = {key: values[0] for key, values in form.items()}
    try:
        payload = json.loads(fields["payload"]) if "payload" in fields else None
    except ValueError:
        return 400, "payload is not JSON"
    kind = "interactive" if "payload" in fields else "slash_commands"
    if not is_handled(kind, payload if payload is not None else fields):
        return 400, "not a payload recbot handles"
    return None


def is_handled(kind: str, payload: Any) -> bool:
    """Whether a payload of this Socket Mode envelope type (or HTTP request) is one recbot handles."""
    try:
        if kind == "interactive":
            Interaction(payload=payload)
        elif kind == "slash_commands":
            SlashCommand.model_validate(payload)
        elif kind == "events_api":  # Socket Mode: Slack checked the Request URL, so only events come
            EventCallback.model_validate(payload)
        elif kind == "events":  # HTTP: the Events API, its URL check included
            EventsRequest(payload=payload)
        else:
            return False
    except ValidationError:
        return False
    return True
