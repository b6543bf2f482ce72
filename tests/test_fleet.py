"""`/recording list`: every entry point at a glance, a page at a time, read
within the rate limit, with Get and Change on each row."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError

from bot import fleet as fleet_scan
from bot.catalog import Vendor
from bot.fleet import FORMULA_LEADS, KEPT_SCANS, SCAN_TTL_SECONDS, Fleet, FleetRow, Scan, to_csv
from bot.models import FormatConfig, RecordingConfig, StorageConfig
from handlers.blocks import fleet
from handlers.blocks.bulk_form import BLOCK_CHANGE_THESE
from handlers.notify import FILE_REFUSALS, file_not_taken
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY, fast_agora
from tests.fakes.agora import Fault

EU_BUCKET = {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"], "region": 4}}  # Amazon EU_WEST_1


def listing(driver, slack, bot, text: str = "list") -> list[dict[str, Any]]:
    """Run the command; the messages it answered with, in order (the last is the table)."""
    driver.command(text)
    bot.drain()
    return [c.params for c in slack.of("response_url")]


def rows_of(table: dict[str, Any]) -> list[dict[str, Any]]:
    below = (fleet.BLOCK_HEADER, fleet.BLOCK_PAGES, BLOCK_CHANGE_THESE)  # the table's own blocks, not rows
    return [b for b in table["blocks"] if b.get("block_id") not in below]


def test_one_region_shows_every_entry_point_masked_and_warned(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "eu-bucket", "na", EU_BUCKET)
    agora.put(APP_ID, "no-storage", "na", {"mp4Config": {"enabled": True}})
    first, progress, table = listing(driver, slack, bot)
    assert "Listing the entry points" in text_of_params(first) and "replace_original" not in first
    assert "Reading 3 entry point(s) x 1 region(s)" in text_of_params(progress) and progress["replace_original"]
    assert table["replace_original"] and table["response_type"] == "ephemeral"
    text = text_of_params(table)
    assert "3 entry point(s) x 1 region(s) (na), 2 with warnings" in text and "Page 1 of 1" in text
    assert "bucket region outside na" in text and "no storage configured" in text
    assert "...1234" in text and ACCESS_KEY not in text and SECRET_KEY not in text
    assert labels(table) == ["Download CSV"]  # one page: no Next or Previous


def test_an_empty_fleet_says_so(driver, slack, agora, bot) -> None:
    agora.configs.clear()
    table = listing(driver, slack, bot)[-1]
    assert "0 entry point(s)" in text_of_params(table) and "No entry points to show" in text_of_params(table)


def test_one_failing_region_among_many_is_marked_and_the_rest_is_read(driver, slack, agora, bot) -> None:
    for region in ("cn", "ap", "eu"):
        agora.put(APP_ID, "live", region, LIVE_CONFIG)
    agora.inject(*[Fault(503, path="/regions/eu") for _ in range(4)])  # every attempt of the eu read
    table = listing(driver, slack, bot, "list all")[-1]
    rows = [text_of_params(r) for r in rows_of(table)]
    assert len(rows) == 4
    assert [("read failed" in r) for r in rows] == [False, False, False, True]  # cn ap na eu, in order
    assert "(eu) :x: read failed: Agora answered 503" in rows[3]


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_read_names_the_setting_to_check(driver, slack, agora, bot, status) -> None:
    agora.put(APP_ID, "live", "eu", LIVE_CONFIG)
    agora.inject(Fault(status, headers={"Location": "https://elsewhere.example/x"}, path="/regions/eu"))
    table = listing(driver, slack, bot, "list all")[-1]
    rows = [text_of_params(r) for r in rows_of(table)]
    assert [("read failed" in r) for r in rows] == [False, True]  # na eu
    assert f"(eu) :x: read failed: Agora answered {status}, a redirect: check AGORA_API_URL" in rows[1]
    assert "elsewhere" not in text_of_params(table)
    assert len([c for c in agora.calls("GET") if c.path.endswith("/regions/eu")]) == 1  # not followed, not tried again


def test_odd_names_are_shown_inert_and_without_actions(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "<!channel>", "na", LIVE_CONFIG)
    agora.put(APP_ID, "has space", "na", LIVE_CONFIG)
    table = listing(driver, slack, bot)[-1]
    text = text_of_params(table)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    (spaced,) = [r for r in rows_of(table) if "has space" in text_of_params(r)]
    assert "not one recbot can address" in text_of_params(spaced) and "accessory" not in spaced


def test_a_429_storm_is_ridden_out_without_failed_reads(driver, slack, agora, bot) -> None:
    for i in range(30):
        agora.put(APP_ID, f"ep{i:02}", "na", LIVE_CONFIG)
    agora.inject(*[Fault(429, headers={"Retry-After": "1"}, method="GET", path="/regions/") for _ in range(10)])
    table = listing(driver, slack, bot)[-1]
    assert "read failed" not in text_of_params(table) and "31 entry point(s)" in text_of_params(table)


def test_pages_break_at_the_page_size_and_turn_both_ways(driver, slack, agora, bot) -> None:
    for i in range(fleet.PAGE_SIZE - 1):  # with live: exactly one page
        agora.put(APP_ID, f"ep{i:02}", "na", LIVE_CONFIG)
    table = listing(driver, slack, bot)[-1]
    assert len(rows_of(table)) == fleet.PAGE_SIZE and labels(table) == ["Download CSV"]
    agora.put(APP_ID, "zz-one-more", "na", LIVE_CONFIG)
    slack.clear()
    first = listing(driver, slack, bot)[-1]
    assert "Page 1 of 2" in text_of_params(first) and labels(first) == ["Download CSV", "Next"]
    slack.clear()
    click_page(driver, bot, first, "Next")
    second = slack.of("response_url")[-1].params
    assert "Page 2 of 2" in text_of_params(second) and second["replace_original"]
    assert len(rows_of(second)) == 1 and "zz-one-more" in text_of_params(second)
    assert labels(second) == ["Download CSV", "Previous"]
    slack.clear()
    click_page(driver, bot, second, "Previous")
    assert "Page 1 of 2" in text_of_params(slack.of("response_url")[-1].params)


def test_get_and_change_on_a_row(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "backup", "na", EU_BUCKET)
    table = listing(driver, slack, bot)[-1]
    (row,) = [r for r in rows_of(table) if "backup" in text_of_params(r)]
    get, change = row["accessory"]["options"]
    slack.clear()
    choose(driver, bot, row, get)
    (answer,) = slack.of("response_url")
    assert "Recording configuration of `backup`" in text_of_params(answer.params)
    choose(driver, bot, row, change)
    (opened,) = slack.of("views.open")
    updated = slack.wait_for("views.update")[0]
    assert "backup" in json.dumps(opened.params["view"]) and "backup" in json.dumps(updated.params["view"])


def test_a_forged_row_value_is_refused(driver, slack, agora, bot) -> None:
    table = listing(driver, slack, bot)[-1]
    row = rows_of(table)[0]
    slack.clear()
    choose(driver, bot, row, {**row["accessory"]["options"][0], "value": "get.abc.0." + "0" * 32})
    assert "expired" in text_of_params(slack.of("response_url")[0].params)


def labels(table: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in buttons(table)]


def test_the_csv_goes_to_the_users_direct_messages_masked(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "=HYPERLINK(1)", "na", EU_BUCKET)
    table = listing(driver, slack, bot)[-1]
    slack.clear()
    click_page(driver, bot, table, "Download CSV")
    (opened,) = slack.of("conversations.open")
    assert opened.params["users"] == "UALICE"
    (done,) = slack.of("files.completeUploadExternal")
    (sent,) = [f for f in slack.files.values() if f.get("channel") == done.params["channel_id"]]
    lines = sent["content"].splitlines()
    assert lines[0].startswith("entry_point,region,mp4,hls,vendor") and len(lines) == 3
    assert "'=HYPERLINK(1),na,on,off,Amazon S3,EU_WEST_1 (4),rec-bucket,...1234,set,ok" in sent["content"]
    assert ACCESS_KEY not in sent["content"] and SECRET_KEY not in sent["content"]
    assert "in your direct messages" in text_of_params(slack.of("response_url")[-1].params)


@pytest.mark.parametrize(
    ("method", "error", "said"),
    [
        ("files.getUploadURLExternal", "missing_scope", "Slack refused the file (missing_scope); trying again"),
        ("conversations.open", "restricted_action", "check that the app has the files:write and im:write scopes"),
        ("files.getUploadURLExternal", "internal_error", "Slack did not take the file (internal_error); try again in"),
    ],
)
def test_a_csv_slack_did_not_take_says_whether_trying_again_helps(driver, slack, agora, bot, method, error, said):
    table = listing(driver, slack, bot)[-1]
    slack.errors[method] = error
    click_page(driver, bot, table, "Download CSV")
    assert said in text_of_params(slack.of("response_url")[-1].params)


@pytest.mark.parametrize("code", sorted(FILE_REFUSALS))
def test_each_refusal_of_a_file_is_told_as_lasting(code: str) -> None:
    said = file_not_taken(SlackApiError("refused", {"ok": False, "error": code}))
    assert f"Slack refused the file ({code}); trying again will not help" in said


def buttons(table: dict[str, Any]) -> list[dict[str, Any]]:
    return next(b for b in table["blocks"] if b.get("block_id") == fleet.BLOCK_PAGES)["elements"]


def click_page(driver, bot, table: dict[str, Any], label: str) -> None:
    (button,) = [b for b in buttons(table) if b["text"]["text"] == label]
    driver.block_action("UALICE", button, message={"ts": "1.000001", "blocks": table["blocks"]}, channel="CRUN")
    bot.drain()


def choose(driver, bot, row: dict[str, Any], option: dict[str, Any]) -> None:
    action = {"action_id": fleet.ACTION_ROW, "type": "overflow", "selected_option": option}
    driver.block_action("UALICE", action, message={"ts": "1.000001", "blocks": [row]}, channel="CRUN")
    bot.drain()


def text_of_params(params: dict[str, Any]) -> str:
    return json.dumps(params, ensure_ascii=False)


def test_an_unknown_app_id_is_named_as_such(driver, slack, agora, bot) -> None:
    agora.unknown_apps.add("nosuchapp")
    answer = text_of_params(listing(driver, slack, bot, "list all --app nosuchapp")[-1])
    assert "Unknown App ID" in answer and "No such entry point" not in answer
    assert [c.path for c in agora.calls()] == ["/v1/projects/nosuchapp/fls/entry_points"]  # nothing read after it


def csv_cells(content: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content, newline="")))


def runs_as_formula(cell: str) -> bool:
    """What a spreadsheet would run: a formula lead, first or after spaces, not behind the quote."""
    return cell[:1] in FORMULA_LEADS or cell.lstrip()[:1] in FORMULA_LEADS


def row_with(name: str, bucket: str, region: str = "na") -> FleetRow:
    # model_construct: any bucket text at all, even what Agora's answer validation would refuse.
    storage = StorageConfig.model_construct(vendor=Vendor(1), region=0, bucket=bucket, access_key=None, secret_key=None)
    config = RecordingConfig(mp4_config=FormatConfig(enabled=True), storage_config=storage)
    return FleetRow(name, region, None, config=config)


# Any text, and text made mostly of what matters here: spaces, formula leads, the quote.
cell_text = st.text(max_size=40) | st.text(alphabet=" \t\r\n\xa0\u3000=+-@'a1(", max_size=8)


@given(name=cell_text, bucket=cell_text, error=cell_text)
def test_no_csv_cell_runs_as_a_formula(name: str, bucket: str, error: str) -> None:
    rows = (row_with(name, bucket), FleetRow(name, "eu", None, error=error), FleetRow(name, "ap", None, missing=True))
    content = to_csv(Scan("s", APP_ID, ("na", "eu", "ap"), rows, 0.0))
    lines = csv_cells(content)
    assert len(lines) == 4 and all(len(line) == len(fleet_scan.CSV_COLUMNS) for line in lines)
    for line in lines[1:]:
        assert not any(runs_as_formula(cell) for cell in line), line
        assert line[0] == ("'" + name if runs_as_formula(name) else name)  # quoted, otherwise unchanged


def test_every_kind_of_formula_lead_is_quoted_in_names_and_buckets() -> None:
    leads = ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", " =HYPERLINK(1)", "  +1", "\n-1", " \t@x"]
    rows = tuple(row_with(value, value) for value in leads)
    lines = csv_cells(to_csv(Scan("s", APP_ID, ("na",), rows, 0.0)))[1:]
    column = fleet_scan.CSV_COLUMNS.index("bucket")
    assert [(line[0], line[column]) for line in lines] == [("'" + value, "'" + value) for value in leads]


def test_the_scan_cache_evicts_the_oldest_first_and_serves_nothing_past_its_ttl(settings, agora) -> None:
    now = [1000.0]
    client = fast_agora(settings)
    kept = Fleet(client, clock=lambda: now[0])
    try:
        scans = []
        for _ in range(KEPT_SCANS + 1):
            scans.append(kept.scan(APP_ID, [], ("na",)))
            now[0] += 1.0
        assert kept.kept(scans[0].id) is None  # the oldest went first...
        assert [kept.kept(s.id) for s in scans[1:]] == scans[1:]  # ...and only it
        kept.kept(scans[1].id)  # being read does not make a scan younger
        kept.scan(APP_ID, [], ("na",))
        assert kept.kept(scans[1].id) is None and kept.kept(scans[2].id) == scans[2]
        newest = scans[-1]
        now[0] = newest.at + SCAN_TTL_SECONDS
        assert kept.kept(newest.id) == newest  # at the limit: still served
        now[0] += 0.001
        assert kept.kept(newest.id) is None  # past it: run the command again
    finally:
        client.close()
    assert agora.calls() == []
