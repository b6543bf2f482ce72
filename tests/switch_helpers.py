"""Helpers to drive pause, resume, single streams and `/recording get`'s switch through the Slack fake."""

from __future__ import annotations

import json
from typing import Any

from handlers.blocks import switch as switch_blocks
from tests.driver import SlackDriver
from tests.fakes.agora import AgoraEmulator, Received
from tests.fakes.slack import Call, FakeSlack


def interim(call: Call) -> bool:
    """Whether an answer is the "asking Agora" message a pause, resume or stream answers with at once."""
    return any(b.get("block_id") == switch_blocks.BLOCK_INTERIM for b in call.params.get("blocks") or [])


def answers(slack: FakeSlack, count: int) -> list[Call]:
    """The first `count` answers on response_url that are not interim ones (waiting for them)."""
    return slack.wait_for("response_url", count=count, where=lambda c: not interim(c))[:count]


def run(driver: SlackDriver, slack: FakeSlack, text: str, user: str = "UALICE") -> Call:
    """Send `/recording <text>`; the answer it got (ephemeral, checked), past any interim one."""
    answered = len([c for c in slack.of("response_url") if not interim(c)])
    assert driver.command(text, user=user).status_code == 200
    reply = slack.wait_for("response_url", count=answered + 1, where=lambda c: not interim(c))[answered]
    assert reply.params["response_type"] == "ephemeral"
    return reply


def said(call: Call) -> str:
    return json.dumps(call.params, ensure_ascii=False)


def switch_calls(agora: AgoraEmulator) -> list[Received]:
    return [c for c in agora.calls("PATCH") if c.path.endswith("/settings/record/custom/auto")]


def task_calls(agora: AgoraEmulator) -> list[Received]:
    return [c for c in agora.calls() if "/admin/record/custom/" in c.path]


def get_switch_buttons(reply: Call) -> dict[str, dict[str, Any]]:
    """The switch buttons under a `/recording get` answer, by action id."""
    block = next(b for b in reply.params["blocks"] if b.get("block_id") == switch_blocks.BLOCK_SWITCH_BUTTONS)
    return {e["action_id"]: e for e in block["elements"]}


def switch_line(reply: Call) -> str:
    block = next(b for b in reply.params["blocks"] if b.get("block_id") == switch_blocks.BLOCK_SWITCH)
    return block["text"]["text"]


def click_get_button(
    driver: SlackDriver, slack: FakeSlack, reply: Call, action_id: str, user: str = "UALICE", value: Any = None
) -> Call:
    """Click Pause or Resume under a `get` answer; the answer the clicker got."""
    action = dict(get_switch_buttons(reply)[action_id])
    if value is not None:
        action["value"] = value
    answered = len(slack.of("response_url"))
    message = {"ts": "1700000000.000100", "blocks": reply.params["blocks"]}
    assert driver.block_action(user, action, message=message, channel="CRUN").status_code == 200
    return slack.wait_for("response_url", count=answered + 1)[answered]
