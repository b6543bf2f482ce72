"""Every input surface fed hostile input: a clear answer, no crash, no
upstream call and no change in the store."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.catalog import CATALOG
from bot.inbound import is_handled
from bot.models import RecordingConfig, Target
from bot.store.schema import audit_events, change_requests
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from handlers.blocks import summary
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.test_change_flow import open_form, state


def store_counts(bot) -> tuple[int, int]:
    with bot.services.store.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(change_requests)).scalar_one(),
            conn.execute(select(func.count()).select_from(audit_events)).scalar_one(),
        )


@pytest.fixture
def unchanged(bot, agora):
    """Asserts, after the test, that nothing reached Agora and the store is as before."""
    before, calls = store_counts(bot), len(agora.calls())
    yield
    bot.drain()
    assert store_counts(bot) == before
    assert len(agora.calls()) == calls
    assert requests.get(bot.url + "/healthz", timeout=5).json()["ok"]  # still serving


COMMAND_TEXTS = [
    "   ",
    "get live xx",
    "get live NA",
    "get " + "a" * 5000,
    "get live na --app",
    "get live na --app ..",
    "get . na",
    "get .. na",
    "get live\x00 na",
    "get live\u202e na",
    "get live\x1b[31m na",
    "set live na --frob",
    "history live na extra",
    "pending now",
    "list mars",
    "list na eu",
    "list all --app ..",
    "frobnicate " * 500,
]


@pytest.mark.parametrize("text", COMMAND_TEXTS)
def test_hostile_command_text_gets_usage_and_calls_nothing(driver, slack, unchanged, text, bot) -> None:
    assert driver.command(text).status_code == 200
    (reply,) = slack.wait_for("response_url")
    assert reply.params["response_type"] == "ephemeral"
    assert "Usage" in text_of(reply) or "must" in text_of(reply)
    bot.drain()
    assert slack.of("views.open") == []


def test_mention_injection_in_names_is_escaped(driver, slack, agora) -> None:
    agora.put(
        APP_ID,
        "<!channel>",
        "na",
        {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": "<@U1>"}},
    )
    driver.command("get <!channel> na")
    reply = text_of(slack.wait_for("response_url")[0])
    assert "&lt;!channel&gt;" in reply and "&lt;@U1&gt;" in reply  # shown, but inert
    assert "<!channel>" not in reply and "<@U1>" not in reply
    view = open_form(driver, slack, text="set <!channel> na")
    driver.submit("UALICE", view, state(change=True, vendor=5, bucket="azc", access="a" * 8, secret="S" * 8))
    (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")
    assert "&lt;!channel&gt;" in text_of(posted)
    rendered = [{**c.params, "view": {**c.params.get("view", {}), "private_metadata": ""}} for c in slack.calls]
    assert "<!channel>" not in json.dumps(rendered)  # private_metadata alone keeps the name: Slack never shows it


def test_markup_in_a_bucket_or_name_from_agora_is_shown_inert(driver, slack, agora) -> None:
    """Agora may hold what recbot would never let anyone type: shown as code spans, it turns
    nothing bold and a backtick ends no span early."""
    config = {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": "*bold*_it_~x~"}}
    agora.put(APP_ID, "a`b*c", "na", config)
    driver.command("get a`b*c na")
    reply = text_of(slack.wait_for("response_url")[0])
    assert "`*bold*_it_~x~`" in reply and "Recording configuration of `a\u02cbb*c`" in reply
    driver.command("history a`b*c na")
    history = text_of(slack.wait_for("response_url", count=2)[1])
    assert f"No recorded changes for `a\u02cbb*c` (na, app `{APP_ID}`)" in history
    view = open_form(driver, slack, text="set a`b*c na")
    driver.submit("UALICE", view, state(mp4=True, hls=True))  # a direct change: one event
    slack.wait_for("views.update", count=2)  # the form, then its answer
    driver.command("history a`b*c na")
    history = text_of(slack.wait_for("response_url", count=3)[2])
    assert f"*Latest 1 events for* `a\u02cbb*c` (na, app `{APP_ID}`)" in history


def test_the_summary_shows_an_app_id_inert_and_an_empty_bucket_as_not_set() -> None:
    config = RecordingConfig.model_validate(
        {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": ""}}
    )
    blocks = summary.summary(Target(app_id="a`b*c", entry_point="live", region="na"), config)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "App ID `a\u02cbb*c`" in text and "*Bucket*\\nnot set" in text


def form_state(**overrides: Any) -> dict[str, Any]:
    values = state(change=True, vendor=1, region=0, bucket="b", access="AKIA1234", secret="S3CRET")
    for block, action_value in overrides.items():
        block_id = getattr(form, block)
        if action_value is None:
            values.pop(block_id)
        else:
            values[block_id] = action_value
    return values


HOSTILE_FORMS = [
    form_state(BLOCK_BUCKET={form.ACTION_BUCKET: {"value": "b" * 300}}),
    form_state(BLOCK_ACCESS_KEY={form.ACTION_ACCESS_KEY: {"value": "A" * 600}}),
    form_state(BLOCK_SECRET_KEY={form.ACTION_SECRET_KEY: {"value": "two words"}}),
    form_state(BLOCK_BUCKET={form.ACTION_BUCKET: {"value": "bad\x00bucket"}}),
    form_state(BLOCK_VENDOR={form.ACTION_VENDOR: {"selected_option": {"value": "99"}}}),
    form_state(BLOCK_VENDOR={form.ACTION_VENDOR: {"selected_option": {"value": "-1"}}}),
    form_state(BLOCK_VENDOR={form.ACTION_VENDOR: {"selected_option": ["1"]}}),
    form_state(BLOCK_REGION={"region_select_1": {"selected_option": {"value": "9999"}}}),
    form_state(BLOCK_REGION={"region_select_1": {"selected_option": {"value": "17"}}}),
    form_state(BLOCK_BUCKET={form.ACTION_BUCKET: {"value": 12}}),
    form_state(BLOCK_FORMATS=None),
    form_state(BLOCK_CHANGE_STORAGE=None),
    form_state(BLOCK_FORMATS={form.ACTION_FORMATS: {"selected_options": "mp4"}}),
    form_state(BLOCK_FORMATS={}),
]


@pytest.mark.parametrize("values", HOSTILE_FORMS)
def test_hostile_form_fields_are_refused_on_the_form(driver, slack, bot, agora, values) -> None:
    view = open_form(driver, slack)
    before, calls = store_counts(bot), len(agora.calls())
    answer = driver.submit("UALICE", view, values)
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_action"] in ("errors", "update")
    if body["response_action"] == "errors":
        assert body["errors"] and all(body["errors"].values())
    else:
        assert "nothing was changed" in json.dumps(body["view"])
    bot.drain()
    assert store_counts(bot) == before and len(agora.calls()) == calls


@pytest.mark.parametrize(
    "metadata",
    [
        "",
        "not json",
        "[1,2]",
        '{"app": "A"}',
        "x" * 2999,
        json.dumps({"app": 1, "ep": 2, "region": 3, "digest": 4, "tag": 5}),
    ],
)
def test_forged_private_metadata_is_refused(driver, slack, unchanged, metadata, bot) -> None:
    view = {"id": "V1", "type": "modal", "callback_id": form.CALLBACK_EDIT, "private_metadata": metadata, "blocks": []}
    body = driver.submit("UALICE", view, form_state()).json()
    assert body["response_action"] == "update" and "not valid" in json.dumps(body["view"])
    # A full, valid form state: only the metadata check can keep the form from being updated.
    driver.block_action(
        "UALICE",
        {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": "7"}},
        view={**view, "state": {"values": form_state()}},
    )
    bot.drain()
    assert slack.of("views.update") == []


@pytest.mark.parametrize("value", ["", "no-dot", "a.b.c", "deadbeef." + "0" * 32, None, 42])
def test_forged_button_values_are_refused(driver, slack, bot, agora, value) -> None:
    posted = request_storage_change(driver, slack)
    before, calls = store_counts(bot), len(agora.calls())
    click(driver, posted, "UBOB", card.ACTION_APPROVE, value=value)
    assert "not a genuine" in text_of(slack.wait_for("response_url")[0])
    bot.drain()
    assert store_counts(bot) == before and len(agora.calls()) == calls


def test_genuine_button_on_another_card_is_refused(driver, slack, bot, agora) -> None:
    posted = request_storage_change(driver, slack)
    bot.drain()  # the card is recorded: until then a click in its channel counts, wherever it came from
    moved = type(posted)(posted.method, {**posted.params, "_ts": "999.000001"})
    click(driver, moved, "UBOB", card.ACTION_APPROVE)
    assert "not a genuine" in text_of(slack.wait_for("response_url")[0])
    bot.drain()
    assert agora.calls("PATCH") == []


def signed_raw(driver, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> requests.Response:
    return driver.post(body, content_type=content_type)


COMMAND = {
    "command": "/recording",
    "text": "get live na",
    "user_id": "UALICE",
    "trigger_id": "t1",
    "response_url": "https://hooks.slack.com/commands/T1/1/x",
}
MALFORMED_BODIES = [
    b"payload=not-json",
    b"payload=%5B1%2C2%5D",
    urlencode({"payload": json.dumps({"type": "block_actions"})}).encode(),
    urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": "U1"}, "actions": []})}).encode(),
    urlencode({"payload": json.dumps({"type": "view_submission", "user": {"id": "U1"}})}).encode(),
    urlencode(
        {
            "payload": json.dumps(
                {"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": form.CALLBACK_EDIT}}
            )
        }
    ).encode(),
    urlencode({"payload": json.dumps({"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}})}).encode(),
    urlencode({"payload": json.dumps({"type": "message_action", "callback_id": "x"})}).encode(),
    urlencode({"payload": json.dumps({"type": "block_suggestion", "action_id": "x"})}).encode(),
    urlencode({"payload": json.dumps({"type": "view_closed", "view": {"callback_id": form.CALLBACK_EDIT}})}).encode(),
    urlencode({"payload": json.dumps({"type": "something_new"})}).encode(),
    b"command=%2Frecording&text=get+li",
    # Whole commands but for one field: another command, a response_url recbot would not post to.
    urlencode({**COMMAND, "command": "/other"}).encode(),
    urlencode({**COMMAND, "response_url": "ftp://hooks.example/x"}).encode(),
    urlencode({**COMMAND, "user_id": ""}).encode(),
    urlencode(
        {"payload": json.dumps({"type": "block_actions", "user": {"id": ""}, "actions": [{"action_id": "a"}]})}
    ).encode(),
    b"command=%2Frecording",
    b"\xff\xfe\x00garbage\x80\x81",
    b"payload=" + b"%FF%FE" * 10,
    b'{"type": "event_callback", "event": {"type": "app_mention"}}',
    b"",
]


def test_the_whole_command_of_malformed_bodies_is_otherwise_accepted(driver, slack) -> None:
    """COMMAND itself is handled: the bodies made from it are refused for the field they change."""
    assert signed_raw(driver, urlencode(COMMAND).encode()).status_code == 200


@pytest.mark.parametrize("kind", ["hello", "disconnect", "something_new", ""])
def test_an_envelope_type_recbot_does_not_handle_is_not_handled(kind: str) -> None:
    assert not is_handled(kind, {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "a"}]})


@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_malformed_payloads_get_400_and_change_nothing(driver, slack, unchanged, body) -> None:
    answer = signed_raw(driver, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]


def test_oversized_body_is_refused_before_parsing(driver, unchanged) -> None:
    answer = signed_raw(driver, b"payload=" + b"x" * (2 << 20))
    assert answer.status_code == 413


def test_json_content_type_garbage(driver, unchanged) -> None:
    assert signed_raw(driver, b"{not json", content_type="application/json").status_code == 400


def test_a_region_picked_from_another_vendors_list_is_never_taken_for_this_vendors(driver, slack, bot, agora) -> None:
    """The vendor was changed to Huawei Cloud, but the form still showed Amazon S3's regions
    (its redraw failed, or Submit came first): code 15 there is another region than Huawei's 15."""
    view = open_form(driver, slack)
    values = state(change=True, vendor=7, region=15, bucket="rec-bucket", access="AKIA12345678", secret="S" * 40)
    values[form.BLOCK_REGION] = {form.region_action_id(1): {"selected_option": {"value": "15"}}}
    before, calls = store_counts(bot), len(agora.calls())
    body = driver.submit("UALICE", view, values).json()
    assert body["response_action"] == "update"  # drawn anew: Huawei Cloud's list, nothing chosen in it
    (region,) = [b for b in body["view"]["blocks"] if b.get("block_id") == form.BLOCK_REGION]
    assert region["element"]["action_id"] == form.region_action_id(7) and "initial_option" not in region["element"]
    assert "picked from another vendor's list: choose one of Huawei Cloud's" in json.dumps(body["view"])
    bot.drain()
    assert store_counts(bot) == before and len(agora.calls()) == calls
    # Picked from Huawei Cloud's own list, the same code is read as Huawei's region 15.
    values[form.BLOCK_REGION] = {form.region_action_id(7): {"selected_option": {"value": "15"}}}
    assert driver.submit("UALICE", view, values).json()["response_action"] == "update"
    (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")
    assert "(15)" in text_of(posted) and "Huawei" in text_of(posted)


@given(chosen=st.sampled_from(sorted(CATALOG)), listed=st.sampled_from(sorted(CATALOG)), data=st.data())
def test_a_region_counts_only_from_the_chosen_vendors_list(chosen, listed, data) -> None:
    regions = CATALOG[listed].regions
    code = data.draw(st.sampled_from([r.code for r in regions]) if regions else st.integers(0, 30))
    values = state(change=True, vendor=int(chosen), region=code)
    values[form.BLOCK_REGION] = {form.region_action_id(int(listed)): {"selected_option": {"value": str(code)}}}
    read = form.read_values({"values": values})
    assert (read.region, read.region_of_another_vendor) == ((code, False) if chosen == listed else (None, True))
    values[form.BLOCK_REGION] = {form.region_action_id(int(listed)): {"selected_option": None}}  # none picked
    nothing = form.read_values({"values": values})
    assert (nothing.region, nothing.region_of_another_vendor) == (None, False)
