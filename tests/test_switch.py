"""Pause and resume custom recording of an entry point from Slack: at once or
through approval, who may, what `/recording get` shows in each state, what
Agora got, history, and an interrupted switch after a restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.models import Target
from handlers.blocks import approval_card as card
from handlers.blocks import switch as switch_blocks
from tests.approval_helpers import click, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.switch_helpers import answers, click_get_button, get_switch_buttons, run, said, switch_calls, switch_line
from tests.test_change_flow import final_view_text, open_form, state
from tests.test_fleet import click_page, listing, rows_of

PAUSED_WORDS = "custom recording for all streams of `live` stops until resumed; the configuration is kept"
AUTO_PATH = f"/v1/projects/{APP_ID}/fls/entry_points/live/settings/record/custom/auto"


def test_pause_is_sent_once_says_what_stops_and_keeps_the_configuration(driver, slack, agora, bot) -> None:
    reply = said(run(driver, slack, "pause live"))
    (call,) = agora.calls()
    assert (call.method, call.path, call.status, call.json()) == ("PATCH", AUTO_PATH, 200, {"enabled": False})
    assert not agora.switch(APP_ID, "live") and agora.config(APP_ID, "live", "na") == LIVE_CONFIG
    assert PAUSED_WORDS in reply and "`/recording resume live`" in reply
    assert "paused by <@UALICE>" in reply and "(as set by recbot)" in reply
    known = bot.services.switches.book.known(APP_ID, "live")
    assert (known.enabled, known.actor, known.cause) == (False, "UALICE", "switch")


def test_resume_switches_it_back_on_and_get_shows_who_resumed(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    reply = said(run(driver, slack, "resume live"))
    assert [c.json() for c in switch_calls(agora)] == [{"enabled": False}, {"enabled": True}]
    assert agora.switch(APP_ID, "live") and "starts again, with its configuration as it was" in reply
    line = switch_line(run(driver, slack, "get live na"))
    assert "on: resumed by <@UALICE>" in line and "(as set by recbot)" in line


def test_another_app_is_named_in_the_command_to_undo(driver, slack, agora) -> None:
    agora.put("OTHERAPP", "live", "eu", LIVE_CONFIG)
    reply = said(run(driver, slack, "pause live --app OTHERAPP"))
    assert switch_calls(agora)[0].path == "/v1/projects/OTHERAPP/fls/entry_points/live/settings/record/custom/auto"
    assert "`/recording resume live --app OTHERAPP`" in reply and agora.switch(APP_ID, "live")


def test_get_shows_what_recbot_knows_in_each_state_with_the_buttons_that_fit(driver, slack, agora, bot) -> None:
    never = run(driver, slack, "get live na")
    assert "unknown (never set through recbot)" in switch_line(never)
    assert "no read of this switch" in switch_line(never)
    assert set(get_switch_buttons(never)) == {switch_blocks.ACTION_PAUSE, switch_blocks.ACTION_RESUME}
    pause = get_switch_buttons(never)[switch_blocks.ACTION_PAUSE]
    assert pause["value"] == switch_blocks.switch_value(Target.every_region(APP_ID, "live"), bot.services.sealer)
    assert "stops until resumed; the configuration is kept" in pause["confirm"]["text"]["text"]

    run(driver, slack, "pause live")
    paused = run(driver, slack, "get live na")
    assert "paused by <@UALICE> on <!date^" in switch_line(paused) and "(as set by recbot)" in switch_line(paused)
    assert set(get_switch_buttons(paused)) == {switch_blocks.ACTION_RESUME}

    view = open_form(driver, slack)  # a configuration recbot sets switches recording on again
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    applied = final_view_text(slack)
    assert "switches custom recording on for every stream" in applied and "recbot knew it as paused" in applied
    assert agora.switch(APP_ID, "live")
    configured = run(driver, slack, "get live na")
    assert "on (since a configuration was set by <@UALICE>" in switch_line(configured)
    assert set(get_switch_buttons(configured)) == {switch_blocks.ACTION_PAUSE}
    assert len(switch_calls(agora)) == 1  # the configuration's PATCH did it, not a switch call


def test_a_pause_agora_did_not_answer_is_shown_as_unknown(driver, slack, agora, bot) -> None:
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    reply = said(run(driver, slack, "pause live"))
    assert "Agora answered with a server error (504: Gateway Timeout) to the pause" in reply
    assert "it may or may not have taken effect" in reply and "is unknown now" in reply and "safe to repeat" in reply
    assert len(switch_calls(agora)) == 4  # three retries, as for every call
    line = switch_line(run(driver, slack, "get live na"))
    assert "unknown: Agora gave no usable answer to a pause by <@UALICE>" in line
    run(driver, slack, "pause live")  # sent again: now it is known
    assert "paused by <@UALICE>" in switch_line(run(driver, slack, "get live na"))


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault(404, message="entry point not found", path="/auto"), "Agora has no entry point `live`"),
        (Fault(400, message="bad switch", path="/auto"), "refused the request as invalid: bad switch"),
        (Fault(401, message="Invalid authentication credentials", path="/auto"), "AGORA_CUSTOMER_ID"),
    ],
)
def test_a_refused_pause_changes_nothing_recbot_knows(driver, slack, agora, bot, fault, words) -> None:
    run(driver, slack, "resume live")
    agora.inject(fault)
    reply = said(run(driver, slack, "pause live"))
    assert words in reply and "Nothing was changed" in reply
    assert len(switch_calls(agora)) == 2  # not retried
    assert "on: resumed by <@UALICE>" in switch_line(run(driver, slack, "get live na"))
    assert agora.switch(APP_ID, "live")


def test_a_persistent_429_is_explained_and_leaves_the_switch_as_it_was(driver, slack, agora, bot) -> None:
    agora.inject(*[Fault(429, {"Retry-After": "0"}, "Too Many Requests", path="/auto")] * 4)
    reply = said(run(driver, slack, "pause live"))
    assert "rate-limiting" in reply and len(switch_calls(agora)) == 4
    assert "never set through recbot" in switch_line(run(driver, slack, "get live na"))


def test_an_unknown_entry_point_is_404_in_words(driver, slack, agora, bot) -> None:
    reply = said(run(driver, slack, "pause nosuch"))
    assert "Agora has no entry point `nosuch` in App ID `APPID01`" in reply
    assert bot.services.switches.book.known(APP_ID, "nosuch") is None


@pytest.mark.parametrize(
    "text", ["pause", "pause live na", "resume a b", "pause .", "pause " + "x" * 200, "pause live --frob"]
)
def test_bad_pause_commands_get_usage_and_call_nothing(driver, slack, agora, bot, text) -> None:
    reply = said(run(driver, slack, text))
    assert "Usage" in reply
    bot.drain()
    assert (
        agora.calls() == []
        and bot.services.store.audit.history(Target(app_id=APP_ID, entry_point="live", region="na")) == []
    )


def test_the_get_buttons_pause_and_resume(driver, slack, agora, bot) -> None:
    answer = click_get_button(driver, slack, run(driver, slack, "get live na"), switch_blocks.ACTION_PAUSE)
    assert PAUSED_WORDS in said(answer) and answer.params["replace_original"] is False
    assert not agora.switch(APP_ID, "live")
    answer = click_get_button(driver, slack, run(driver, slack, "get live na"), switch_blocks.ACTION_RESUME)
    assert "starts again" in said(answer) and agora.switch(APP_ID, "live")
    assert [c.json() for c in switch_calls(agora)] == [{"enabled": False}, {"enabled": True}]


def test_forged_get_buttons_do_nothing(driver, slack, agora, bot) -> None:
    reply = run(driver, slack, "get live na")
    genuine = get_switch_buttons(reply)[switch_blocks.ACTION_PAUSE]["value"]
    other_purpose = bot.services.sealer.signed("stream", '["APPID01", "live"]')  # genuine, for Stop buttons
    not_a_name = bot.services.sealer.signed("switch", '["APPID01", ".."]')  # signed, but no entry point
    for forged in (genuine[:-4] + "0000", '["APPID01", "live"].' + "0" * 32, "", other_purpose, not_a_name):
        answer = click_get_button(driver, slack, reply, switch_blocks.ACTION_PAUSE, value=forged)
        assert "not a genuine" in said(answer)
    bot.drain()
    assert switch_calls(agora) == []


def test_history_shows_switches_of_the_entry_point_in_every_region(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    run(driver, slack, "resume live", user="UBOB")
    history = said(run(driver, slack, "history live na"))
    assert "paused custom recording of every stream" in history and "by <@UALICE>" in history
    assert "resumed custom recording of every stream" in history and "by <@UBOB>" in history
    assert "Custom recording, every stream: unknown → paused" in history
    assert "Custom recording, every stream: paused → on" in history
    assert "paused custom recording" in said(run(driver, slack, "history live eu"))  # the switch has no region


class TestWhoMay:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUESTERS": "UALICE,S0OPS"}

    @pytest.mark.parametrize("text", ["pause live", "resume live", "stream live na cam-1 on", "stream live na c off"])
    def test_people_outside_requesters_are_refused(self, driver, slack, agora, bot, text) -> None:
        slack.usergroups["S0OPS"] = ["UCAROL"]
        assert "not in RECBOT_REQUESTERS" in said(run(driver, slack, text, user="UMALLORY"))
        bot.drain()
        assert agora.calls() == [] and bot.services.switches.book.known(APP_ID, "live") is None

    def test_the_get_button_asks_the_same(self, driver, slack, agora, bot) -> None:
        slack.usergroups["S0OPS"] = ["UCAROL"]
        reply = run(driver, slack, "get live na", user="UMALLORY")  # anyone may look
        answer = click_get_button(driver, slack, reply, switch_blocks.ACTION_PAUSE, user="UMALLORY")
        assert "not in RECBOT_REQUESTERS" in said(answer)
        click_get_button(driver, slack, reply, switch_blocks.ACTION_PAUSE, user="UCAROL")  # a member of the group
        assert [c.json() for c in switch_calls(agora)] == [{"enabled": False}]


class TestThroughApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def posted_card(self, slack):
        return slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]

    def test_a_pause_waits_for_a_second_person_then_is_sent_once(self, driver, slack, agora, bot) -> None:
        reply = said(run(driver, slack, "pause live"))
        assert "needs a second person's approval" in reply and PAUSED_WORDS in reply
        posted = self.posted_card(slack)
        shown = text_of(posted)
        assert "Recording switch request" in shown and "asks to *pause* custom recording of every stream" in shown
        assert "live (every region, app APPID01)" in shown and "Once applied, " + PAUSED_WORDS in shown
        assert "Custom recording, every stream: unknown → paused" in shown
        bot.drain()
        assert [c.path for c in agora.calls()] == [f"/v1/projects/{APP_ID}/fls/entry_points"]  # checked, not sent
        click(driver, posted, "UALICE", card.ACTION_APPROVE)  # not their own
        assert "cannot approve your own" in said(answers(slack, 2)[1])
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        notice = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
        assert "Applied" in text_of(notice) and "Paused" in text_of(notice)
        assert [c.json() for c in switch_calls(agora)] == [{"enabled": False}]
        click(driver, posted, "UCAROL", card.ACTION_APPROVE)  # a late click
        assert "already applied" in said(answers(slack, 3)[2])
        bot.drain()
        assert len(switch_calls(agora)) == 1 and not agora.switch(APP_ID, "live")
        known = bot.services.switches.book.known(APP_ID, "live")
        (row,) = bot.services.store.requests.in_state("applied")
        assert (known.enabled, known.actor, known.request_id, row.kind) == (False, "UALICE", row.id, "switch")
        assert row.sealed_patch is None and row.spec == {"enabled": False}
        history = said(run(driver, slack, "history live na"))
        assert all(event in history for event in ("requested", "approved", "applied", row.id))

    @pytest.mark.parametrize("by", ["command", "button"])
    def test_a_pause_whose_card_could_not_be_posted_does_not_say_it_was_sent(self, driver, slack, bot, by) -> None:
        slack.refused_channels["CAPPROVE"] = "channel_not_found"
        if by == "command":
            reply = said(run(driver, slack, "pause live"))
        else:  # the Pause button under a get's answer
            reply = said(click_get_button(driver, slack, run(driver, slack, "get live na"), switch_blocks.ACTION_PAUSE))
        assert "needs a second person's approval" in reply and "no approval card could be posted yet" in reply
        assert "sent to the approvers" not in reply and PAUSED_WORDS in reply
        bot.drain()
        assert [row.state for row in bot.services.store.requests.open_requests()] == ["pending"]

    def test_a_resume_is_a_change_too_and_one_open_switch_request_per_entry_point(self, driver, slack, agora, bot):
        run(driver, slack, "resume live")
        (held,) = bot.services.store.requests.open_requests()
        busy = said(run(driver, slack, "pause live", user="UDAVE"))
        assert f"<@UALICE> already has an open resume request `{held.id}` for this entry point (since" in busy
        posted = self.posted_card(slack)
        assert "asks to *resume*" in text_of(posted) and "starts again" in text_of(posted)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")
        bot.drain()
        assert [c.json() for c in switch_calls(agora)] == [{"enabled": True}]

    def test_a_rejected_pause_sends_nothing(self, driver, slack, agora, bot) -> None:
        run(driver, slack, "pause live")
        posted = self.posted_card(slack)
        click(driver, posted, "UBOB", card.ACTION_REJECT)
        (opened,) = slack.wait_for("views.open")
        modal = {**opened.params["view"], "id": opened.params["_view_id"]}
        driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "event tonight"}}})
        notice = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
        assert "Rejected" in text_of(notice) and "event tonight" in text_of(notice)
        bot.drain()
        assert switch_calls(agora) == [] and bot.services.switches.book.known(APP_ID, "live") is None

    def test_an_approved_pause_agora_refuses_ends_failed_and_changes_nothing_known(self, driver, slack, agora, bot):
        run(driver, slack, "pause live")
        agora.inject(Fault(404, message="entry point not found", path="/auto"))
        click(driver, self.posted_card(slack), "UBOB", card.ACTION_APPROVE)
        notice = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
        assert "Failed" in text_of(notice) and "Agora has no entry point `live`" in text_of(notice)
        assert bot.services.switches.book.known(APP_ID, "live") is None


class TestInterrupted:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_a_switch_interrupted_while_applying_is_failed_as_unknown_not_resent(self, settings, slack, agora):
        first = start_bot(settings, fast_agora(settings))
        try:
            run(SlackDriver(first.url, SIGNING_SECRET, slack.response_url()), slack, "pause live")
            (row,) = first.services.store.requests.open_requests()
            # As if the process stopped after claiming it, the PATCH sent or not.
            requests = first.services.store.requests
            assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")
            assert requests.transition(row.id, "approved", "claim")
        finally:
            first.stop()
        second = start_bot(settings, fast_agora(settings))
        try:
            notice = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
            assert "Failed" in text_of(notice) and "whether it took effect is unknown" in text_of(notice)
            assert "Not sent again" in text_of(notice)
            driver = SlackDriver(second.url, SIGNING_SECRET, slack.response_url())
            line = switch_line(run(driver, slack, "get live na"))
            assert "unknown: a pause by <@UALICE>" in line and "was interrupted" in line
            second.drain()
            assert switch_calls(agora) == []
            assert second.services.store.requests.get(row.id).state == "failed"
        finally:
            second.stop()


def test_the_drift_watch_does_not_guess_about_the_switch(driver, slack, agora, bot) -> None:
    run(driver, slack, "get live na")  # remembered by the watch
    run(driver, slack, "pause live")
    agora.switches[(APP_ID, "live")] = True  # switched on again in Agora Console: recbot cannot see it
    before = bot.services.switches.book.known(APP_ID, "live")
    assert bot.services.drift.run() == []
    bot.drain()
    assert bot.services.store.drift.open_alerts() == []
    assert bot.services.switches.book.known(APP_ID, "live") == before
    assert [c.method for c in agora.calls()][-1] == "GET"  # the watch only reads configurations


def test_the_fleet_table_and_its_csv_say_what_recbot_knows_of_each_switch(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "ep2", "na", LIVE_CONFIG)
    agora.put(APP_ID, "ep3", "eu", LIVE_CONFIG)  # not configured in na: no switch line for it there
    run(driver, slack, "pause live")
    table = listing(driver, slack, bot)[-1]
    rows = {r["text"]["text"].split("`")[1]: r["text"]["text"] for r in rows_of(table)}
    assert "recording: paused by <@UALICE> on <!date^" in rows["live"] and "(as set by recbot)" in rows["live"]
    assert "recording: unknown (never set through recbot)" in rows["ep2"]
    assert "recording:" not in rows["ep3"]
    click_page(driver, bot, table, "Download CSV")
    (sent,) = [f for f in slack.files.values() if "content" in f]
    lines = sent["content"].splitlines()
    assert lines[0].endswith(",warnings,recording")
    (live,) = [line for line in lines if line.startswith("live,")]
    assert ",ok,,paused by UALICE on " in live and live.endswith(" UTC (as set by recbot)")
    assert next(line for line in lines if line.startswith("ep3,")).endswith(",no configuration,,")


def test_while_a_pause_is_in_flight_get_says_unknown_not_paused(driver, slack, agora, bot) -> None:
    agora.inject(Fault(lands=True, delay=1.0, path="/auto"))  # Agora takes it, and answers a second later
    assert driver.command("pause live").status_code == 200
    deadline = time.monotonic() + 10
    while not switch_calls(agora) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not agora.switch(APP_ID, "live")  # in effect at Agora; recbot has no answer yet
    line = switch_line(run(driver, slack, "get live na"))
    assert "unknown: a pause by <@UALICE> was being sent to Agora" in line and "no answer is recorded yet" in line
    bot.drain()
    assert "paused by <@UALICE>" in switch_line(run(driver, slack, "get live na"))
