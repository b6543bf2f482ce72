"""A listener that fails unexpectedly: the person is answered where they acted, with a
reference to the log, and the log says where it failed, never what the exception said."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import App, BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.agora import sent_a_change
from bot.logs import failure_frames, new_request_id, request_id
from bot.respond import AnswerUnconfirmed
from bot.services import Services
from handlers.blocks import edit_form, messages
from handlers.notify import Notifier, why_failed

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.error
    def listener_failed(
        error: Exception,
        body: dict[str, Any],
        respond: Respond | None,
        client: WebClient,
        response: BoltResponse | None,
    ) -> BoltResponse | None:
        """Bolt's handler of every exception a listener lets out. `response` is set while the
        request is not acked yet: what it returns is then Slack's answer to the request."""
        ref = request_id.get()
        if ref == "-":
            ref = new_request_id()
        if isinstance(error, AnswerUnconfirmed):  # Slack's trouble: told directly, not on that response_url
            log.warning("Slack did not confirm an answer on a response_url (ref %s); telling the person directly", ref)
            text, respond = messages.answer_unconfirmed(ref, sent_a_change.get()), None
        elif isinstance(error, SlackApiError):  # Slack's word, not recbot's failure
            log.warning("Slack refused a call (ref %s): %s at %s", ref, why_failed(error), failure_frames(error))
            text = messages.slack_refused(ref, why_failed(error), sent_a_change.get())
        else:
            # Neither the message nor the payload: either may hold what someone typed into a key field.
            log.error("listener failed (ref %s): %s", ref, failure_frames(error))
            text = messages.went_wrong(ref, sent_a_change.get())
        try:
            return _answer(body, text, respond, client, services, acked=response is None)
        except Exception as failed:  # noqa: BLE001 - the person could not be told; the log says so, and where
            log.error("could not tell the person about ref %s: %s", ref, failure_frames(failed))
            return None


def _answer(
    body: dict[str, Any], text: str, respond: Respond | None, client: WebClient, services: Services, *, acked: bool
) -> BoltResponse | None:
    """Tell the person who acted, where they acted; Slack's answer to a request not acked yet."""
    kind = body.get("type")
    if kind == "block_suggestion":
        return None if acked else _respond_with({"options": []})  # nobody to tell: the list stays empty
    if kind == "view_submission" and not acked:
        return _respond_with({"response_action": "update", "view": edit_form.message_view(f":x: {text}")})
    user = _user(body)
    try:
        answered = _answered_in_place(body, text, respond, client, services, user)
    except Exception as failed:  # noqa: BLE001 - a closed modal, a Slack refusal: told directly instead
        log.warning("could not answer where the person acted (%s); telling them directly", type(failed).__name__)
        answered = False
    if not answered and user:
        client.chat_postMessage(channel=user, text=f":x: {text}")
    # A listener that failed before its ack: acked now, so Slack shows no error of its own as well.
    return None if acked else BoltResponse(status=200, body="")


def _answered_in_place(
    body: dict[str, Any], text: str, respond: Respond | None, client: WebClient, services: Services, user: str | None
) -> bool:
    """The command or message answered through its response_url (to the person alone), the
    App Home with a notice, or the modal they were in; False where there is none of them."""
    view = body.get("view") if isinstance(body.get("view"), dict) else None
    if respond is not None and body.get("response_url"):
        respond(text=f":x: {text}", response_type="ephemeral", replace_original=False)
    elif view is not None and view.get("type") == "home" and user:
        Notifier(client, services).publish_home(user, text, "failed")
    elif view is not None and view.get("id"):
        client.views_update(view_id=view["id"], view=edit_form.message_view(f":x: {text}"))
    else:
        return False
    return True


def _respond_with(payload: dict[str, Any]) -> BoltResponse:
    return BoltResponse(status=200, body=json.dumps(payload), headers={"content-type": "application/json"})


def _user(body: dict[str, Any]) -> str | None:
    """Who acted: a command's user_id, an interaction's user, an event's user."""
    user = body.get("user")
    found = user.get("id") if isinstance(user, dict) else body.get("user_id")
    if found is None and isinstance(body.get("event"), dict):
        found = body["event"].get("user")
    return found if isinstance(found, str) and found else None
