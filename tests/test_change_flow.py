"""`/recording set` end to end: the modal, vendor-dependent regions, validation,
the stale-form check and direct changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.blocks import approval_card
from handlers.blocks import edit_form as form
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY
from tests.driver import SlackDriver
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import FakeSlack


def open_form(driver: SlackDriver, slack: FakeSlack, text: str = "set live na", user: str = "UALICE") -> dict[str, Any]:
    """Run the command; return the form view as Slack now holds it."""
    opened, updated = len(slack.of("views.open")), len(slack.of("views.update"))
    assert driver.command(text, user=user).status_code == 200
    slack.wait_for("views.open", count=opened + 1)
    update = slack.wait_for("views.update", count=updated + 1)[updated]
    return slack.view(update.params["view_id"])


def state(
    *,
    mp4: bool = True,
    hls: bool = False,
    change: bool = False,
    vendor: int | None = None,
    region: int | None = None,
    bucket: str = "",
    access: str = "",
    secret: str = "",
) -> dict[str, Any]:
    def checked(*values: str) -> list[dict[str, Any]]:
        return [{"value": v} for v in values]

    formats = [v for v, on in ((form.MP4, mp4), (form.HLS, hls)) if on]
    return {
        form.BLOCK_FORMATS: {form.ACTION_FORMATS: {"type": "checkboxes", "selected_options": checked(*formats)}},
        form.BLOCK_CHANGE_STORAGE: {
            form.ACTION_CHANGE_STORAGE: {
                "type": "checkboxes",
                "selected_options": checked(form.CHANGE) if change else [],
            }
        },
        form.BLOCK_VENDOR: {
            form.ACTION_VENDOR: {"selected_option": None if vendor is None else {"value": str(vendor)}}
        },
        form.BLOCK_REGION: {
            f"{form.ACTION_REGION}_{vendor}": {"selected_option": None if region is None else {"value": str(region)}}
        },
        form.BLOCK_BUCKET: {form.ACTION_BUCKET: {"value": bucket}},
        form.BLOCK_ACCESS_KEY: {form.ACTION_ACCESS_KEY: {"value": access}},
        form.BLOCK_SECRET_KEY: {form.ACTION_SECRET_KEY: {"value": secret}},
    }


def final_view_text(slack: FakeSlack, count: int = 2) -> str:
    updates = slack.wait_for("views.update", count=count)
    return json.dumps(updates[count - 1].params["view"], ensure_ascii=False)


def blocks_by_id(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if "block_id" in b}


def test_modal_opens_before_any_agora_call_even_when_agora_is_slow(driver, slack, agora: AgoraEmulator) -> None:
    agora.get_delay = 2.5
    view = open_form(driver, slack)
    (opened,) = slack.of("views.open")
    (get,) = agora.calls("GET")
    assert opened.at < get.at  # views.open went out before Agora was even asked
    assert "Reading the configuration" in json.dumps(opened.params["view"])
    blocks = blocks_by_id(view)
    assert [o["value"] for o in blocks[form.BLOCK_FORMATS]["element"]["initial_options"]] == [form.MP4]
    assert blocks[form.BLOCK_VENDOR]["element"]["initial_option"]["value"] == "1"
    assert blocks[form.BLOCK_REGION]["element"]["initial_option"]["value"] == "0"
    assert blocks[form.BLOCK_BUCKET]["element"]["initial_value"] == "rec-bucket"
    assert blocks[form.BLOCK_VENDOR]["dispatch_action"] is True


def test_form_never_carries_keys_and_metadata_only_target_and_digest(driver, slack) -> None:
    view = open_form(driver, slack)
    metadata = json.loads(view["private_metadata"])
    assert set(metadata) == {"app", "ep", "region", "digest", "tag"}
    assert (metadata["app"], metadata["ep"], metadata["region"]) == (APP_ID, "live", "na")
    sent = slack.payload_text()
    assert SECRET_KEY not in sent and ACCESS_KEY not in sent
    assert "...1234" in sent
    hint = blocks_by_id(view)[form.BLOCK_SECRET_KEY]["hint"]["text"]
    assert "cannot mask" in hint and "write-only" in hint


def test_expired_trigger_is_explained_and_agora_is_not_asked(driver, slack, agora, bot) -> None:
    slack.errors["views.open"] = "expired_trigger_id"
    driver.command("set live na")
    (reply,) = slack.wait_for("response_url")
    assert "did not open the form" in json.dumps(reply.params)
    bot.drain()
    assert agora.calls() == []


def test_read_failure_is_explained_in_the_modal(driver, slack, agora) -> None:
    driver.command("set nosuch na")
    (update,) = slack.wait_for("views.update")
    assert f"nosuch (na, app {APP_ID}): No such entry point" in json.dumps(update.params["view"])


@pytest.mark.parametrize(
    ("vendor", "present", "absent"), [(7, "CN_North_1", "US_EAST_1"), (2, "CN_Hangzhou", "US_EAST_1")]
)
def test_choosing_a_vendor_shows_exactly_its_regions(driver, slack, vendor, present, absent) -> None:
    view = open_form(driver, slack)
    typed = state(change=True, vendor=vendor, bucket="typed-bucket", access="typed-access", secret="typed-secret")
    driver.block_action(
        "UALICE",
        {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": str(vendor)}},
        view={**view, "state": {"values": typed}},
    )
    update = slack.wait_for("views.update", count=2)[1]
    blocks = blocks_by_id(update.params["view"])
    region = blocks[form.BLOCK_REGION]
    labels = [o["text"]["text"] for o in region["element"]["options"]]
    assert any(present in label for label in labels) and not any(absent in label for label in labels)
    assert update.params["hash"] == view["hash"]
    assert blocks[form.BLOCK_BUCKET]["element"]["initial_value"] == "typed-bucket"  # what was typed survives
    assert blocks[form.BLOCK_BUCKET]["element"]["action_id"] == form.ACTION_BUCKET
    for block_id, action_id in (
        (form.BLOCK_ACCESS_KEY, form.ACTION_ACCESS_KEY),
        (form.BLOCK_SECRET_KEY, form.ACTION_SECRET_KEY),
    ):
        # Slack keeps the typed keys because the ids stay; they are never sent back
        assert blocks[block_id]["element"]["action_id"] == action_id
        assert "initial_value" not in blocks[block_id]["element"]
    assert "typed-secret" not in json.dumps(update.params) and "typed-access" not in json.dumps(update.params)
    assert update.params["view"]["private_metadata"] == view["private_metadata"]


def test_azure_shows_no_region_choice(driver, slack) -> None:
    view = open_form(driver, slack)
    driver.block_action(
        "UALICE",
        {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": "5"}},
        view={**view, "state": {"values": state(change=True, vendor=5)}},
    )
    region = blocks_by_id(slack.wait_for("views.update", count=2)[1].params["view"])[form.BLOCK_REGION]
    assert region["type"] == "context" and "does not apply" in json.dumps(region)


def test_hls_on_with_storage_untouched_patches_once_without_storage(driver, slack, agora) -> None:
    view = open_form(driver, slack)
    answer = driver.submit("UALICE", view, state(mp4=True, hls=True))
    assert answer.status_code == 200 and answer.json()["response_action"] == "update"
    text = final_view_text(slack)
    (patch,) = agora.calls("PATCH")
    assert patch.json() == {"hlsConfig": {"enabled": True}}
    assert "HLS recording: off → on" in text and "applied" in text
    assert agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": True}
    assert len(agora.calls("GET")) == 3  # form, stale check, read-back


@pytest.mark.parametrize("storage", [False, True])
def test_an_outcome_slack_would_not_show_on_the_form_is_sent_to_the_person(driver, slack, agora, bot, storage) -> None:
    """How it ended is known: 'something went wrong, try again' would be wrong (the change is in
    effect, or the request open, and a second try is refused as busy)."""
    view = open_form(driver, slack)
    slack.errors["views.update"] = "internal_error"
    values = state(mp4=True, hls=True)
    if storage:
        values = state(change=True, vendor=7, region=0, bucket="hw-bucket", access="AK" + "1" * 10, secret="S" * 30)
    driver.submit("UALICE", view, values)
    (told,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    text = told.params["text"]
    assert text.startswith("Slack did not let recbot update your form.") and "went wrong" not in text
    if storage:
        assert len(bot.services.store.requests.open_requests()) == 1
        assert "needs a second person's approval" in text and "S" * 30 not in text
        assert "Nothing was sent to Agora yet" in text and agora.calls("PATCH") == []
        assert "CN_North_1 (0) is outside North America" in text  # the form's warning too
    else:
        assert "Change applied and confirmed" in text and "HLS recording: off → on" in text
        assert len(agora.calls("PATCH")) == 1


@pytest.mark.parametrize(
    ("vendor", "region", "warned"),
    [(7, 0, "CN_North_1 (0) is outside North America"), (1, 0, None), (5, None, None)],
)
def test_a_bucket_outside_the_entry_points_geography_is_warned_of_not_refused(
    driver, slack, agora, bot, vendor, region, warned
) -> None:
    view = open_form(driver, slack)  # set live na
    region_block = blocks_by_id(view)[form.BLOCK_REGION]
    assert "Agora advises a region in North America" in region_block["hint"]["text"]
    keys = {"bucket": "rec-bucket", "access": "AK" + "1" * 10, "secret": "S" * 30}
    if vendor == 5:  # Azure: a container, and its storage account as the access key
        keys = {"bucket": "azc", "access": "a" * 8, "secret": "S" * 8}
    values = state(change=True, vendor=vendor, region=region, **keys)
    assert driver.submit("UALICE", view, values).json()["response_action"] == "update"
    text = final_view_text(slack)
    assert "needs a second person's approval" in text  # asked for all the same
    assert (
        (warned in text and "Agora advises storage in the same geography" in text)
        if warned
        else (":warning:" not in text)
    )
    bot.drain()
    assert len(bot.services.store.requests.open_requests()) == 1
    # The approvers' card says it too: they are the second pair of eyes.
    (card,) = [c for c in slack.of("chat.postMessage") if c.params.get("channel") == "CAPPROVE"]
    shown = {b.get("block_id"): json.dumps(b) for b in card.params["blocks"]}
    assert (
        (warned in shown.get(approval_card.BLOCK_GEOGRAPHY, ""))
        if warned
        else (approval_card.BLOCK_GEOGRAPHY not in shown)
    )


def test_the_region_hint_names_the_entry_points_geography_and_a_stale_form_warns_of_nothing(
    driver, slack, agora, bot
) -> None:
    agora.put(APP_ID, "live", "eu", LIVE_CONFIG)
    view = open_form(driver, slack, text="set live eu")
    assert "Agora advises a region in Europe" in blocks_by_id(view)[form.BLOCK_REGION]["hint"]["text"]
    agora.put(APP_ID, "live", "eu", {**LIVE_CONFIG, "hlsConfig": {"enabled": True}})  # changed since it opened
    values = state(change=True, vendor=7, region=0, bucket="rec-bucket", access="AK" + "1" * 10, secret="S" * 30)
    driver.submit("UALICE", view, values)
    text = final_view_text(slack)
    assert "changed since you opened the form" in text and ":warning:" not in text and "same geography" not in text


def test_submit_without_change_sends_nothing(driver, slack, agora, bot) -> None:
    view = open_form(driver, slack)
    driver.submit("UALICE", view, state(mp4=True, hls=False))
    assert "Nothing differs" in final_view_text(slack)
    bot.drain()
    assert agora.calls("PATCH") == []


@pytest.mark.parametrize(
    ("fields", "blocks"),
    [
        ({"vendor": 1, "region": 0, "bucket": "", "access": "AK", "secret": "SK"}, {form.BLOCK_BUCKET}),
        (
            {"vendor": 1, "region": 0, "bucket": "b", "access": "", "secret": ""},
            {form.BLOCK_ACCESS_KEY, form.BLOCK_SECRET_KEY},
        ),
        ({"vendor": 7, "region": 20, "bucket": "b", "access": "AK", "secret": "SK"}, {form.BLOCK_REGION}),
        ({"vendor": 7, "region": None, "bucket": "b", "access": "AK", "secret": "SK"}, {form.BLOCK_REGION}),
        ({"vendor": None, "region": None, "bucket": "b", "access": "AK", "secret": "SK"}, {form.BLOCK_VENDOR}),
        ({"vendor": 1, "region": 0, "bucket": "has space", "access": "AK", "secret": "SK"}, {form.BLOCK_BUCKET}),
    ],
)
def test_invalid_storage_gets_errors_on_the_right_blocks_and_no_call(driver, slack, agora, fields, blocks, bot) -> None:
    view = open_form(driver, slack)
    calls_before = len(agora.calls())
    answer = driver.submit("UALICE", view, state(change=True, **fields))
    body = answer.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == blocks
    assert all(body["errors"].values())
    bot.drain()
    assert len(agora.calls()) == calls_before


def test_region_error_names_the_vendors_regions(driver, slack) -> None:
    view = open_form(driver, slack)
    body = driver.submit(
        "UALICE", view, state(change=True, vendor=7, region=20, bucket="b", access="A", secret="S")
    ).json()
    assert "Huawei Cloud" in body["errors"][form.BLOCK_REGION] and "CN_North_1" in body["errors"][form.BLOCK_REGION]


def test_storage_change_with_keys_is_not_applied_directly(driver, slack, agora, bot) -> None:
    view = open_form(driver, slack)
    driver.submit(
        "UALICE",
        view,
        state(change=True, vendor=7, region=0, bucket="hw-bucket", access="NEWACCESS9876", secret="NEWSECRET"),
    )
    text = final_view_text(slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    assert "approval" in text
    assert "NEWSECRET" not in slack.payload_text() and "NEWACCESS9876" not in slack.payload_text()


def test_config_changed_out_of_band_is_not_overwritten(driver, slack, agora, bot) -> None:
    view = open_form(driver, slack)
    changed = agora.config(APP_ID, "live", "na")
    changed["mp4Config"] = {"enabled": False}
    agora.put(APP_ID, "live", "na", changed)
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    assert "changed since you opened the form" in final_view_text(slack)
    bot.drain()
    assert agora.calls("PATCH") == []
    assert agora.config(APP_ID, "live", "na")["mp4Config"] == {"enabled": False}


def test_keys_rotated_out_of_band_also_make_the_form_stale(driver, slack, agora, bot) -> None:
    view = open_form(driver, slack)
    rotated = agora.config(APP_ID, "live", "na")
    rotated["storageConfig"]["secretKey"] = "rotated-by-someone-else"
    agora.put(APP_ID, "live", "na", rotated)
    driver.submit("UALICE", view, state(mp4=False))
    assert "changed since you opened the form" in final_view_text(slack)
    bot.drain()
    assert agora.calls("PATCH") == []


def test_failed_patch_is_reported(driver, slack, agora) -> None:
    view = open_form(driver, slack)
    agora.inject(Fault(400, message="bad body", method="PATCH"))
    driver.submit("UALICE", view, state(mp4=False))
    assert "not applied" in final_view_text(slack) and "bad body" in final_view_text(slack)


def test_tampered_metadata_is_refused(driver, slack, agora, bot) -> None:
    view = open_form(driver, slack)
    metadata = json.loads(view["private_metadata"])
    forged = {**view, "private_metadata": json.dumps({**metadata, "ep": "other"})}
    calls_before = len(agora.calls())
    body = driver.submit("UALICE", forged, state(mp4=False)).json()
    assert body["response_action"] == "update" and "not valid" in json.dumps(body["view"])
    bot.drain()
    assert len(agora.calls()) == calls_before


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return settings_overrides


class TestApprovalForAll:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_formats_only_change_is_not_applied_directly(self, driver, slack, agora, bot) -> None:
        view = open_form(driver, slack)
        driver.submit("UALICE", view, state(mp4=True, hls=True))
        final_view_text(slack)
        bot.drain()
        assert agora.calls("PATCH") == []
