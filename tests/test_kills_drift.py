"""Gaps a mutation spot check found in the drift watch's tests (issue 16). Passes run here
only when a test runs one (RECBOT_DRIFT_INTERVAL_SECONDS is 0 in these settings), some of
them from the Agora emulator while it serves one of recbot's calls: the window is forced,
not waited for."""

from __future__ import annotations

import copy
from typing import Any

from handlers.blocks import approval_card
from handlers.blocks import drift_card as card
from handlers.notify import Notifier
from recbot.app import watch_pass
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.fakes.agora import Fault
from tests.test_change_flow import state
from tests.test_drift import OUTSIDE_CHANGE, alerts, click_alert, submitted


def remembered(driver, slack, bot) -> Notifier:
    """A `/recording get` makes recbot remember live (na); the notifier passes announce with."""
    driver.command("get live na")
    slack.wait_for("response_url")
    bot.drain()
    return Notifier(bot.app.client, bot.services)


def test_a_pass_that_saw_recbots_change_land_keeps_it_when_the_read_back_fails(driver, slack, agora, bot) -> None:
    """The pass runs while Agora serves recbot's PATCH (the change is live and expected); then
    the read-back fails. What that pass saw is recbot's own change: no later pass calls it drift."""
    notifier = remembered(driver, slack, bot)

    def pass_then_fail_the_read_back(_: object) -> None:
        watch_pass(bot.services, notifier)
        agora.inject(*[Fault(500, method="GET")] * 4)  # the read-back and its three retries

    agora.after["PATCH"] = pass_then_fail_the_read_back
    final = submitted(driver, slack, state(mp4=True, hls=True))
    del agora.after["PATCH"]
    assert "reading it back failed" in final and agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": True}
    for _ in range(2):
        watch_pass(bot.services, notifier)
    bot.drain()
    assert alerts(slack) == [] and bot.services.store.drift.open_alerts() == []
    (target,) = bot.services.store.drift.observed_targets()
    assert "changed_outside" not in [e.event for e in bot.services.store.audit.history(target)]


def test_an_outside_change_that_an_approved_change_overwrote_while_applying_raises_no_alert(
    driver, slack, agora, bot
) -> None:
    """While an approved request is being applied, a pass sees an outside change that the
    request then overwrites: the pass leaves it to the next one, which finds recbot's change."""
    notifier = remembered(driver, slack, bot)
    posted = request_storage_change(driver, slack)
    bot.drain()
    seen: list[str] = []

    def outside_change_and_a_pass_while_applying(_: object) -> None:
        if seen or [r.state for r in bot.services.store.requests.open_requests()] != ["applying"]:
            return
        seen.append("pass")  # first: the pass's own read comes back through here
        outside: dict[str, Any] = copy.deepcopy(LIVE_CONFIG)
        outside["storageConfig"]["bucket"] = "console-bucket"  # in Console, just after recbot read live
        agora.put(APP_ID, "live", "na", outside)
        watch_pass(bot.services, notifier)

    agora.after["GET"] = outside_change_and_a_pass_while_applying
    click(driver, posted, "UBOB", approval_card.ACTION_APPROVE)
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    bot.drain()
    del agora.after["GET"]
    assert seen == ["pass"]
    (row,) = bot.services.store.requests.in_state("applied")
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["bucket"] == "hw-bucket"
    for _ in range(2):
        watch_pass(bot.services, notifier)
    bot.drain()
    assert alerts(slack) == [] and bot.services.store.drift.open_alerts() == []
    assert "changed_outside" not in [e.event for e in bot.services.store.audit.history(row.target)]


def test_an_alert_card_is_written_again_only_when_the_alert_moved(driver, slack, agora, bot) -> None:
    notifier = remembered(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    watch_pass(bot.services, notifier)
    bot.drain()
    (posted,) = alerts(slack)
    assert slack.of("chat.update") == []  # posted as the alert is: nothing to write again
    watch_pass(bot.services, notifier)  # the same change seen again: the alert did not move
    bot.drain()
    assert slack.of("chat.update") == []
    click_alert(driver, posted, "UBOB", card.ACTION_ACKNOWLEDGE)
    bot.drain()
    (update,) = slack.of("chat.update")  # one move, one write
    assert update.params["ts"] == posted.params["_ts"] and "Acknowledged" in text_of(update)
