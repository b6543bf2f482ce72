"""Picked, not typed: `/recording set` and `get` without an entry point offer
the app's entry points in a select that searches as the user types."""

from __future__ import annotations

import json
from typing import Any

from handlers.blocks import edit_form as form
from handlers.blocks import picker
from tests.conftest import APP_ID, LIVE_CONFIG


def pick_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return next(b for b in blocks if str(b.get("block_id", "")).startswith(picker.BLOCK_PICK + "."))


def suggest(driver, block_id: str, typed: str) -> list[str]:
    answer = driver.interaction(
        {
            "type": "block_suggestion",
            "user": {"id": "UALICE"},
            "action_id": picker.ACTION_ENTRY_POINT,
            "block_id": block_id,
            "value": typed,
        }
    )
    assert answer.status_code == 200, answer.text
    return [o["value"] for o in answer.json()["options"]]


def choice(block_id: str, name: str, region: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry-point select's action, and the state holding the region select."""
    action = {
        "action_id": picker.ACTION_ENTRY_POINT,
        "block_id": block_id,
        "type": "external_select",
        "selected_option": {"text": {"type": "plain_text", "text": name}, "value": name},
    }
    state = {
        "values": {block_id: {picker.ACTION_REGION: {"type": "static_select", "selected_option": {"value": region}}}}
    }
    return action, state


def test_set_without_an_entry_point_picks_one_then_shows_its_form(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "backup", "eu", LIVE_CONFIG)
    agora.put(APP_ID, "backstage", "na", LIVE_CONFIG)
    driver.command("set")
    (opened,) = slack.wait_for("views.open")
    block_id = pick_block(opened.params["view"]["blocks"])["block_id"]
    assert suggest(driver, block_id, "BACK") == ["backstage", "backup"]  # any case, sorted
    assert suggest(driver, block_id, "up") == ["backup"]
    assert suggest(driver, block_id, "") == ["backstage", "backup", "live"]
    lists = [c for c in agora.calls("GET") if c.path.endswith("/fls/entry_points")]
    assert len(lists) == 1  # the keystrokes were served from the brief cache
    view = slack.view(opened.params["_view_id"])
    action, state = choice(block_id, "backup", "eu")
    driver.block_action("UALICE", action, view={**view, "state": state})
    bot.drain()
    (updated,) = slack.of("views.update")
    filled = updated.params["view"]
    assert filled["callback_id"] == form.CALLBACK_EDIT and "backup (eu" in json.dumps(filled)
    assert json.loads(filled["private_metadata"])["ep"] == "backup"


def test_get_without_arguments_answers_with_the_selects(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "backup", "eu", LIVE_CONFIG)
    driver.command("get")
    (offer,) = slack.wait_for("response_url")
    block_id = pick_block(offer.params["blocks"])["block_id"]
    assert "backup" in suggest(driver, block_id, "b")
    action, state = choice(block_id, "backup", "eu")
    payload_message = {"ts": "1.000001", "blocks": offer.params["blocks"]}
    driver.interaction(
        {
            "type": "block_actions",
            "user": {"id": "UALICE"},
            "actions": [action],
            "state": state,
            "container": {"type": "message", "message_ts": "1.000001", "is_ephemeral": True},
            "message": payload_message,
            "response_url": driver.response_url,
            "trigger_id": "t1",
        }
    )
    bot.drain()
    answer = json.dumps(slack.of("response_url")[-1].params)
    assert "Recording configuration of `backup`" in answer and "(eu" in answer


def test_a_forged_picker_gets_no_options_and_changes_nothing(driver, slack, agora, bot) -> None:
    forged = f"{picker.BLOCK_PICK}.set.{APP_ID}.{'0' * 32}"
    assert suggest(driver, forged, "") == []
    action, state = choice(forged, "live", "na")
    view = {"id": "V1", "type": "modal", "callback_id": picker.CALLBACK_PICK, "state": state}
    assert driver.block_action("UALICE", action, view=view).status_code == 200
    bot.drain()
    assert slack.of("views.update") == [] and agora.calls() == []
