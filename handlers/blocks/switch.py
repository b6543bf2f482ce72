"""The recording switch and single streams: the lines and buttons of `/recording
get`, the answers of pause/resume/stream, and the App Home's section."""

from __future__ import annotations

import json
from typing import Any

from bot.models import EVERY_REGION, Target
from bot.outcome import Outcome
from bot.seal import Sealer
from bot.store.values import StreamTaskRow, SwitchRow
from bot.switch import consequence, describe, inert
from handlers.blocks.approval_card import when
from handlers.blocks.messages import escape

ACTION_PAUSE = "switch_pause"
ACTION_RESUME = "switch_resume"
ACTION_HOME_RESUME = "home_switch_resume"
ACTION_HOME_STOP = "home_stream_stop"
BLOCK_SWITCH = "summary_switch"
BLOCK_SWITCH_BUTTONS = "summary_switch_buttons"
BLOCK_OUTCOME = "switch_outcome"
BLOCK_STATE = "switch_state"
BLOCK_HOME_EMPTY = "home_switches"
HOME_PAUSED_PREFIX = "home_paused_"
HOME_STREAM_PREFIX = "home_stream_"
BLOCK_HOME_MORE = "home_switches_more"
# A home tab holds at most 100 blocks; the rest of the home takes up to 84.
MAX_HOME_ITEMS = 5
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


def confirm_pause(entry_point: str) -> dict[str, Any]:
    """The dialog a Pause button asks first: what stops, said plainly."""
    text = consequence(False, inert(entry_point)).replace("`", '"')
    return {
        "title": _plain("Pause recording?"),
        "text": _plain((text[0].upper() + text[1:])[:300]),
        "confirm": _plain("Pause"),
        "deny": _plain("Cancel"),
        "style": "danger",
    }


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "text": _plain(text), "value": value}
    if style:
        button["style"] = style
    return button


def summary_blocks(state: SwitchRow | None, target: Target, sealer: Sealer) -> list[dict[str, Any]]:
    """`/recording get`'s lines on the switch, with Pause and/or Resume as recbot knows it."""
    name = escape(target.entry_point)
    text = (
        f"*Custom recording of every stream of `{name}`* (all regions): {state_text(state)}\n"
        "_Agora has no read of this switch: recbot shows what it set, and no more._"
    )
    value = switch_value(target, sealer)
    buttons = []
    if state is None or state.enabled is not False:
        pause = _button("Pause", ACTION_PAUSE, value, "danger")
        pause["confirm"] = confirm_pause(target.entry_point)
        buttons.append(pause)
    if state is None or state.enabled is not True:
        buttons.append(_button("Resume", ACTION_RESUME, value, "primary"))
    return [
        {"type": "section", "block_id": BLOCK_SWITCH, "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": BLOCK_SWITCH_BUTTONS, "elements": buttons},
    ]


def outcome_blocks(outcome: Outcome, state: SwitchRow | None = None, entry_point: str = "") -> list[dict[str, Any]]:
    """The answer to a pause, resume or stream: what happened (its message is mrkdwn with names
    made inert), and, with `entry_point`, what recbot knows now."""
    icon = OUTCOME_ICONS.get(outcome.kind, ":x:" if outcome.kind == "failed" else ":no_entry:")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": BLOCK_OUTCOME,
            "text": {"type": "mrkdwn", "text": f"{icon} {outcome.message}"[:3000]},
        }
    ]
    if entry_point:
        line = f"Custom recording of every stream of `{escape(entry_point)}`, as recbot knows it: {state_text(state)}"
        blocks.append(
            {"type": "context", "block_id": BLOCK_STATE, "elements": [{"type": "mrkdwn", "text": line[:3000]}]}
        )
    return blocks


def outcome_text(outcome: Outcome) -> str:
    """Notification fallback text."""
    return outcome.message[:300]


def home_blocks(paused: list[SwitchRow], streams: list[StreamTaskRow], sealer: Sealer) -> list[dict[str, Any]]:
    """The App Home's entry points recbot paused (Resume) and streams it records by task (Stop)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain("Paused entry points and single streams")},
    ]
    for index, state in enumerate(paused[:MAX_HOME_ITEMS]):
        target = Target.model_construct(app_id=state.app_id, entry_point=state.entry_point, region=EVERY_REGION)
        text = f"*{escape(state.entry_point)}* (app {escape(state.app_id)}): {state_text(state)}"
        value = switch_value(target, sealer)
        blocks.append(_home_item(f"{HOME_PAUSED_PREFIX}{index}", text, "Resume", ACTION_HOME_RESUME, value))
    for index, task in enumerate(streams[:MAX_HOME_ITEMS]):
        where = f"({task.target.region}, app {escape(task.target.app_id)})"
        text = (
            f"Stream *{escape(task.stream)}* of *{escape(task.target.entry_point)}* {where}: recorded by a task "
            f"since {when(task.started_at)}, started by <@{task.started_by}>; Agora ends it with the push"
        )
        value = stream_value(task.target, task.stream, sealer)
        blocks.append(_home_item(f"{HOME_STREAM_PREFIX}{index}", text, "Stop", ACTION_HOME_STOP, value))
    more = max(0, len(paused) - MAX_HOME_ITEMS) + max(0, len(streams) - MAX_HOME_ITEMS)
    if not paused and not streams:
        blocks.append(
            {
                "type": "section",
                "block_id": BLOCK_HOME_EMPTY,
                "text": {"type": "mrkdwn", "text": "recbot has paused no entry point, and records no single stream."},
            }
        )
    elif more:
        blocks.append(
            {
                "type": "context",
                "block_id": BLOCK_HOME_MORE,
                "elements": [{"type": "mrkdwn", "text": f"…and {more} more; see `/recording get` of each."}],
            }
        )
    return blocks


def _home_item(block_id: str, text: str, label: str, action_id: str, value: str) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text[:3000]}}
    if len(value) <= MAX_VALUE:  # names too long for a button are left to the command
        item["accessory"] = _button(label, action_id, value, "primary" if label == "Resume" else "danger")
    return item
