"""recbot's Slack side as its metrics count it, in-process through signed requests: commands by
verb and outcome, the ack and answer histograms (one observation per request, per command),
and every Slack Web API call by method and outcome, 429s included."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from bot.metrics import Metrics
from bot.server import socket_mode_handler
from bot.services import MeteredWebClient, build_services
from recbot.app import KeptAck, create_app, request_kind
from tests.conftest import BOT_TOKEN, fast_agora
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import FakeSlack
from tests.metrics_helpers import Scrape, moved, scrape
from tests.test_socket_mode import APP_TOKEN, SocketSlack, get_command


def settled(url: str, done: Callable[[Scrape], bool], timeout: float = 10.0) -> Scrape:
    """A scrape once `done` holds: a listener counts after its answer left, so the answer's arrival
    does not mean the count was made. Fails the test if it never holds."""
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(url)
        if done(found) or time.monotonic() > deadline:
            assert done(found), found.text
            return found
        time.sleep(0.02)


def moved_of(before: Scrape, after: Scrape, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """What moved in the series `name`, by labels."""
    return {labels: delta for (n, labels), delta in moved(before, after).items() if n == name}


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def commands_moved(before: Scrape, count: int) -> Callable[[Scrape], bool]:
    return lambda now: now.total("recbot_commands_total") - before.total("recbot_commands_total") == count


def test_commands_are_counted_by_verb_and_outcome(bot, driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    before = scrape(bot.metrics_url)
    sent = [
        ("get live na", None),  # ok
        ("get nosuch na", None),  # refused: Agora has no such entry point
        ("get live mars", None),  # refused: not a region
        ("get live na", [Fault(503)] * 4),  # failed: Agora did not serve it, retries included
        ("frobnicate live", None),  # refused, as `other`: never what was typed
        ("", None),  # the help
    ]
    for answered, (text, faults) in enumerate(sent, start=1):
        if faults:
            agora.inject(*faults)
        assert driver.command(text).status_code == 200
        slack.wait_for("response_url", count=answered)
    after = settled(bot.metrics_url, commands_moved(before, len(sent)))

    assert moved_of(before, after, "recbot_commands_total") == {
        labels(verb="get", outcome="ok"): 1,
        labels(verb="get", outcome="refused"): 2,
        labels(verb="get", outcome="failed"): 1,
        labels(verb="other", outcome="refused"): 1,
        labels(verb="help", outcome="ok"): 1,
    }
    assert moved_of(before, after, "recbot_ack_seconds_count") == {labels(kind="command"): len(sent)}
    answers = settled(bot.metrics_url, lambda now: now.total("recbot_answer_seconds_count") >= len(sent))
    assert moved_of(before, answers, "recbot_answer_seconds_count") == {
        labels(verb="get"): 4,
        labels(verb="other"): 1,
        labels(verb="help"): 1,
    }
    assert "frobnicate" not in answers.text and "nosuch" not in answers.text
    assert moved_of(before, answers, "recbot_slack_api_calls_total") == {}  # answers go to the response_url


def test_a_set_is_answered_when_its_modal_is_filled_and_its_slack_calls_are_counted(
    bot, driver, slack: FakeSlack
) -> None:
    before = scrape(bot.metrics_url)
    slack.rate_limit("views.open", times=1, retry_after=0)  # slack_sdk waits and sends it again
    assert driver.command("set live na").status_code == 200
    slack.wait_for("views.update")
    after = settled(bot.metrics_url, lambda now: now.total("recbot_answer_seconds_count") == 1)

    assert moved_of(before, after, "recbot_commands_total") == {labels(verb="set", outcome="ok"): 1}
    assert moved_of(before, after, "recbot_answer_seconds_count") == {labels(verb="set"): 1}
    assert moved_of(before, after, "recbot_ack_seconds_count") == {labels(kind="command"): 1}
    assert moved_of(before, after, "recbot_slack_api_calls_total") == {
        labels(method="views.open", outcome="ok"): 1,  # one call, though sent twice
        labels(method="views.update", outcome="ok"): 1,
    }
    assert after.value("recbot_slack_rate_limited_total") - before.value("recbot_slack_rate_limited_total") == 1


def test_a_429_that_outlasts_the_retries_fails_the_command(bot, driver, slack: FakeSlack) -> None:
    before = scrape(bot.metrics_url)
    slack.rate_limit("views.open", times=3, retry_after=0)  # the first try and both retries
    assert driver.command("set live na").status_code == 200
    slack.wait_for("response_url")  # "Slack did not open the form"
    after = settled(bot.metrics_url, commands_moved(before, 1))

    assert len(slack.of("views.open:rate_limited")) == 3
    assert moved_of(before, after, "recbot_commands_total") == {labels(verb="set", outcome="failed"): 1}
    assert moved_of(before, after, "recbot_slack_api_calls_total") == {
        labels(method="views.open", outcome="ratelimited"): 1
    }
    assert after.value("recbot_slack_rate_limited_total") - before.value("recbot_slack_rate_limited_total") == 3
    answered = settled(bot.metrics_url, lambda now: now.total("recbot_answer_seconds_count") == 1)
    assert moved_of(before, answered, "recbot_answer_seconds_count") == {labels(verb="set"): 1}


def test_slack_refusing_a_call_counts_an_error(bot, driver, slack: FakeSlack) -> None:
    before = scrape(bot.metrics_url)
    slack.errors["views.open"] = "expired_trigger_id"
    assert driver.command("set live na").status_code == 200
    slack.wait_for("response_url")
    after = settled(bot.metrics_url, commands_moved(before, 1))
    assert moved_of(before, after, "recbot_commands_total") == {labels(verb="set", outcome="failed"): 1}
    assert moved_of(before, after, "recbot_slack_api_calls_total") == {labels(method="views.open", outcome="error"): 1}
    assert after.value("recbot_slack_rate_limited_total") == before.value("recbot_slack_rate_limited_total")


def test_an_event_is_acked_and_timed_as_an_event(bot, driver, slack: FakeSlack) -> None:
    before = scrape(bot.metrics_url)
    assert driver.home_opened("UALICE").status_code == 200
    slack.wait_for("views.publish")
    after = settled(bot.metrics_url, lambda now: now.total("recbot_slack_api_calls_total", method="views.publish") == 1)
    assert moved_of(before, after, "recbot_ack_seconds_count") == {labels(kind="event"): 1}
    assert moved_of(before, after, "recbot_commands_total") == {}
    assert moved_of(before, after, "recbot_answer_seconds_count") == {}
    assert moved_of(before, after, "recbot_slack_api_calls_total") == {labels(method="views.publish", outcome="ok"): 1}


def test_a_command_over_socket_mode_is_timed_and_counted(settings, slack: FakeSlack, agora: AgoraEmulator) -> None:
    """Socket Mode has no HTTP gate: its handler notes the arrival, the same middleware times the ack."""
    services = build_services(settings, agora=fast_agora(settings))
    registry = services.metrics.registry

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    with SocketSlack(get_command(slack)) as ws_slack:
        slack.socket_url = ws_slack.url
        handler = socket_mode_handler(create_app(services), APP_TOKEN, settings.SLACK_API_URL, services.metrics)
        handler.connect()
        try:
            assert value("recbot_socket_mode_connected") == 1
            assert ws_slack.acks.get(timeout=10)["envelope_id"] == "env-1"
            slack.wait_for("response_url")
            assert value("recbot_ack_seconds_count", kind="command") == 1
            deadline = time.monotonic() + 10
            while value("recbot_commands_total", verb="get", outcome="ok") == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert value("recbot_commands_total", verb="get", outcome="ok") == 1
            assert value("recbot_answer_seconds_count", verb="get") == 1
            assert value("recbot_socket_mode_reconnects_total") == 0
        finally:
            handler.close()
            services.close()
    assert value("recbot_socket_mode_connected") == 0


def test_an_ack_given_again_is_timed_once() -> None:
    metrics = Metrics()
    ack = KeptAck((metrics.ack_seconds.labels(kind="view"), time.monotonic()))
    ack()
    ack(response_action="errors", errors={"block": "again"})  # a listener acking a second time
    assert metrics.registry.get_sample_value("recbot_ack_seconds_count", {"kind": "view"}) == 1


def test_an_answer_slack_refused_is_not_timed_as_answered(bot, driver, slack: FakeSlack) -> None:
    before = scrape(bot.metrics_url)
    gone = slack.response_url().replace("/response/", "/expired/")  # Slack answers it 404, as an expired one
    assert replace(driver, response_url=gone).command("get live na").status_code == 200
    assert driver.command("get live na").status_code == 200
    slack.wait_for("response_url")
    after = settled(bot.metrics_url, commands_moved(before, 2))
    assert moved_of(before, after, "recbot_commands_total") == {labels(verb="get", outcome="ok"): 2}
    assert moved_of(before, after, "recbot_answer_seconds_count") == {labels(verb="get"): 1}


def test_a_method_outside_the_known_set_is_labelled_other(slack: FakeSlack) -> None:
    metrics = Metrics()
    client = MeteredWebClient(metrics, token=BOT_TOKEN, base_url=slack.api_url)
    client.api_call("team.info")  # not one recbot calls: its name would be a new series
    counted = {s.labels["method"] for s in next(iter(metrics.slack_calls.collect())).samples}
    assert counted == {"other"}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"command": "/recbot", "type": "view_submission"}, "command"),  # a command has no type; its key decides
        ({"type": "block_actions"}, "action"),
        ({"type": "interactive_message"}, "action"),
        ({"type": "view_submission"}, "view"),
        ({"type": "view_closed"}, "view"),
        ({"type": "block_suggestion"}, "options"),
        ({"type": "event_callback"}, "event"),
        ({"type": "shortcut"}, None),
        ({}, None),
    ],
)
def test_each_payload_type_is_timed_as_its_kind(body: dict[str, Any], kind: str | None) -> None:
    assert request_kind(body) == kind


class TestAChannelNotAllowed:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_ALLOWED_CHANNELS": "CRUN"}

    def test_refuses_the_command(self, bot, driver, slack: FakeSlack) -> None:
        before = scrape(bot.metrics_url)
        assert driver.command("get live na", channel="COTHER").status_code == 200
        slack.wait_for("response_url")
        after = settled(bot.metrics_url, commands_moved(before, 1))
        assert moved_of(before, after, "recbot_commands_total") == {labels(verb="get", outcome="refused"): 1}
