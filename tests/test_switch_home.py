"""The App Home's paused entry points and single streams, with Resume and Stop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.models import FieldChange, Target
from bot.store.values import utcnow
from handlers.blocks import switch as switch_blocks
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.switch_helpers import run, switch_calls, task_calls
from tests.test_home import click_home, open_home, published_to, shown


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def paused(view: dict[str, Any], entry_point: str) -> dict[str, Any]:
    """The home's line of a paused entry point."""
    return next(
        b
        for b in view["blocks"]
        if b.get("block_id", "").startswith(switch_blocks.HOME_PAUSED_PREFIX)
        and b["text"]["text"].startswith(f"`{entry_point}` ")
    )


def paused_and_recording(driver, slack, agora) -> None:
    agora.put(APP_ID, "ep2", "na", LIVE_CONFIG)
    run(driver, slack, "pause live")
    run(driver, slack, "pause ep2")
    run(driver, slack, "stream live na cam-1 on")


def test_everyone_sees_paused_entry_points_and_streams_with_resume_and_stop(driver, slack, agora, bot) -> None:
    empty = open_home(driver, slack, "UDAVE")
    assert "recbot has paused no entry point, and records no single stream" in shown(empty)
    paused_and_recording(driver, slack, agora)
    bot.drain()
    home = slack.home("UDAVE")  # redrawn: what it shows changed
    assert [b["block_id"] for b in home["blocks"] if "home_paused_" in b.get("block_id", "")] == [
        "home_paused_0",
        "home_paused_1",
    ]
    first = paused(home, "live")
    assert "`live` (app `APPID01`): paused by <@UALICE>" in shown(first) and "(as set by recbot)" in shown(first)
    assert first["accessory"]["action_id"] == switch_blocks.ACTION_HOME_RESUME
    assert first["accessory"]["value"] == switch_blocks.switch_value(
        Target.every_region(APP_ID, "live"), bot.services.sealer
    )
    stream = block(home, "home_stream_0")
    assert "Stream `cam-1` of `live` (na, app `APPID01`)" in shown(stream) and "started by <@UALICE>" in shown(stream)
    assert stream["accessory"]["action_id"] == switch_blocks.ACTION_HOME_STOP


def test_resume_and_stop_from_the_home_are_sent_once_and_redraw_it(driver, slack, agora, bot) -> None:
    paused_and_recording(driver, slack, agora)
    home = open_home(driver, slack, "UDAVE")
    click_home(driver, slack, "UDAVE", block(home, "home_stream_0")["accessory"])
    bot.drain()
    assert [c.method for c in task_calls(agora)] == ["PUT", "DELETE"] and agora.tasks == set()
    home = slack.home("UDAVE")
    assert "Stopped: Agora no longer records stream `cam-1`" in shown(home) and "home_stream_0" not in shown(home)
    click_home(driver, slack, "UDAVE", paused(home, "live")["accessory"])
    bot.drain()
    assert [c.json() for c in switch_calls(agora)][-1] == {"enabled": True} and agora.switch(APP_ID, "live")
    home = slack.home("UDAVE")
    assert "Resumed" in shown(home) and "`live` (app" not in shown(home) and "`ep2` (app" in shown(home)
    known = bot.services.switches.book.known(APP_ID, "live")
    assert (known.enabled, known.actor) == (True, "UDAVE")


def test_another_viewers_home_is_redrawn_when_someone_pauses(driver, slack, agora, bot) -> None:
    open_home(driver, slack, "UBOB")
    before = published_to(slack, "UBOB")
    run(driver, slack, "pause live")
    bot.drain()
    assert published_to(slack, "UBOB") > before and "home_paused_0" in shown(slack.home("UBOB"))


def test_forged_home_buttons_do_nothing(driver, slack, agora, bot) -> None:
    paused_and_recording(driver, slack, agora)
    home = open_home(driver, slack, "UDAVE")
    calls = len(agora.calls())
    resume = paused(home, "live")["accessory"]
    stop = block(home, "home_stream_0")["accessory"]
    for forged in ({**resume, "value": resume["value"][:-2] + "00"}, {**stop, "value": resume["value"]}):
        click_home(driver, slack, "UDAVE", forged)
        bot.drain()
        assert "not a genuine recbot button" in shown(slack.home("UDAVE"))
    assert len(agora.calls()) == calls


class TestWhoMay:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUESTERS": "UALICE"}

    def test_only_requesters_may_resume_or_stop(self, driver, slack, agora, bot) -> None:
        paused_and_recording(driver, slack, agora)
        home = open_home(driver, slack, "UMALLORY")
        calls = len(agora.calls())
        for button in ("home_paused_0", "home_stream_0"):
            click_home(driver, slack, "UMALLORY", block(home, button)["accessory"])
            bot.drain()
            assert "not in RECBOT_REQUESTERS" in shown(slack.home("UMALLORY"))
        assert len(agora.calls()) == calls


class TestThroughApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    @pytest.mark.parametrize("card_posted", [True, False])
    def test_resume_from_the_home_is_a_request(self, driver, slack, agora, bot, card_posted) -> None:
        # As an earlier, approved pause left it.
        with bot.services.switches.book.changing(APP_ID, "live", False, "switch", "UALICE") as change:
            change.landed()
        if not card_posted:
            slack.refused_channels["CAPPROVE"] = "channel_not_found"
        home = open_home(driver, slack, "UDAVE")
        click_home(driver, slack, "UDAVE", block(home, "home_paused_0")["accessory"])
        bot.drain()
        assert "needs a second person's approval" in shown(slack.home("UDAVE")) and switch_calls(agora) == []
        notice = shown(slack.home("UDAVE"))
        assert ("sent to the approvers" in notice) is card_posted
        assert ("no approval card could be posted yet" in notice) is not card_posted
        if not card_posted:
            return
        (card,) = slack.of("chat.postMessage")
        assert card.params["channel"] == "CAPPROVE" and "asks to *resume*" in shown(card.params)


@pytest.mark.parametrize("known", [True, False])
def test_the_home_stays_within_slacks_block_limit(driver, slack, agora, bot, known) -> None:
    """Paused entry points take a block each; unknown ones two (Pause and Resume), leaving room for fewer streams."""
    store = bot.services.store
    for i in range(30):  # more than the home shows of each part
        target = Target(app_id=APP_ID, entry_point=f"ep{i:02}", region="na")
        store.requests.create(
            request_id=f"r{i:02}",
            target=target,
            requester="UALICE",
            expires_at=utcnow() + timedelta(hours=1),
            base_digest="d" * 32,
            sealed_patch=b"sealed",
            changes=[FieldChange("HLS recording", "off", "on")],
        )
        store.switches.add_stream_task(target, f"cam-{i}", "UALICE", answered=known)
        with bot.services.switches.book.changing(APP_ID, f"ep{i:02}", False, "switch", "UALICE") as change:
            if known:
                change.landed()
    home = open_home(driver, slack, "UBOB")  # an approver: the longest home; the fake checks the limits
    assert 90 < len(home["blocks"]) <= 100
    more = block(home, switch_blocks.BLOCK_HOME_MORE)["elements"][0]["text"]  # the rest, by name
    streams = 25 if known else 29  # five unknown switches take ten blocks: one stream fits
    assert more.startswith("…and 25 more entry points: `ep05` (app `APPID01`), `ep06`") and "`ep29`" in more
    assert f"; and {streams} more single streams: `cam-{streams - 1}` of `ep{streams - 1}` (na" in more
    assert "`cam-0` of `ep00`" in more and len(more) < 3000


def test_hostile_names_are_inert_on_the_home_and_its_buttons_still_work(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "<!here>", "na", LIVE_CONFIG)
    open_home(driver, slack, "UDAVE")
    run(driver, slack, "pause <!here>")
    run(driver, slack, "stream <!here> na <!channel>&x on")
    bot.drain()
    home = slack.home("UDAVE")
    assert "&lt;!here&gt;" in shown(home) and "&lt;!channel&gt;&amp;x" in shown(home)
    assert "<!here>" not in slack.payload_text() and "<!channel>" not in slack.payload_text()
    click_home(driver, slack, "UDAVE", block(home, "home_stream_0")["accessory"])
    bot.drain()
    (delete,) = [c for c in task_calls(agora) if c.method == "DELETE"]
    assert delete.path.endswith("/entry_points/%3C%21here%3E/admin/record/custom/regions/na/tasks/%3C%21channel%3E%26x")
    assert delete.status == 200 and agora.tasks == set()
