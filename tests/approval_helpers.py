"""Helpers to drive a change request through the Slack fake."""

from __future__ import annotations

import json
from typing import Any

from handlers.blocks import approval_card as card
from tests.driver import SlackDriver
from tests.fakes.slack import Call, FakeSlack
from tests.test_change_flow import open_form, state

NEW_ACCESS = "NEWACCESSKEY-9876"
NEW_SECRET = "NEW-SECRET-VALUE-qwerty-42"


def request_storage_change(
    driver: SlackDriver, slack: FakeSlack, user: str = "UALICE", entry_point: str = "live"
) -> Call:
    """Submit a storage change with keys; return the posted approval card."""
    view = open_form(driver, slack, text=f"set {entry_point} na", user=user)
    to_channel = lambda c: c.params.get("channel") == "CAPPROVE"  # noqa: E731
    cards = len([c for c in slack.of("chat.postMessage") if to_channel(c)])
    updates = len(slack.of("views.update"))
    driver.submit(
        user,
        view,
        state(change=True, vendor=7, region=0, bucket="hw-bucket", access=NEW_ACCESS, secret=NEW_SECRET),
    )
    assert "approval" in json.dumps(slack.wait_for("views.update", count=updates + 1)[-1].params)
    return slack.wait_for("chat.postMessage", count=cards + 1, where=to_channel)[-1]


def button(posted: Call, action_id: str) -> dict[str, Any]:
    elements = next(b for b in posted.params["blocks"] if b.get("block_id") == card.BLOCK_BUTTONS)["elements"]
    return next(e for e in elements if e["action_id"] == action_id)


KEEP = object()


def click(
    driver: SlackDriver, posted: Call, user: str, action_id: str, value: Any = KEEP, channel: str | None = None
) -> None:
    """Click a button of a posted card; `value` replaces the button's own (forgeries), `channel`
    the channel Slack says the card is in (a direct message's D... ID, or a replay elsewhere)."""
    action = dict(button(posted, action_id))
    if value is not KEEP:
        action["value"] = value
    ts = posted.params.get("ts") or posted.params["_ts"]
    message = {"ts": ts, "blocks": posted.params["blocks"]}
    where = channel or posted.params["channel"]
    assert driver.block_action(user, action, message=message, channel=where).status_code == 200


def text_of(call: Call) -> str:
    return json.dumps(call.params, ensure_ascii=False)


def card_shown(slack: FakeSlack, posted: Call) -> str:
    """A posted card as Slack shows it now (the last write wins)."""
    return json.dumps(slack.message(posted.params["channel"], posted.params["_ts"]), ensure_ascii=False)
