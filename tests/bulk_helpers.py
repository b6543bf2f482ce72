"""Helpers to drive a fleet-wide change through the Slack fake: the modal's state, submitting
it, the cards and the plan it leads to."""

from __future__ import annotations

import json
from typing import Any

from handlers.blocks import bulk_form as form
from handlers.blocks import job_card
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.driver import SlackDriver
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import Call, FakeSlack

NEW_ACCESS = "AKIANEWACCESS5678"
NEW_SECRET = "NEWSECRET-abc-123-rotated"
CAMERAS = [f"cam{i}" for i in range(6)]


def fleet(agora: AgoraEmulator, names: list[str] = CAMERAS, region: str = "na") -> None:
    """Entry points beside `live`, each with LIVE_CONFIG (bucket rec-bucket, MP4 on, HLS off)."""
    for name in names:
        agora.put(APP_ID, name, region, LIVE_CONFIG)


def bulk_state(
    *,
    app: str = APP_ID,
    regions: tuple[str, ...] = ("na",),
    entry: str = form.ALL,
    entry_text: str = "",
    now_vendor: int | None = None,
    now_bucket: str = "",
    now_mp4: str = form.ANY,
    now_hls: str = form.ANY,
    mp4: str = form.UNCHANGED,
    hls: str = form.UNCHANGED,
    storage: str = form.KEEP,
    new_vendor: int | None = None,
    new_region: int | None = None,
    new_bucket: str = "",
    access: str = "",
    secret: str = "",
) -> dict[str, Any]:
    """`view.state.values` as Slack sends it for the bulk modal."""

    def chosen(value: str | int | None) -> dict[str, Any]:
        return {"selected_option": None if value is None else {"value": str(value)}}

    def typed(value: str) -> dict[str, Any]:
        return {"value": value}

    return {
        form.BLOCK_APP: {form.ACTION_APP: typed(app)},
        form.BLOCK_REGIONS: {form.ACTION_REGIONS: {"selected_options": [{"value": r} for r in regions]}},
        form.BLOCK_ENTRY_KIND: {form.ACTION_ENTRY_KIND: chosen(entry)},
        form.BLOCK_ENTRY_TEXT: {form.ACTION_ENTRY_TEXT: typed(entry_text)},
        form.BLOCK_NOW_VENDOR: {form.ACTION_NOW_VENDOR: chosen(now_vendor)},
        form.BLOCK_NOW_BUCKET: {form.ACTION_NOW_BUCKET: typed(now_bucket)},
        form.BLOCK_NOW_MP4: {form.ACTION_NOW_MP4: chosen(now_mp4)},
        form.BLOCK_NOW_HLS: {form.ACTION_NOW_HLS: chosen(now_hls)},
        form.BLOCK_MP4: {form.ACTION_MP4: chosen(mp4)},
        form.BLOCK_HLS: {form.ACTION_HLS: chosen(hls)},
        form.BLOCK_STORAGE: {form.ACTION_STORAGE: chosen(storage)},
        form.BLOCK_NEW_VENDOR: {form.ACTION_NEW_VENDOR: chosen(new_vendor)},
        form.BLOCK_NEW_REGION: {f"{form.ACTION_NEW_REGION}_{new_vendor}": chosen(new_region)},
        form.BLOCK_NEW_BUCKET: {form.ACTION_NEW_BUCKET: typed(new_bucket)},
        form.BLOCK_ACCESS_KEY: {form.ACTION_ACCESS_KEY: typed(access)},
        form.BLOCK_SECRET_KEY: {form.ACTION_SECRET_KEY: typed(secret)},
    }


# New keys for every target of bucket rec-bucket (vendor 1): the rotation case.
ROTATION = {
    "now_vendor": 1,
    "now_bucket": "rec-bucket",
    "storage": form.KEYS,
    "access": NEW_ACCESS,
    "secret": NEW_SECRET,
}


def open_bulk(driver: SlackDriver, slack: FakeSlack, user: str = "UALICE", text: str = "bulk") -> dict[str, Any]:
    """Run `/recording bulk`; the modal as Slack holds it."""
    opened = len(slack.of("views.open"))
    assert driver.command(text, user=user).status_code == 200
    call = slack.wait_for("views.open", count=opened + 1)[opened]
    return slack.view(call.params["_view_id"])


def dms(slack: FakeSlack, user: str = "UALICE") -> list[Call]:
    return [c for c in slack.of("chat.postMessage") if c.params.get("channel") == user]


def cards(slack: FakeSlack, channel: str = "CAPPROVE") -> list[Call]:
    return [c for c in slack.of("chat.postMessage") if c.params.get("channel") == channel]


def ask(driver: SlackDriver, slack: FakeSlack, user: str = "UALICE", **values: Any) -> Call:
    """Submit the modal with `values` (a rotation by default); the approval card posted."""
    view = open_bulk(driver, slack, user)
    posted = len(cards(slack))
    answer = driver.submit(user, view, bulk_state(**(values or ROTATION)))
    assert answer.status_code == 200 and not answer.text, answer.text  # valid: the modal closes
    return slack.wait_for("chat.postMessage", count=posted + 1, where=lambda c: c.params.get("channel") == "CAPPROVE")[
        -1
    ]


def plan_update(slack: FakeSlack, user: str = "UALICE", count: int = 1) -> Call:
    """The "planning…" DM as replaced by the plan card (or the refusal)."""
    return slack.wait_for("chat.update", count=count, where=lambda c: c.params.get("channel") == user)[count - 1]


def button(posted: Call, action_id: str) -> dict[str, Any]:
    block = next(b for b in posted.params["blocks"] if b.get("block_id") == job_card.BLOCK_BUTTONS)
    return next(e for e in block["elements"] if e["action_id"] == action_id)


def click(driver: SlackDriver, posted: Call, user: str, action_id: str) -> None:
    """Click a button of a posted card, where it was posted."""
    ts = posted.params.get("ts") or posted.params["_ts"]
    message = {"ts": ts, "blocks": posted.params["blocks"]}
    answer = driver.block_action(user, button(posted, action_id), message=message, channel=posted.params["channel"])
    assert answer.status_code == 200


def shown(slack: FakeSlack, posted: Call) -> str:
    """A posted card as Slack shows it now (the last write wins)."""
    return json.dumps(slack.message(posted.params["channel"], posted.params["_ts"]), ensure_ascii=False)


def replies(slack: FakeSlack) -> list[str]:
    """What the clickers were told, alone."""
    return [c.params.get("text", "") for c in slack.of("response_url")]
