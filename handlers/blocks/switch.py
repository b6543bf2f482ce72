"""The recording switch and single streams: the lines and buttons of `/recording
get`, the answers of pause/resume/stream, and the App Home's section."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.models import EVERY_REGION, Target
from bot.outcome import Outcome
from bot.seal import Sealer
from bot.store.values import RequestRow, StreamTaskRow, SwitchRow
from bot.switch import consequence, describe, verb
from bot.switching import SwitchService
from handlers.blocks.approval_card import switch_wanted, when
from handlers.blocks.messages import code, escape, escape_keeping_mentions

ACTION_PAUSE = "switch_pause"
ACTION_RESUME = "switch_resume"
ACTION_HOME_RESUME = "home_switch_resume"
ACTION_HOME_PAUSE = "home_switch_pause"
ACTION_HOME_STOP = "home_stream_stop"
BLOCK_SWITCH = "summary_switch"
BLOCK_SWITCH_BUTTONS = "summary_switch_buttons"
BLOCK_OUTCOME = "switch_outcome"
BLOCK_STATE = "switch_state"
BLOCK_INTERIM = "switch_interim"
BLOCK_HOME_EMPTY = "home_switches"
HOME_PAUSED_PREFIX = "home_paused_"
HOME_STREAM_PREFIX = "home_stream_"
BLOCK_HOME_MORE = "home_switches_more"
BLOCK_TASKS = "summary_stream_tasks"
# An answer holds at most 50 blocks; the configuration and the switch take up to 5.
MAX_TASK_SECTIONS = 10
# Names the home's "more" line spells out before it only counts the rest (a context element holds 3000).
MAX_MORE_TEXT = 2500
# A home tab holds at most 100 blocks; the rest of the home takes up to 87, this part 13: its header,
# a "more" line, and items of one block (a section and its button) or two (an unknown switch's two buttons).
MAX_HOME_ITEMS = 5
MAX_HOME_BLOCKS = 13
HOME_UNKNOWN_BUTTONS = "_buttons"
OUTCOME_ICONS = {"applied": ":white_check_mark:", "no_change": ":information_source:", "needs_approval": ":lock:"}


def state_text(state: SwitchRow | None) -> str:
    """What recbot knows of a switch, for Slack: mentions and each reader's own time zone."""
    return describe(state, who=lambda user: f"<@{user}>", when=when)


MAX_VALUE = 2000  # Slack's limit on a button's value


def _names(*names: str) -> str:
    """JSON of `names` in which no <, > or & appears raw: a value Slack carries but never shows stays inert too."""
    text = json.dumps(list(names), ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def switch_value(target: Target, sealer: Sealer) -> str:
    """An entry point, signed, for a Pause or Resume button."""
    return sealer.signed("switch", _names(target.app_id, target.entry_point))


def read_switch_value(value: Any, sealer: Sealer) -> Target | None:
    """The entry point (as a whole) a genuine Pause or Resume button names, or None."""
    try:
        app_id, entry_point = json.loads(sealer.read_signed("switch", value) or "null")
        return Target.every_region(app_id, entry_point)
    except (TypeError, ValueError):
        return None


def stream_value(target: Target, stream: str, sealer: Sealer) -> str:
    """A stream task, signed, for a Stop button."""
    return sealer.signed("stream", _names(target.app_id, target.entry_point, target.region, stream))


def read_stream_value(value: Any, sealer: Sealer) -> tuple[Target, str] | None:
    """The entry point, region and stream a genuine Stop button names, or None."""
    try:
        app_id, entry_point, region, stream = json.loads(sealer.read_signed("stream", value) or "null")
        return Target(app_id=app_id, entry_point=entry_point, region=region), str(stream)
    except (TypeError, ValueError):
        return None


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


APPROVAL_FIRST = " This needs a second person's approval (RECBOT_APPROVAL_FOR=all): it goes to the approvers first."


def confirm_pause(entry_point: str, needs_approval: bool = False) -> dict[str, Any]:
    """The dialog a Pause button asks first: what stops, said plainly, and whether approval comes first."""
    said = escape(consequence(False, entry_point)).replace("`", '"')
    text = said[0].upper() + said[1:]
    if needs_approval:
        text = text[: 300 - len(APPROVAL_FIRST)] + APPROVAL_FIRST
    return {
        "title": _plain("Pause recording?"),
        "text": _plain(text[:300]),
        "confirm": _plain("Pause"),
        "deny": _plain("Cancel"),
        "style": "danger",
    }


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "text": _plain(text), "value": value}
    if style:
        button["style"] = style
    return button


def waiting_line(row: RequestRow) -> str:
    """An open pause or resume request, by ID: waiting for approval, or approved and being applied."""
    enabled = switch_wanted(row)
    kind = verb(enabled) if enabled is not None else "switch"
    how = f"is waiting for approval (expires {when(row.expires_at)})" if row.state == "pending" else "is being applied"
    return f":lock: A {kind} request `{row.id}` from <@{row.requester}> {how}."


def resumes_warning(state: SwitchRow | None) -> str | None:
    """Before a configuration is applied: that it switches recording on again where recbot paused it
    (Agora does with every configuration), or may have; None where recbot knows of no pause."""
    if state is None or state.wanted is not False:
        return None
    name, by, on = code(state.entry_point), f"<@{state.actor}>", when(state.at)
    if state.enabled is False:
        return (
            f":warning: Applying this resumes custom recording of every stream of {name}, paused by {by} on {on}: "
            "Agora switches it on with every configuration. Pause it again afterwards if it must stay off."
        )
    return (
        f":warning: {by} asked for a pause of {name} on {on}, and whether it took effect is unknown; if it did, "
        "applying this resumes custom recording of every stream: Agora switches it on with every configuration."
    )


def pause_lifted_text(pause: SwitchRow, now: SwitchRow, command: str) -> str:
    """The direct message to whoever paused an entry point that a configuration switched on again
    (`command`: how to pause it again, mrkdwn)."""
    asked = "paused" if pause.enabled is False else "asked for a pause of (whether it took effect is unknown)"
    return (
        f"Custom recording of every stream of {code(now.entry_point)} (app {code(now.app_id)}) is on again: a "
        f"configuration change requested by <@{now.actor}> was applied on {when(now.at)}, and Agora switches "
        f"recording on with every configuration. You {asked} it on {when(pause.at)}. To pause it again: {command}."
    )


def summary_blocks(
    state: SwitchRow | None,
    target: Target,
    sealer: Sealer,
    needs_approval: bool = False,
    waiting: RequestRow | None = None,
) -> list[dict[str, Any]]:
    """`/recording get`'s lines on the switch, with Pause and/or Resume as recbot knows it,
    and the pause or resume request `waiting` for approval, if any."""
    text = (
        f"*Custom recording of every stream of {code(target.entry_point)}* (all regions): {state_text(state)}\n"
        + (f"{waiting_line(waiting)}\n" if waiting is not None else "")
        + "_Agora has no read of this switch: recbot shows what it set, and no more._"
    )
    value = switch_value(target, sealer)
    buttons = []
    if state is None or state.enabled is not False:
        pause = _button("Pause", ACTION_PAUSE, value, "danger")
        pause["confirm"] = confirm_pause(target.entry_point, needs_approval)
        buttons.append(pause)
    if state is None or state.enabled is not True:
        buttons.append(_button("Resume", ACTION_RESUME, value, "primary"))
    return [
        {"type": "section", "block_id": BLOCK_SWITCH, "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": BLOCK_SWITCH_BUTTONS, "elements": buttons},
    ]


def outcome_blocks(outcome: Outcome, state: SwitchRow | None = None, entry_point: str = "") -> list[dict[str, Any]]:
    """The answer to a pause, resume or stream: what happened (its message is plain text, escaped
    here but for the people recbot's own words name), and, with `entry_point`, what recbot knows now."""
    icon = OUTCOME_ICONS.get(outcome.kind, ":x:" if outcome.kind == "failed" else ":no_entry:")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": BLOCK_OUTCOME,
            "text": {
                "type": "mrkdwn",
                "text": f"{icon} {escape_keeping_mentions(outcome.message, outcome.mentions)}"[:3000],
            },
        }
    ]
    if entry_point:
        line = f"Custom recording of every stream of {code(entry_point)}, as recbot knows it: {state_text(state)}"
        blocks.append(
            {"type": "context", "block_id": BLOCK_STATE, "elements": [{"type": "mrkdwn", "text": line[:3000]}]}
        )
    return blocks


def interim_text(verb: str, target: Target, stream: str | None, enabled: bool, switches: SwitchService) -> str:
    """What is being asked of Agora right now, while its answer is awaited (mrkdwn)."""
    if verb == "stream":
        where = escape(switches.named(target.app_id, target.entry_point, target.region))
        asking = f"Asking Agora to {'start' if enabled else 'stop'} recording stream {code(stream or '')} of {where}…"
    elif switches.needs_approval:
        name = escape(switches.named(target.app_id, target.entry_point))
        asking = f"Checking with Agora that {name} exists, before a {verb} request is opened…"
    else:
        asking = (
            f"Asking Agora to {verb} custom recording of {escape(switches.named(target.app_id, target.entry_point))}…"
        )
    return (
        f":hourglass_flowing_sand: {asking} The answer replaces this message; when Agora is slow it can take "
        "up to about 20 seconds."
    )


def interim_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "block_id": BLOCK_INTERIM, "text": {"type": "mrkdwn", "text": text[:3000]}}]


def outcome_text(outcome: Outcome) -> str:
    """Notification fallback text (Slack parses it as mrkdwn too)."""
    return escape_keeping_mentions(outcome.message, outcome.mentions)[:300]


def task_text(task: StreamTaskRow) -> str:
    """What recbot knows of a stream task: recorded, or unknown because Agora's answer was lost."""
    if not task.answered:
        return (
            f"unknown (no answer from Agora to the start by <@{task.started_by}> on {when(task.started_at)}): "
            "it may or may not be recorded"
        )
    return (
        f"recorded by a task since {when(task.started_at)}, started by <@{task.started_by}>; "
        "Agora ends it with the push"
    )


def tasks_blocks(tasks: list[StreamTaskRow], target: Target, stop: Callable[[str], str]) -> list[dict[str, Any]]:
    """`/recording get`'s single streams of the entry point in this region that recbot lists (started
    and not stopped by it), newest first, each with the command that stops it (`stop`, mrkdwn)."""
    if not tasks:
        return []
    sections = [
        f"*Single streams of {code(target.entry_point)} in {target.region} recorded by a task* (as recbot knows)"
    ]
    shown = 0
    for task in tasks:
        line = f"• {code(task.stream)}: {task_text(task)}. Stop: {stop(task.stream)}"[:2900]
        if len(sections[-1]) + len(line) < 2900:
            sections[-1] += "\n" + line
        elif len(sections) < MAX_TASK_SECTIONS:
            sections.append(line)
        else:
            break
        shown += 1
    if shown < len(tasks):
        sections[-1] += f"\n…and {len(tasks) - shown} more."
    return [
        {"type": "section", "block_id": f"{BLOCK_TASKS}_{i}", "text": {"type": "mrkdwn", "text": text}}
        for i, text in enumerate(sections)
    ]


def _listed(names: list[str]) -> str:
    """Names, comma-separated, as many as fit the home's "more" line; the rest counted."""
    shown: list[str] = []
    for name in names:
        if sum(len(n) + 2 for n in shown) + len(name) > MAX_MORE_TEXT // 2:
            return ", ".join(shown) + f" and {len(names) - len(shown)} others"
        shown.append(name)
    return ", ".join(shown)


def _more_line(paused: list[SwitchRow], streams: list[StreamTaskRow]) -> str:
    """What the home leaves out, by name, and where each can be seen with its buttons."""
    parts = []
    if paused:
        names = _listed([f"{code(s.entry_point)} (app {code(s.app_id)})" for s in paused])
        parts.append(f"{len(paused)} more entry points: {names} (`/recording get &lt;entry_point&gt;` shows each)")
    if streams:
        names = _listed(
            [
                f"{code(t.stream)} of {code(t.target.entry_point)} ({t.target.region}, app {code(t.target.app_id)})"
                for t in streams
            ]
        )
        parts.append(
            f"{len(streams)} more single streams: {names} "
            "(`/recording get &lt;entry_point&gt; &lt;region&gt;` lists an entry point's, each with its stop command)"
        )
    return "…and " + "; and ".join(parts) + "."


def last_asked(state: SwitchRow) -> str:
    """An unknown switch on the home: what recbot last sent, by whom, and why it does not know."""
    what = "a configuration (which switches it on)" if state.cause == "config" else verb(state.wanted)
    why = {
        "sending": "being sent to Agora now",
        "interrupted": "recbot stopped while sending it",
    }.get(state.status, "no usable answer from Agora")
    return f"unknown (last asked: {what} by <@{state.actor}> on {when(state.at)}; {why})"


def _switch_item(index: int, state: SwitchRow, sealer: Sealer, needs_approval: bool) -> list[dict[str, Any]]:
    """A paused entry point with Resume, or one whose switch is unknown with Pause and Resume."""
    target = Target.model_construct(app_id=state.app_id, entry_point=state.entry_point, region=EVERY_REGION)
    value, name = switch_value(target, sealer), f"{code(state.entry_point)} (app {code(state.app_id)})"
    block_id = f"{HOME_PAUSED_PREFIX}{index}"
    if state.enabled is False:
        return [_home_item(block_id, f"{name}: {state_text(state)}", "Resume", ACTION_HOME_RESUME, value)]
    item = {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": f"{name}: {last_asked(state)}"}}
    if len(value) > MAX_VALUE:  # names too long for a button are left to the command
        return [item]
    pause = _button("Pause", ACTION_HOME_PAUSE, value, "danger")
    pause["confirm"] = confirm_pause(state.entry_point, needs_approval)
    resume = _button("Resume", ACTION_HOME_RESUME, value, "primary")
    buttons = {"type": "actions", "block_id": block_id + HOME_UNKNOWN_BUTTONS, "elements": [pause, resume]}
    return [item, buttons]


def home_blocks(
    paused: list[SwitchRow], streams: list[StreamTaskRow], sealer: Sealer, needs_approval: bool = False
) -> list[dict[str, Any]]:
    """The App Home's entry points recbot paused (Resume) or whose switch it does not know (Pause and
    Resume), and the streams it records by task (Stop), newest first; what does not fit is named below."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain("Paused entry points and single streams")},
    ]
    budget = MAX_HOME_BLOCKS - 2  # the header, and the "more" or "none" line
    streams = sorted(streams, key=lambda task: task.started_at, reverse=True)
    shown_paused = 0
    for state in paused[:MAX_HOME_ITEMS]:
        blocks += _switch_item(shown_paused, state, sealer, needs_approval)
        shown_paused += 1
    budget -= len(blocks) - 1
    shown_streams = 0
    for task in streams[: min(MAX_HOME_ITEMS, budget)]:
        where = f"({task.target.region}, app {code(task.target.app_id)})"
        text = f"Stream {code(task.stream)} of {code(task.target.entry_point)} {where}: {task_text(task)}"
        value = stream_value(task.target, task.stream, sealer)
        blocks.append(_home_item(f"{HOME_STREAM_PREFIX}{shown_streams}", text, "Stop", ACTION_HOME_STOP, value))
        shown_streams += 1
    hidden_paused, hidden_streams = paused[shown_paused:], streams[shown_streams:]
    if not paused and not streams:
        blocks.append(
            {
                "type": "section",
                "block_id": BLOCK_HOME_EMPTY,
                "text": {"type": "mrkdwn", "text": "recbot has paused no entry point, and records no single stream."},
            }
        )
    elif hidden_paused or hidden_streams:
        more = _more_line(hidden_paused, hidden_streams)
        blocks.append(
            {"type": "context", "block_id": BLOCK_HOME_MORE, "elements": [{"type": "mrkdwn", "text": more[:3000]}]}
        )
    return blocks


def _home_item(block_id: str, text: str, label: str, action_id: str, value: str) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text[:3000]}}
    if len(value) <= MAX_VALUE:  # names too long for a button are left to the command
        item["accessory"] = _button(label, action_id, value, "primary" if label == "Resume" else "danger")
    return item
