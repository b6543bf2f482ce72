"""Gaps a mutation spot check found in the recording switch's tests (issue 21): what recbot
knows of a switch after a change that could not alter it, after a refused or unanswered
configuration, and after a restart; failed switches in the audit trail; names kept inert;
damaged rows and over-long names on the App Home and on the approval path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update

from bot.models import Target
from bot.store.schema import change_requests
from handlers.blocks import approval_card as card
from handlers.blocks import switch as switch_blocks
from tests.approval_helpers import NEW_ACCESS, NEW_SECRET, click, request_storage_change, text_of
from tests.conftest import APP_ID, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.switch_helpers import run, said, switch_calls, switch_line, task_calls
from tests.test_change_flow import state
from tests.test_drift import submitted
from tests.test_home import click_home, open_home, shown
from tests.test_switch_home import block, paused


def test_a_pause_sent_again_without_an_answer_leaves_it_known_as_paused(driver, slack, agora, bot) -> None:
    """recbot paused it; a second pause gets no answer: it is paused either way, and stays known so."""
    run(driver, slack, "pause live")
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    reply = said(run(driver, slack, "pause live"))
    assert "server error (504" in reply and "could not have changed anything" in reply
    assert len(switch_calls(agora)) == 5 and not agora.switch(APP_ID, "live")
    line = switch_line(run(driver, slack, "get live na"))
    assert "paused by <@UALICE>" in line and "(as set by recbot)" in line and "unknown" not in line


def test_the_answer_to_a_pause_sent_again_without_an_answer_does_not_call_it_unknown(driver, slack, agora) -> None:
    run(driver, slack, "pause live")
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    reply = said(run(driver, slack, "pause live"))
    assert "as recbot knows it: paused by <@UALICE>" in reply  # what the answer's own state line says...
    assert "unknown" not in reply  # ...and nothing in it contradicts that


class TestInterruptedWhenItCouldNotHaveChanged:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_a_pause_of_a_paused_entry_point_interrupted_by_a_stop_leaves_it_known_as_paused(
        self, settings, slack, agora
    ) -> None:
        first = start_bot(settings, fast_agora(settings))
        try:
            driver = SlackDriver(first.url, SIGNING_SECRET, slack.response_url())
            run(driver, slack, "pause live")
            posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]
            click(driver, posted, "UBOB", card.ACTION_APPROVE)
            slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")
            first.drain()
            run(driver, slack, "pause live", user="UDAVE")  # paused already; asked again
            (row,) = first.services.store.requests.open_requests()
            # As if the process stopped after claiming it, the PATCH sent or not: paused either way.
            requests = first.services.store.requests
            assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")
            assert requests.transition(row.id, "approved", "claim")
        finally:
            first.stop()
        second = start_bot(settings, fast_agora(settings))
        try:
            slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UDAVE")
            second.drain()
            assert second.services.store.requests.get(row.id).state == "failed"
            line = switch_line(run(SlackDriver(second.url, SIGNING_SECRET, slack.response_url()), slack, "get live na"))
            assert "paused by <@UALICE>" in line and "(as set by recbot)" in line and "unknown" not in line
            assert len(switch_calls(agora)) == 1  # the first pause; the interrupted one is not sent again
        finally:
            second.stop()


def test_a_pause_agora_did_not_answer_is_listed_on_the_home_with_resume(driver, slack, agora, bot) -> None:
    """recbot sent a pause and learnt nothing: the home lists it as unknown, so it can be resumed."""
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    run(driver, slack, "pause live")
    home = open_home(driver, slack, "UDAVE")
    line = paused(home, "live")
    assert "unknown" in shown(line) and "pause by <@UALICE>" in shown(line) and "no usable answer" in shown(line)
    assert f'"action_id": "{switch_blocks.ACTION_HOME_RESUME}"' in json.dumps(home)


@pytest.mark.parametrize("text", ["pause <!here", "stream <!here na <!channel on", "stream live na <!channel off"])
def test_a_name_with_an_unclosed_angle_bracket_stays_inert(driver, slack, agora, bot, text) -> None:
    """A `<` alone is escaped too: with a `>` further on in recbot's own words (a mention,
    a date) Slack would read everything between them as one control sequence."""
    reply = said(run(driver, slack, text))
    assert "&lt;!" in reply
    assert "<!here" not in slack.payload_text() and "<!channel" not in slack.payload_text()


@pytest.mark.parametrize(
    ("faults", "kind", "note"),
    [
        ([Fault(400, message="bad switch", path="/auto")], "failed", "Nothing was changed"),
        ([Fault(504, message="Gateway Timeout", path="/auto")] * 4, "unanswered", "may or may not have taken effect"),
    ],
)
def test_a_pause_that_failed_is_in_the_audit_trail_with_why(driver, slack, agora, bot, faults, kind, note) -> None:
    agora.inject(*faults)
    run(driver, slack, "pause live")
    (event,) = bot.services.store.audit.history(Target.every_region(APP_ID, "live"))
    assert (event.event, event.actor) == (kind, "UALICE") and note in event.detail["note"]


def test_a_stream_whose_names_are_too_long_for_a_button_is_listed_without_one(driver, slack, bot) -> None:
    """Each `<` is six characters in a button's value: three such names of 128 pass Slack's 2000."""
    hostile = "<" * 128
    bot.services.store.switches.add_stream_task(
        Target(app_id=hostile, entry_point=hostile, region="na"), hostile, "UALICE"
    )
    item = block(open_home(driver, slack, "UDAVE"), f"{switch_blocks.HOME_STREAM_PREFIX}0")
    assert "&lt;" in shown(item) and "accessory" not in item  # left to `/recording stream ... off`


def test_a_stop_button_of_a_damaged_stream_row_sends_nothing(driver, slack, agora, bot) -> None:
    """A row recbot cannot address (its region is no API region) shows, but its Stop calls nothing."""
    damaged = Target.model_construct(app_id=APP_ID, entry_point="live", region="xx")
    bot.services.store.switches.add_stream_task(damaged, "cam-1", "UALICE")
    item = block(open_home(driver, slack, "UDAVE"), f"{switch_blocks.HOME_STREAM_PREFIX}0")
    click_home(driver, slack, "UDAVE", item["accessory"])
    bot.drain()
    assert task_calls(agora) == [] and agora.calls() == []
    assert "not a genuine recbot button" in shown(slack.home("UDAVE"))


class TestADamagedSwitchRequest:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    @pytest.mark.parametrize("spec", ["[false]", '"pause"', '{"enabled": "false"}', "{}"])
    def test_it_is_failed_when_approved_and_nothing_is_sent(self, driver, slack, agora, bot, spec) -> None:
        run(driver, slack, "pause live")
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]
        with bot.services.store.engine.begin() as conn:  # as another recbot version, or damage, left it
            conn.execute(update(change_requests).values(spec=spec))
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        notice = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
        assert "Failed" in text_of(notice) and "its switch is not one this recbot can read" in text_of(notice)
        bot.drain()
        assert switch_calls(agora) == [] and bot.services.switches.book.known(APP_ID, "live") is None


def test_a_configuration_agora_refuses_leaves_the_switch_as_recbot_knew_it(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    agora.inject(Fault(400, message="bad config", method="PATCH"))
    assert "not applied" in submitted(driver, slack, state(mp4=True, hls=True))
    line = switch_line(run(driver, slack, "get live na"))
    assert "paused by <@UALICE>" in line and "(as set by recbot)" in line and not agora.switch(APP_ID, "live")


def test_a_configuration_agora_took_switches_recording_on_even_if_its_read_back_fails(driver, slack, agora, bot):
    """Agora answered the PATCH: setting a configuration switched recording on, whatever the read-back says."""
    run(driver, slack, "pause live")
    agora.after["PATCH"] = lambda _: agora.inject(*[Fault(500, method="GET")] * 4)  # the read-back, retried
    final = submitted(driver, slack, state(mp4=True, hls=True))
    del agora.after["PATCH"]
    assert "reading it back failed" in final and agora.switch(APP_ID, "live")
    assert "on (since a configuration was set by <@UALICE>" in switch_line(run(driver, slack, "get live na"))


def test_a_configuration_found_in_effect_after_a_restart_is_known_to_have_switched_recording_on(
    settings, slack, agora
) -> None:
    first = start_bot(settings, fast_agora(settings))
    try:
        driver = SlackDriver(first.url, SIGNING_SECRET, slack.response_url())
        run(driver, slack, "pause live")
        request_storage_change(driver, slack)
        first.drain()
        (row,) = first.services.store.requests.open_requests()
        # As if the process stopped after its PATCH landed, before it recorded anything.
        landed = agora.config(APP_ID, "live", "na")
        landed["storageConfig"] = {"vendor": 7, "region": 0, "bucket": "hw-bucket"}
        landed["storageConfig"] |= {"accessKey": NEW_ACCESS, "secretKey": NEW_SECRET}
        agora.put(APP_ID, "live", "na", landed)
        agora.switches[(APP_ID, "live")] = True
        requests = first.services.store.requests
        assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")
        assert requests.transition(row.id, "approved", "claim")
    finally:
        first.stop()
    second = start_bot(settings, fast_agora(settings))
    try:
        slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")
        second.drain()
        assert second.services.store.requests.get(row.id).state == "applied"
        line = switch_line(run(SlackDriver(second.url, SIGNING_SECRET, slack.response_url()), slack, "get live na"))
        assert "on (since a configuration was set by <@UALICE>" in line
    finally:
        second.stop()
