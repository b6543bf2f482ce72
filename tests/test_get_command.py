"""`/recording get` end to end: signed request in, signed GET to Agora, summary out."""

from __future__ import annotations

import json
import time

import pytest

from handlers.blocks import messages, summary
from handlers.commands import SLOW_READ_SECONDS
from tests.conftest import ACCESS_KEY, APP_ID, CUSTOMER_SECRET, SECRET_KEY, SIGNING_SECRET
from tests.driver import SlackDriver, bot_with_agora_timing
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import FakeSlack

CONFIG_PATH = f"/v1/projects/{APP_ID}/fls/entry_points/live/settings/record/custom/regions/na"


def answer_text(slack: FakeSlack) -> str:
    (reply,) = slack.wait_for("response_url")
    assert reply.params.get("response_type") == "ephemeral"
    return json.dumps(reply.params)


def test_get_shows_summary_from_one_signed_get(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    response = driver.command("get live na")
    assert response.status_code == 200
    text = answer_text(slack)
    (call,) = agora.calls()
    assert (call.method, call.path, call.status) == ("GET", CONFIG_PATH, 200)
    assert call.headers["authorization"].startswith('hmac username="cust-id-fake"')
    for expected in (
        "MP4 recording",
        "on",
        "HLS recording",
        "off",
        "Amazon S3",
        "US_EAST_1 (0)",
        "rec-bucket",
        "...1234",
        "set",
    ):
        assert expected in text
    assert ACCESS_KEY not in slack.payload_text()
    assert SECRET_KEY not in slack.payload_text()
    assert CUSTOMER_SECRET not in slack.payload_text()


def test_region_defaults_and_app_flag(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.put("OTHERAPP", "live", "eu", {"mp4Config": {"enabled": False}})
    driver.command("get live --app OTHERAPP eu")
    text = answer_text(slack)
    assert "not set" in text and "OTHERAPP" in text
    assert agora.calls()[0].path == "/v1/projects/OTHERAPP/fls/entry_points/live/settings/record/custom/regions/eu"


def test_a_read_without_keys_still_shows_the_rest(driver, slack, agora) -> None:
    config = agora.config(APP_ID, "live", "na")
    del config["storageConfig"]["accessKey"], config["storageConfig"]["secretKey"]
    agora.put(APP_ID, "live", "na", config)
    driver.command("get live na")
    text = answer_text(slack)
    assert "rec-bucket" in text and text.count("not set") == 2


def test_geography_mismatch_warns(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    eu_bucket = {**agora.config(APP_ID, "live", "na")}
    eu_bucket["storageConfig"] = {**eu_bucket["storageConfig"], "region": 7}
    agora.put(APP_ID, "live", "na", eu_bucket)
    driver.command("get live na")
    text = answer_text(slack)
    assert "EU_CENTRAL_1" in text and "outside North America" in text


def test_no_warning_when_geography_matches(driver, slack: FakeSlack) -> None:
    driver.command("get live na")
    assert "outside" not in answer_text(slack)


def test_bad_region_names_valid_ones_and_calls_nothing(driver, slack: FakeSlack, agora: AgoraEmulator, bot) -> None:
    driver.command("get live xx")
    text = answer_text(slack)
    assert all(code in text for code in ("cn", "ap", "na", "eu"))
    bot.drain()
    assert agora.calls() == []


def test_traversal_entry_point_stays_one_segment(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    driver.command("get a/../b na")
    text = answer_text(slack)
    (call,) = agora.calls()
    assert call.path == f"/v1/projects/{APP_ID}/fls/entry_points/a%2F..%2Fb/settings/record/custom/regions/na"
    assert call.status == 404 and "No such entry point" in text


def test_help_and_unknown_subcommand_show_usage(driver, slack: FakeSlack, agora: AgoraEmulator, bot) -> None:
    driver.command("help")
    slack.wait_for("response_url")  # one at a time: the two listeners would answer in either order
    driver.command("frobnicate live")
    replies = slack.wait_for("response_url", count=2)
    # Escaped as Slack wants it, and shown as `[<entry_point> [region]]`: a bare `<` starts a Slack link.
    assert all("/recording get [&lt;entry_point&gt; [region]]" in json.dumps(r.params) for r in replies)
    assert "Unknown subcommand" in json.dumps(replies[1].params)
    bot.drain()
    assert agora.calls() == []


def test_unauthorized_says_credentials_are_wrong(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.customer_secret = "rotated-elsewhere"
    driver.command("get live na")
    text = answer_text(slack)
    assert "AGORA_CUSTOMER_ID" in text and "wrong" in text
    assert len(agora.calls()) == 1  # 401 is not retried


def test_a_redirect_says_nothing_changed_and_names_the_setting(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(308, {"Location": "https://elsewhere.example/"}, "Permanent Redirect"))
    driver.command("get live na")
    text = answer_text(slack)
    assert "AGORA_API_URL" in text and "does not follow" in text and "try again later" not in text
    assert len(agora.calls()) == 1  # a redirect is an answer: not sent again, and not followed


def test_forbidden_says_who_to_ask_and_is_not_sent_again(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(403, message="Forbidden"))
    driver.command("get live na")
    text = answer_text(slack)
    assert "Agora refused recbot access (403) (Forbidden)" in text and "AGORA_CUSTOMER_ID" in text
    assert "try again" not in text and len(agora.calls()) == 1


def test_not_found_says_no_such_entry_point(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    driver.command("get nosuch na")
    assert f"nosuch (na, app {APP_ID}): No such entry point" in answer_text(slack)  # what was looked up


def test_rate_limited_then_ok_is_retried(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(429, {"Retry-After": "0"}, "Too Many Requests"))
    driver.command("get live na")
    assert "rec-bucket" in answer_text(slack)
    assert [c.status for c in agora.calls()] == [429, 200]


def test_server_error_then_ok_is_retried(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(500))
    driver.command("get live na")
    assert "rec-bucket" in answer_text(slack)
    assert [c.status for c in agora.calls()] == [500, 200]


def test_persistent_gateway_timeout_gives_up_after_three_retries(
    driver, slack: FakeSlack, agora: AgoraEmulator
) -> None:
    agora.inject(*[Fault(504, message="Gateway Timeout")] * 4)
    driver.command("get live na")
    text = answer_text(slack)
    assert "try again later" in text
    assert [c.status for c in agora.calls()] == [504] * 4
    driver.command("get live na")  # the bot keeps serving
    assert "rec-bucket" in json.dumps(slack.wait_for("response_url", count=2)[1].params)


def test_a_server_error_asking_for_a_long_pause_says_when_to_try_again(
    driver, slack: FakeSlack, agora: AgoraEmulator
) -> None:
    """Agora's Retry-After is past a person's retry window: one attempt, and its wait is passed on."""
    agora.inject(Fault(503, {"Retry-After": "600"}, "Service Unavailable"))
    driver.command("get live na")
    text = answer_text(slack)
    assert "try again in 10 min (Agora asked recbot to wait that long)" in text
    assert "try again later" not in text
    assert [c.status for c in agora.calls()] == [503]


def test_a_slow_agora_is_told_of_and_the_answer_replaces_that_notice(driver, slack, agora) -> None:
    agora.get_delay = SLOW_READ_SECONDS + 1.0
    driver.command("get live na")
    notice, answer = slack.wait_for("response_url", count=2)
    assert notice.params["blocks"][0]["block_id"] == summary.BLOCK_SLOW_READ
    assert f"Still reading the configuration of `live` (na, app `{APP_ID}`) from Agora" in json.dumps(notice.params)
    assert notice.params["text"] == "Still reading the configuration of live (na) from Agora"
    assert notice.params["response_type"] == "ephemeral" and "replace_original" not in notice.params
    assert "rec-bucket" in json.dumps(answer.params)
    assert answer.params["replace_original"] is True and answer.params["response_type"] == "ephemeral"
    assert len(agora.calls()) == 1


def test_a_quick_answer_is_the_only_one(driver, slack, agora) -> None:
    driver.command("get live na")
    assert "rec-bucket" in answer_text(slack)
    time.sleep(SLOW_READ_SECONDS + 0.5)  # past the time the notice would have been posted
    (answer,) = slack.wait_for("response_url")
    assert "replace_original" not in answer.params


def test_a_slow_failure_replaces_the_notice(settings, slack, agora) -> None:
    bot = bot_with_agora_timing(settings, retry_window=0.1)  # one attempt: the 503 is the answer
    try:
        agora.inject(Fault(503, message="Service Unavailable", delay=SLOW_READ_SECONDS + 1.0, method="GET"))
        SlackDriver(bot.url, SIGNING_SECRET, slack.response_url()).command("get live na")
        notice, answer = slack.wait_for("response_url", count=2)
        assert "Still reading" in json.dumps(notice.params)
        assert "Agora is not answering properly right now (Service Unavailable)" in json.dumps(answer.params)
        assert answer.params["replace_original"] is True
    finally:
        bot.stop()


def test_a_notice_slack_is_slow_to_take_holds_the_answer_back_three_seconds_at_most(driver, slack, agora) -> None:
    """Slack takes the notice but answers it 6 s late: the answer goes once the notice's 3 s are up,
    replacing it (it may well have landed), not once Slack answered it."""
    agora.get_delay = SLOW_READ_SECONDS + 0.5
    slack.after["response_url"] = lambda call: (
        time.sleep(6.0)
        if "blocks" in call.params and (call.params["blocks"][0].get("block_id") == summary.BLOCK_SLOW_READ)
        else None
    )
    sent = time.monotonic()
    driver.command("get live na")
    notice, answer = slack.wait_for("response_url", count=2, timeout=20)
    answered_after = time.monotonic() - sent
    assert notice.params["blocks"][0]["block_id"] == summary.BLOCK_SLOW_READ
    assert "rec-bucket" in json.dumps(answer.params) and answer.params["replace_original"] is True
    assert answered_after < SLOW_READ_SECONDS + 6.0  # before Slack answered the notice


@pytest.mark.parametrize("name", ["*bold*_it_:skull:", "a&b<c>"])
def test_names_in_the_notice_are_inert(driver, slack, agora, name: str) -> None:
    agora.put(APP_ID, name, "na", {"mp4Config": {"enabled": True}})
    agora.get_delay = SLOW_READ_SECONDS + 0.5
    driver.command(f"get {name} na")
    notice, answer = slack.wait_for("response_url", count=2)
    assert messages.code(name) in notice.params["blocks"][0]["text"]["text"]
    assert notice.params["text"] == f"Still reading the configuration of {messages.escape(name)} (na) from Agora"
    assert answer.params["text"] == f"Recording configuration of {messages.escape(name)} (na)"


def test_a_stopped_bot_sets_off_no_more_alarms(settings, agora) -> None:
    bot = bot_with_agora_timing(settings)
    bot.stop()
    ran: list[str] = []
    alarm = bot.services.alarms.after(0.0, lambda: ran.append("after the stop"))
    time.sleep(0.3)
    assert ran == [] and alarm.cancel() is False
