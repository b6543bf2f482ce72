"""Typed values that try to choose where recbot connects, through the real form
(signed Slack requests) with the storage check on: both endpoint overrides point at
a listener that counts connections. Each value gets a field error saying what is
valid; the listener gets no connection, nothing is stored and Agora gets no PATCH."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.catalog import CATALOG, Vendor
from bot.models import RecordingConfig, StorageConfig, Target
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from handlers.notify import Notifier
from tests.approval_helpers import click, text_of
from tests.conftest import APP_ID
from tests.storage_endpoints import HOSTILE_KEYS, CountingListener, hostile_names
from tests.storage_servers import AZURITE_KEY
from tests.test_change_flow import open_form, state
from tests.test_hostile_input import store_counts

GOOD = {
    **{v: ("rec-bucket", "AKIA0000EXAMPLE", "secret-0000") for v in Vendor},
    Vendor.TENCENT: ("rec-bucket-1250000000", "AKIA0000EXAMPLE", "secret-0000"),
    Vendor.AZURE: ("recordings", "account1", AZURITE_KEY),
}


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.stop()


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], listener) -> dict[str, Any]:
    return {
        **settings_overrides,
        "RECBOT_STORAGE_PROBE": "require",
        "RECBOT_STORAGE_ENDPOINT_OVERRIDE": listener.url,
        "RECBOT_AZURE_ENDPOINT_OVERRIDE": listener.url,
        "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": "1",
    }


def typed_state(vendor: Vendor, **fields: str) -> dict[str, Any]:
    bucket, access, secret = GOOD[vendor]
    values = {"bucket": bucket, "access": access, "secret": secret, **fields}
    region = CATALOG[vendor].regions[0].code if CATALOG[vendor].regions else None
    return state(change=True, vendor=int(vendor), region=region, **values)


def assert_refused_on_the_form(driver, view, values: dict[str, Any], block: str, hidden: str | None = None) -> str:
    answer = driver.submit("UALICE", view, values)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response_action"] == "errors", body
    assert list(body["errors"]) == [block] and body["errors"][block]
    if hidden is not None:
        assert hidden not in answer.text  # a key is never echoed
    return str(body["errors"][block])


def assert_nothing_happened(bot, agora, slack, listener, before: tuple[int, int]) -> None:
    bot.drain()
    assert listener.connections() == 0
    assert store_counts(bot) == before and agora.calls("PATCH") == []
    assert form.WORKING not in json.dumps([c.params for c in slack.of("views.update")])  # no check ever started


@pytest.mark.parametrize("vendor", list(Vendor), ids=[v.name for v in Vendor])
def test_hostile_bucket_names_get_a_field_error_and_no_connection(driver, slack, agora, bot, listener, vendor) -> None:
    view = open_form(driver, slack)
    before = store_counts(bot)
    for name in hostile_names(listener.port):
        text = assert_refused_on_the_form(driver, view, typed_state(vendor, bucket=name), form.BLOCK_BUCKET)
        if len(name) <= 255:  # longer names are refused by length alone ("at most 255 characters")
            assert text.startswith(f"{CATALOG[vendor].name} ") and " names are " in text, text
    assert_nothing_happened(bot, agora, slack, listener, before)


def test_hostile_azure_account_names_get_a_field_error_and_no_connection(driver, slack, agora, bot, listener) -> None:
    view = open_form(driver, slack)
    before = store_counts(bot)
    for name in hostile_names(listener.port):
        if len(name) > 512:
            continue  # longer than any key: refused by length before the rule (asserted with the keys)
        text = assert_refused_on_the_form(driver, view, typed_state(Vendor.AZURE, access=name), form.BLOCK_ACCESS_KEY)
        assert "Microsoft Azure storage account names (the access key) are 3-24 lowercase letters and digits" in text
    assert_nothing_happened(bot, agora, slack, listener, before)


@pytest.mark.parametrize("vendor", [Vendor.AMAZON_S3, Vendor.TENCENT, Vendor.AZURE], ids=["s3", "tencent", "azure"])
def test_hostile_keys_get_a_field_error_never_an_exception(driver, slack, agora, bot, listener, vendor) -> None:
    view = open_form(driver, slack)
    before = store_counts(bot)
    for key in HOSTILE_KEYS:
        for field, block in (("access", form.BLOCK_ACCESS_KEY), ("secret", form.BLOCK_SECRET_KEY)):
            text = assert_refused_on_the_form(driver, view, typed_state(vendor, **{field: key}), block, hidden=key)
            assert any(words in text for words in ("printable ASCII", "base64", "spaces", "3-24", "at most 512")), text
    assert_nothing_happened(bot, agora, slack, listener, before)


def test_the_form_hints_say_what_the_chosen_vendor_accepts(driver, slack) -> None:
    view = open_form(driver, slack)
    driver.block_action(
        "UALICE",
        {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": "5"}},
        view={**view, "state": {"values": state(change=True, vendor=5)}},
    )
    blocks = {b.get("block_id"): b for b in slack.wait_for("views.update", count=2)[1].params["view"]["blocks"]}
    assert blocks[form.BLOCK_BUCKET]["hint"]["text"].startswith("Microsoft Azure container names are 3-63")
    assert "3-24 lowercase letters and digits" in blocks[form.BLOCK_ACCESS_KEY]["hint"]["text"]
    assert "base64" in blocks[form.BLOCK_SECRET_KEY]["hint"]["text"]


class TestWithoutTheS3Override:
    """The catalog's hosts, as in production: the unknown vendor code is refused before anything connects."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_ENDPOINT_OVERRIDE": None}

    def test_a_sealed_change_for_a_vendor_recbot_does_not_know_fails_at_the_check(
        self, driver, slack, agora, bot, listener
    ) -> None:
        """A request an older recbot opened for a vendor this one no longer knows: the check just before
        the PATCH refuses it, so the approval ends the request as failed, and the requester is told."""
        target = Target(app_id=APP_ID, entry_point="live", region="na")
        services = bot.services
        keys = {"access_key": "AKIA0000EXAMPLE", "secret_key": "secret-0000"}
        patch = RecordingConfig(storage_config=StorageConfig(vendor=99, bucket="recordings", **keys))
        opened = services.approvals.open(target, services.agora.get_config(target), patch, "UALICE", None)
        assert opened.request is not None
        Notifier(bot.app.client, services).post_cards(opened.request)
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "CAPPROVE")[0]
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
        said = text_of(notice)
        assert "Failed" in said and "the storage check just before applying failed" in said
        assert "unknown vendor (99)" in said and "Nothing was sent to Agora" in said
        bot.drain()
        assert services.store.requests.get(opened.request.id).state == "failed"
        assert listener.connections() == 0 and agora.calls("PATCH") == []


def test_a_vendor_value_that_is_no_ascii_number_is_a_field_error(driver, slack, agora, bot, listener) -> None:
    """Superscript two is a digit to str.isdigit and no number to int(); an Arabic-Indic one
    is read by int() as 1, a vendor nobody chose."""
    view = open_form(driver, slack)
    before = store_counts(bot)
    for value in ("\u00b2", "\u0661", "9999", "-1", "x"):
        values = typed_state(Vendor.AMAZON_S3)
        values[form.BLOCK_VENDOR][form.ACTION_VENDOR]["selected_option"] = {"value": value}
        assert_refused_on_the_form(driver, view, values, form.BLOCK_VENDOR)
    assert_nothing_happened(bot, agora, slack, listener, before)
