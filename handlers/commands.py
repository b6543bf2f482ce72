"""The `/recording` slash command: ack at once, then check access, parse and answer."""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.agora import AgoraError, AgoraNotFound
from bot.commands import Command, UsageError, Verb, as_typed, parse_command
from bot.models import Target
from bot.observation import Observation
from bot.services import Services
from handlers import bulk, jobs, switch
from handlers.blocks import edit_form, fleet, messages, picker, requests, summary
from handlers.blocks import switch as switch_blocks
from handlers.notify import GroupLookup

log = logging.getLogger(__name__)

# How a command ended, as recbot_commands_total counts it: done (ok), nothing done because of what was
# typed or who typed it where (refused), or Agora, storage or Slack said no or did not answer (failed).
CommandOutcome = Literal["ok", "refused", "failed"]
VERBS = frozenset(get_args(Verb))
# The verbs whose answer is a modal: answered once the modal is open and filled (the listener's end).
MODAL_VERBS = frozenset({"set", "bulk"})
# Where recbot/app.py's middleware leaves a command's FirstAnswer in Bolt's context.
FIRST_ANSWER = "recbot_first_answer"
# A `get` still waiting on Agora after this long is told so; the answer then replaces that notice.
SLOW_READ_SECONDS = 2.0
# Slack's answer to that notice is waited for this long at most: the answer waits for it.
SLOW_READ_NOTICE_TIMEOUT = 3.0


def verb_label(text: str) -> str:
    """The command's verb as a metric label: one of bot/commands.py's verbs, `help` for no text
    (it answers with the help), `other` for any other first word (never what was typed)."""
    words = as_typed(text).split(maxsplit=1)
    if not words:
        return "help"
    verb = words[0].lower()
    return verb if verb in VERBS else "other"


def agora_outcome(exc: AgoraError) -> CommandOutcome:
    """No such entry point or App ID is what was typed (refused); anything else Agora said, failed."""
    return "refused" if isinstance(exc, AgoraNotFound) else "failed"


def switch_outcome(kind: str) -> CommandOutcome:
    """A switch's Outcome kind as a command's: done, asked for or already so is ok."""
    if kind in ("applied", "no_change", "needs_approval"):
        return "ok"
    return "refused" if kind in ("refused", "stale") else "failed"


def register(app: App, services: Services) -> None:
    @app.command("/recording")
    def recording(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext) -> None:
        ack()
        verb = verb_label(command.get("text") or "")
        outcome: CommandOutcome = "failed"  # what a listener that raises ends as (handlers/errors.py answers)
        try:
            outcome = answer(command, respond, client, services)
        finally:
            services.metrics.commands.labels(verb=verb, outcome=outcome).inc()
        first = context.get(FIRST_ANSWER)
        if verb in MODAL_VERBS and first is not None:
            first.answered()  # the modal is open and filled; a no-op when a message answered first


def answer(command: dict[str, Any], respond: Respond, client: WebClient, services: Services) -> CommandOutcome:
    """Check where and by whom, parse and answer the command; how it ended."""
    settings = services.settings
    if not services.channel_allowed(command.get("channel_id", "")):
        reply(
            respond,
            messages.error(
                "recbot does not answer in this channel; use one of the channels in RECBOT_ALLOWED_CHANNELS."
            ),
        )
        return "refused"
    try:
        parsed = parse_command(
            command.get("text") or "",
            default_app=settings.AGORA_APP_ID,
            default_region=settings.AGORA_DEFAULT_REGION,
        )
    except UsageError as exc:
        reply(respond, messages.usage(str(exc)))
        return "refused"
    if parsed.verb == "get" and parsed.target is None:
        assert parsed.app_id is not None
        blocks = picker.picker_blocks("get", parsed.app_id, settings.AGORA_DEFAULT_REGION, services.sealer)
        respond(blocks=blocks, text="Choose an entry point", response_type="ephemeral")
    elif parsed.verb == "get":
        return show_config(parsed, services, respond)
    elif parsed.verb == "set":
        if not services.requesters.includes(command.get("user_id", ""), GroupLookup(client)):
            reply(
                respond,
                messages.error(
                    "You are not in RECBOT_REQUESTERS, so you cannot change "
                    "recording configurations. Ask whoever runs recbot."
                ),
            )
            return "refused"
        if parsed.target is None:
            assert parsed.app_id is not None
            return open_picker(parsed.app_id, command["trigger_id"], services, client, respond)
        return open_edit_form(parsed, command["trigger_id"], services, client, respond)
    elif parsed.verb == "history":
        assert parsed.target is not None
        reply(respond, requests.history(parsed.target, services.store.audit.history(parsed.target)))
    elif parsed.verb == "pending":
        reply(respond, requests.pending(services.approvals.open_requests()))
    elif parsed.verb == "jobs":
        jobs.show_jobs(command.get("user_id", ""), services, client, respond)
    elif parsed.verb == "list":
        return list_fleet(parsed, services, respond)
    elif parsed.verb == "bulk":
        return bulk.run_command(parsed, command.get("user_id", ""), command["trigger_id"], services, client, respond)
    elif parsed.verb in ("pause", "resume", "stream"):
        return switch_outcome(switch.run_command(parsed, command.get("user_id", ""), services, client, respond))
    else:
        reply(respond, messages.usage())
    return "ok"


def reply(respond: Respond, blocks: list[dict[str, Any]], text: str | None = None) -> None:
    """Answer the person who typed the command, and nobody else."""
    fallback = text or (blocks[0]["text"]["text"][:300] if blocks and "text" in blocks[0] else "recbot")
    respond(blocks=blocks, text=fallback, response_type="ephemeral")


def list_fleet(parsed: Command, services: Services, respond: Respond) -> CommandOutcome:
    """Answer at once, then replace that message with the first page of the table."""
    assert parsed.app_id is not None
    app_id = parsed.app_id
    reply(
        respond,
        messages.text_blocks(
            f":hourglass_flowing_sand: Listing the entry points of App ID `{messages.escape(app_id)}`…"
        ),
    )
    try:
        names = services.fleet.entry_points(app_id)
    except AgoraError as exc:
        replace(respond, messages.error(exc.user_message()))
        return agora_outcome(exc)
    replace(respond, messages.text_blocks(fleet.progress(app_id, len(names), parsed.regions)))
    scan = services.fleet.scan(app_id, names, parsed.regions)
    switches = services.switches.book.known_of_app(app_id)
    replace(respond, fleet.page(scan, 0, services.sealer, switches), fleet.page_text(scan))
    return "ok"


def replace(respond: Respond, blocks: list[dict[str, Any]], text: str | None = None) -> None:
    """Replace the message this command answered with (the user's alone)."""
    fallback = text or (blocks[0]["text"]["text"][:300] if blocks and "text" in blocks[0] else "recbot")
    respond(blocks=blocks, text=fallback, response_type="ephemeral", replace_original=True)


def show_config(parsed: Command, services: Services, respond: Respond) -> CommandOutcome:
    """Read the live config and answer the user alone with its summary; when Agora is slow,
    say so meanwhile, and answer in place of that."""
    assert parsed.target is not None
    target = parsed.target

    def tell_slow() -> None:
        blocks, text = summary.slow_read(target), summary.slow_read_text(target)
        # A command's respond is recbot's PooledRespond (recbot/app.py), which takes a read_timeout.
        respond(blocks=blocks, text=text, response_type="ephemeral", read_timeout=SLOW_READ_NOTICE_TIMEOUT)  # type: ignore[call-arg]

    slow = services.alarms.after(SLOW_READ_SECONDS, tell_slow)
    failure: AgoraError | None = None
    try:
        config = services.read_config(target)
    except AgoraError as exc:
        failure = exc
    finally:  # whatever happens, no notice after the answer; an answer after a notice (or a try) replaces it
        answer_with = replace if slow.cancel() else reply
    if failure is not None:
        answer_with(respond, messages.error(f"{target.describe()}: {failure.user_message()}"))  # what was read
        return agora_outcome(failure)
    known = services.switches.book.known(target.app_id, target.entry_point)
    waiting = services.store.requests.open_request_for(Target.every_region(target.app_id, target.entry_point))
    switch = switch_blocks.summary_blocks(known, target, services.sealer, services.switches.needs_approval, waiting)

    def stop(stream: str) -> str:
        words = ("stream", target.entry_point, target.region, stream, "off")
        return messages.escape(services.switches.command(*words, app_id=target.app_id))

    tasks = switch_blocks.tasks_blocks(services.store.switches.stream_tasks_of(target), target, stop)
    answer_with(respond, summary.summary(target, config) + switch + tasks, summary.summary_text(target))
    return "ok"


def open_picker(
    app_id: str, trigger_id: str, services: Services, client: WebClient, respond: Respond
) -> CommandOutcome:
    """`/recording set` without an entry point: a modal to pick one; choosing fills in the form."""
    view = picker.picker_modal(app_id, services.settings.AGORA_DEFAULT_REGION, services.sealer)
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc.response.get("error"))
        reply(respond, messages.error("Slack did not open the form (it may have taken too long). Try again."))
        return "failed"
    return "ok"


def open_edit_form(
    parsed: Command,
    trigger_id: str,
    services: Services,
    client: WebClient,
    respond: Respond,
    revert_to: Observation | None = None,
) -> CommandOutcome:
    """Open a loading modal while the trigger is fresh, then fill it from the live config."""
    assert parsed.target is not None
    try:
        opened = client.views_open(trigger_id=trigger_id, view=edit_form.loading_view(parsed.target))
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc.response.get("error"))
        reply(respond, messages.error("Slack did not open the form (it may have taken too long). Try again."))
        return "failed"
    return fill_edit_form(opened["view"], parsed.target, services, client, revert_to)


def fill_edit_form(
    view: dict[str, Any], target: Target, services: Services, client: WebClient, revert_to: Observation | None = None
) -> CommandOutcome:
    """Turn an open modal (loading, or the picker) into the edit form, from the
    live config; with `revert_to`, filled with those previous values instead."""
    outcome: CommandOutcome = "ok"
    try:
        config = services.read_config(target)
    except AgoraError as exc:
        new_view = edit_form.message_view(f":x: {target.describe()}: {exc.user_message()}")
        outcome = agora_outcome(exc)
    else:
        metadata = edit_form.FormMetadata(target, services.changes.digest(config))
        values = (
            edit_form.FormValues.from_config(config)
            if revert_to is None
            else edit_form.FormValues.reverting_to(revert_to, services.drift.observe(config))
        )
        warning = switch_blocks.resumes_warning(services.switches.book.known(target.app_id, target.entry_point))
        current = edit_form.current_block(target, config, warning)
        new_view = edit_form.form_view(metadata, services.sealer, values, current)
    client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    return outcome
