"""`/recording list` behind a load balancer: two instances on one PostgreSQL. A table one
instance answered with is paged, downloaded as CSV and its rows chosen on the other, which
shows exactly what the first would; a table expired or damaged in the database says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from bot.fleet import SCAN_TTL
from bot.settings import load_settings
from bot.store.schema import fleet_scans
from handlers.actions import EXPIRED_LIST
from handlers.blocks import fleet
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.fakes.slack import FakeSlack
from tests.test_fleet import EU_BUCKET, buttons, choose, listing, rows_of, text_of_params


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


@pytest.fixture
def instances(shared_settings, slack: FakeSlack) -> Iterator[list[tuple[RunningBot, SlackDriver]]]:
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    yield [(bot, SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())) for bot in bots]
    for bot in bots:
        bot.stop()


def answer(slack: FakeSlack, instance: tuple[RunningBot, SlackDriver], click: Any, *args: Any) -> dict[str, Any]:
    """What a click made on `instance` answered (through the response URL)."""
    bot, driver = instance
    slack.clear()
    click(driver, bot, *args)
    (answered,) = slack.of("response_url")
    return answered.params


def press(driver: SlackDriver, bot: RunningBot, table: dict[str, Any], label: str) -> None:
    (button,) = [b for b in buttons(table) if b["text"]["text"] == label]
    driver.block_action("UALICE", button, message={"ts": "1.000001", "blocks": table["blocks"]}, channel="CRUN")
    bot.drain()


def sent_csv(slack: FakeSlack) -> str:
    (done,) = slack.of("files.completeUploadExternal")
    (sent,) = [f for f in slack.files.values() if f.get("channel") == done.params["channel_id"] and "taken" not in f]
    sent["taken"] = True  # the next download is told apart from this one
    return str(sent["content"])


def test_a_list_answered_by_one_instance_is_paged_downloaded_and_chosen_on_the_other(
    instances, slack: FakeSlack, agora
) -> None:
    a, b = instances
    for i in range(fleet.PAGE_SIZE + 2):
        agora.put(APP_ID, f"ep{i:02}", "na", EU_BUCKET if i % 5 == 0 else LIVE_CONFIG)
    agora.put(APP_ID, "no-storage", "na", {"mp4Config": {"enabled": True}})
    agora.put(APP_ID, "has space", "na", LIVE_CONFIG)  # not addressable: a row without Get and Change
    failing = "/entry_points/ep01/settings/record/custom/regions/eu"
    agora.inject(*[Fault(503, path=failing) for _ in range(4)])  # every attempt: a failed read
    first = listing(a[1], slack, a[0], "list all")[-1]
    assert "Page 1 of 2" in text_of_params(first) and "with warnings" in text_of_params(first)
    assert "(not shown)" in text_of_params(first) and "read failed: Agora answered 503" in text_of_params(first)
    agora.clear()

    # Pages: B shows what A shows, both ways.
    second_on_b = answer(slack, b, press, first, "Next")
    second_on_a = answer(slack, a, press, first, "Next")
    assert "Page 2 of 2" in text_of_params(second_on_b) and second_on_b["replace_original"]
    assert second_on_b["blocks"] == second_on_a["blocks"]
    assert "read failed: its name is not one recbot can address" in text_of_params(second_on_b)
    assert answer(slack, b, press, second_on_b, "Previous")["blocks"] == first["blocks"]

    # The CSV, from either instance, is the same file.
    answer(slack, b, press, first, "Download CSV")
    on_b = sent_csv(slack)
    answer(slack, a, press, first, "Download CSV")
    assert sent_csv(slack) == on_b and on_b.count("\n") == 1 + (fleet.PAGE_SIZE + 5) * 4
    assert "ep00,na,on,off,Amazon S3,EU_WEST_1 (4),rec-bucket,...1234,set,ok,bucket region outside na" in on_b
    assert ACCESS_KEY not in on_b and SECRET_KEY not in on_b
    assert agora.calls() == []  # nothing was read again for pages or files

    # A row's Get on B answers what it answers on A; Change opens the form for that entry point.
    row = next(r for r in rows_of(second_on_b) if "ep16" in text_of_params(r))
    get, change = row["accessory"]["options"]
    got_on_b = answer(slack, b, choose, row, get)
    assert "Recording configuration of `ep16`" in text_of_params(got_on_b)
    assert got_on_b == answer(slack, a, choose, row, get)
    slack.clear()
    choose(b[1], b[0], row, change)
    (opened,) = slack.of("views.open")
    updated = slack.wait_for("views.update")[0]
    assert "ep16" in json.dumps(opened.params["view"]) and "ep16" in json.dumps(updated.params["view"])


DAMAGES: dict[str, dict[str, Any]] = {
    "expired": {"created_at": fleet_scans.c.created_at - SCAN_TTL - timedelta(milliseconds=1)},
    "rows not JSON": {"rows": '[{"name": "ep'},
    "rows of another shape": {"rows": '{"name": "live"}'},
    "a row with a key in it": {"rows": '[{"name": "live", "region": "na", "access_key": "AKIA"}]'},
    "regions damaged": {"regions": "[1, 2]"},
}


def test_a_table_expired_or_damaged_in_the_database_says_expired_on_the_other_instance(
    instances, slack: FakeSlack, agora
) -> None:
    a, b = instances
    engine = a[0].services.store.engine
    for damage, values in DAMAGES.items():
        intact, table = listing(a[1], slack, a[0])[-1], listing(a[1], slack, a[0])[-1]
        scan_id = fleet.read_value(buttons(table)[0]["value"], a[0].services.sealer, 1)
        assert scan_id is not None
        with engine.begin() as conn:
            conn.execute(update(fleet_scans).where(fleet_scans.c.id == scan_id[0]).values(values))
        assert "in your direct messages" in answer(slack, b, press, intact, "Download CSV")["text"], damage
        csv = answer(slack, b, press, table, "Download CSV")
        assert csv["text"] == EXPIRED_LIST and csv["replace_original"] is False, damage
        assert slack.of("files.completeUploadExternal") == [], damage
        (row,) = rows_of(table)
        chosen = answer(slack, b, choose, row, row["accessory"]["options"][0])
        assert chosen["text"] == EXPIRED_LIST, damage
        slack.clear()
