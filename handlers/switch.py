"""Listeners of the recording switch and single streams: `/recording
pause|resume|stream`, the Pause and Resume buttons of `/recording get`, and the
App Home's Resume, Pause and Stop. Who may: the people in RECBOT_REQUESTERS."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.commands import Command
from bot.outcome import Outcome
from bot.services import Services
from bot.store.values import SwitchRow
from handlers.blocks import messages
from handlers.blocks import switch as blocks
from handlers.blocks.messages import escape_keeping_mentions
from handlers.notify import GroupLookup, Notifier

log = logging.getLogger(__name__)

NOT_REQUESTER = (
    "You are not in RECBOT_REQUESTERS, so you cannot pause or resume recording or record single streams. "
    "Ask whoever runs recbot."
)
NOT_GENUINE = "That button is not a genuine recbot button; nothing was done."


def run_command(parsed: Command, user: str, services: Services, client: WebClient, respond: Respond) -> str:
    """`/recording pause|resume|stream`, answered to the person alone; its Outcome's kind (metrics)."""
    if not services.requesters.includes(user, GroupLookup(client)):
        respond(blocks=messages.error(NOT_REQUESTER), text=NOT_REQUESTER, response_type="ephemeral")
        return "refused"
    assert parsed.target is not None and parsed.enabled is not None
    # Agora may take up to ~20 s (retried within 5 s, 10 s a try): say at once that it is asked, then answer.
    interim = blocks.interim_text(parsed.verb, parsed.target, parsed.stream, parsed.enabled, services.switches)
    respond(blocks=blocks.interim_blocks(interim), text=interim, response_type="ephemeral")
    if parsed.verb == "stream":
        assert parsed.stream is not None
        outcome = services.switches.stream(parsed.target, parsed.stream, parsed.enabled, user)
    else:
        outcome = services.switches.switch(parsed.target.app_id, parsed.target.entry_point, parsed.enabled, user)
    outcome = _announce(outcome, Notifier(client, services))  # first: the answer says whether the cards went out
    _respond(respond, outcome, services, parsed.target.app_id, parsed.target.entry_point, replace=True)
    return outcome.kind


def _respond(
    respond: Respond, outcome: Outcome, services: Services, app_id: str, entry_point: str, replace: bool
) -> None:
    """The answer, to the person alone: in place of the message it replaces, or as a new one."""
    state = services.switches.book.known(app_id, entry_point)
    respond(
        blocks=blocks.outcome_blocks(outcome, state, entry_point),
        text=blocks.outcome_text(outcome),
        response_type="ephemeral",
        replace_original=replace,
    )


def _announce(outcome: Outcome, notifier: Notifier) -> Outcome:
    """A new request goes to the approvers; anything else Agora was sent shows on the homes.
    The outcome, its words saying so when no approval card could be posted."""
    if outcome.request is not None:
        return outcome if notifier.post_cards(outcome.request) else outcome.without_cards()
    if outcome.kind in ("applied", "no_change", "failed"):
        notifier.refresh_homes()
    return outcome


def _tell_home(notifier: Notifier, user: str, outcome: Outcome) -> None:
    """The outcome as the notice line of the clicker's home: its plain text escaped here, once."""
    notifier.publish_home(user, escape_keeping_mentions(outcome.message, outcome.mentions), outcome.kind)


def _tell(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


def register(app: App, services: Services) -> None:
    sealer = services.sealer

    def tell_who_paused(pause: SwitchRow, now: SwitchRow) -> None:
        """A configuration switched recording on again: whoever paused it is told, unless it was them."""
        if pause.actor != now.actor:
            command = messages.escape(services.switches.command("pause", now.entry_point, app_id=now.app_id))
            Notifier(app.client, services).tell(pause.actor, blocks.pause_lifted_text(pause, now, command))

    services.switches.book.when_pause_lifted(tell_who_paused)

    def switch_clicked(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Pause or Resume under `/recording get`'s answer; the answer goes to the clicker alone."""
        ack()
        action = (body.get("actions") or [{}])[0]
        target = blocks.read_switch_value(action.get("value"), sealer)
        if target is None:
            _tell(respond, NOT_GENUINE)
            return
        user = body["user"]["id"]
        if not services.requesters.includes(user, GroupLookup(client)):
            _tell(respond, NOT_REQUESTER)
            return
        enabled = action.get("action_id") == blocks.ACTION_RESUME
        outcome = services.switches.switch(target.app_id, target.entry_point, enabled, user)
        outcome = _announce(outcome, Notifier(client, services))
        _respond(respond, outcome, services, target.app_id, target.entry_point, replace=False)

    app.action(blocks.ACTION_PAUSE)(switch_clicked)
    app.action(blocks.ACTION_RESUME)(switch_clicked)

    def switch_from_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Resume (or, where the switch is unknown, Pause) from the App Home; the answer is a line at the
        top of the home."""
        ack()
        user = body["user"]["id"]
        notifier = Notifier(client, services)
        action = (body.get("actions") or [{}])[0]
        target = blocks.read_switch_value(action.get("value"), sealer)
        if target is None:
            notifier.publish_home(user, NOT_GENUINE, "refused")
            return
        if not services.requesters.includes(user, GroupLookup(client)):
            notifier.publish_home(user, NOT_REQUESTER, "refused")
            return
        enabled = action.get("action_id") == blocks.ACTION_HOME_RESUME
        outcome = services.switches.switch(target.app_id, target.entry_point, enabled, user)
        outcome = _announce(outcome, notifier)
        _tell_home(notifier, user, outcome)

    app.action(blocks.ACTION_HOME_RESUME)(switch_from_home)
    app.action(blocks.ACTION_HOME_PAUSE)(switch_from_home)

    @app.action(blocks.ACTION_HOME_STOP)
    def stop_from_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Stop recording a single stream from the App Home."""
        ack()
        user = body["user"]["id"]
        notifier = Notifier(client, services)
        found = blocks.read_stream_value((body.get("actions") or [{}])[0].get("value"), sealer)
        if found is None:
            notifier.publish_home(user, NOT_GENUINE, "refused")
            return
        if not services.requesters.includes(user, GroupLookup(client)):
            notifier.publish_home(user, NOT_REQUESTER, "refused")
            return
        outcome = services.switches.stream(found[0], found[1], False, user)
        outcome = _announce(outcome, notifier)
        _tell_home(notifier, user, outcome)
