"""Configurations set outside recbot that break its typed-input rules (a space in the bucket, a
bucket too long to type, a region or vendor code it does not know): recbot reads, shows, lists,
fills the form from and watches them as they are; what a person types keeps every rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.catalog import geography_mismatch, region_label
from bot.fleet import FleetRow, Scan, to_csv
from bot.models import RecordingConfig, Target, describe_storage, diff
from bot.observation import changes_between, observe
from handlers.blocks import edit_form as form
from tests.approval_helpers import card_shown
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack
from tests.test_change_flow import blocks_by_id, open_form
from tests.test_drift import alerts, remember, settle, wait_alert, watching
from tests.test_fleet import listing, rows_of

FOREIGN_SECRET = "CONSOLE-SECRET-WITH SPACE-77"


def storage_of(**change: Any) -> dict[str, Any]:
    """LIVE_CONFIG with its storage changed as someone did in Agora Console."""
    config = copy.deepcopy(LIVE_CONFIG)
    config["storageConfig"].update(change)
    return config


# (what Agora holds, what recbot shows of it)
FOREIGN = {
    "bucket-with-space": (storage_of(bucket="evil bucket"), ["Amazon S3", "US_EAST_1 (0)", "evil bucket"]),
    "bucket-over-255": (storage_of(bucket="b" * 300), ["Amazon S3", "b" * 300]),
    "s3-region-17": (storage_of(region=17), ["Amazon S3", "unknown (17)", "rec-bucket"]),
    "s3-region-23": (storage_of(region=23), ["Amazon S3", "unknown (23)", "rec-bucket"]),
    "unknown-vendor": (storage_of(vendor=9, region=3), ["unknown vendor (9)", "unknown (3)", "rec-bucket"]),
    "keys-with-spaces": (
        storage_of(accessKey="AKIA WITH SPACE 1234", secretKey=FOREIGN_SECRET),
        ["Amazon S3", "rec-bucket", "...1234"],
    ),
}
CASES = pytest.mark.parametrize(("held", "shown"), list(FOREIGN.values()), ids=list(FOREIGN))


def never_leaked(slack: FakeSlack) -> None:
    for secret in (SECRET_KEY, FOREIGN_SECRET, ACCESS_KEY, "AKIA WITH SPACE 1234"):
        assert secret not in slack.payload_text(), f"{secret!r} reached Slack"


@CASES
def test_get_shows_what_agora_holds(driver, slack, agora, held, shown) -> None:
    agora.put(APP_ID, "live", "na", held)
    driver.command("get live na")
    (reply,) = slack.wait_for("response_url")
    text = json.dumps(reply.params, ensure_ascii=False)
    assert "not answering properly" not in text and "Recording configuration of" in text, text
    assert all(part in text for part in shown), text
    never_leaked(slack)


@CASES
def test_the_form_opens_filled_from_what_agora_holds(driver, slack, agora, held, shown) -> None:
    agora.put(APP_ID, "live", "na", held)
    view = open_form(driver, slack)
    assert view.get("submit") is not None, view  # the form, not "Agora is not answering properly"
    current = json.dumps(blocks_by_id(view)[form.BLOCK_CURRENT], ensure_ascii=False)
    assert all(part in current for part in shown), current
    never_leaked(slack)


@CASES
def test_list_shows_the_row_not_a_failed_read(driver, slack, agora, bot, held, shown) -> None:
    agora.put(APP_ID, "live", "na", held)
    (row,) = rows_of(listing(driver, slack, bot)[-1])
    text = row["text"]["text"]
    assert "read failed" not in text and all(part in text for part in shown), text
    never_leaked(slack)


@CASES
def test_the_csv_holds_the_row_masked(held, shown) -> None:
    config = RecordingConfig.model_validate(held)
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    scan = Scan("s1", APP_ID, ("na",), (FleetRow("live", "na", target, config=config),), 0.0)
    csv_text = to_csv(scan)
    assert all(part in csv_text for part in shown) and ",ok," in csv_text, csv_text
    assert SECRET_KEY not in csv_text and FOREIGN_SECRET not in csv_text and "AKIA WITH SPACE 1234" not in csv_text


def test_the_storage_fields_of_foreign_configs_read_as_documented() -> None:
    from bot.catalog import vendor_name

    assert vendor_name(9) == "unknown vendor (9)" and vendor_name(1) == "Amazon S3"
    assert region_label(9, 3) == "unknown (3)" and region_label(1, 17) == "unknown (17)"
    assert not geography_mismatch("na", 9, 3) and not geography_mismatch("na", 1, 23)
    odd = RecordingConfig.model_validate(storage_of(vendor=9, region=3, bucket="evil bucket"))
    assert describe_storage(odd.storage_config) == {
        "vendor": "unknown vendor (9)",
        "region": "unknown (3)",
        "bucket": "evil bucket",
    }
    before = RecordingConfig.model_validate(LIVE_CONFIG)
    changed = {c.label: (c.before, c.after) for c in diff(before, odd)}
    assert changed["Vendor"] == ("Amazon S3", "unknown vendor (9)")
    assert changed["Bucket"] == ("rec-bucket", "evil bucket")


@given(
    vendor=st.integers(min_value=-(2**31), max_value=2**31),
    region=st.integers(min_value=-(2**31), max_value=2**31),
    bucket=st.text(max_size=400),
)
def test_any_vendor_region_and_bucket_agora_answers_is_read_shown_and_observed(
    vendor: int, region: int, bucket: str
) -> None:
    config = RecordingConfig.model_validate(storage_of(vendor=vendor, region=region, bucket=bucket))
    assert config.storage_config is not None and config.storage_config.bucket == bucket
    shown = describe_storage(config.storage_config)
    assert shown["vendor"] and shown["region"]
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    FleetRow("live", "na", target, config=config).warnings()
    seen = observe(config, b"k" * 32)
    changes_between(observe(RecordingConfig.model_validate(LIVE_CONFIG), b"k" * 32), seen)
    form.FormValues.from_config(config)
    form.current_block(target, config)


@pytest.mark.parametrize(
    ("typed", "block"),
    [
        ({"bucket": "evil bucket"}, form.BLOCK_BUCKET),
        ({"region": 17}, form.BLOCK_REGION),
        ({"vendor": 9}, form.BLOCK_VENDOR),
    ],
    ids=["bucket-with-space", "s3-region-17", "unknown-vendor"],
)
def test_what_a_person_types_keeps_every_rule(typed: dict[str, Any], block: str) -> None:
    values = {"change_storage": True, "vendor": 1, "region": 0, "bucket": "rec-bucket"}
    values |= {"access_key": "AKIAEXAMPLE12345", "secret_key": "secret-example-987"} | typed
    proposal, errors = form.to_proposal(form.FormValues(**values))
    assert proposal is None and block in errors, errors


# The drift watch: a value only Agora Console could have set is a change outside recbot like any other.


@pytest.fixture
def watched(settings) -> Iterator[RunningBot]:
    running = start_bot(watching(settings), fast_agora(settings))
    yield running
    running.stop()


@pytest.fixture
def watched_driver(watched: RunningBot, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(watched.url, SIGNING_SECRET, slack.response_url())


@pytest.mark.parametrize(
    ("held", "says"),
    [
        (storage_of(bucket="evil bucket", secretKey=FOREIGN_SECRET), ["Bucket: rec-bucket → evil bucket"]),
        (storage_of(vendor=9), ["Vendor: Amazon S3 → unknown vendor (9)", "Region: US_EAST_1 (0) → unknown (0)"]),
        (storage_of(region=23), ["Region: US_EAST_1 (0) → unknown (23)"]),
    ],
    ids=["bucket-with-space", "unknown-vendor", "s3-region-23"],
)
def test_an_outside_change_to_such_a_value_is_announced_once_masked(
    watched_driver, slack, agora: AgoraEmulator, watched, held, says
) -> None:
    remember(watched_driver, slack, watched)
    agora.put(APP_ID, "live", "na", held)
    posted = wait_alert(slack, watched)
    settle(watched, passes=3)
    assert len(alerts(slack)) == 1
    shown = card_shown(slack, posted)
    assert all(line in shown for line in says), shown
    never_leaked(slack)
