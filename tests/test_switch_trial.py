"""What a new user's trial of pause, resume and single streams found (issue 21), each
driven through signed Slack requests against the two fakes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import parse_command
from handlers.blocks import approval_card as card
from handlers.blocks import home as home_blocks
from handlers.blocks import messages
from tests.approval_helpers import card_shown, click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.switch_helpers import run, said, task_calls
from tests.test_home import click_home, home_button, open_home


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def notice(slack, user: str) -> str:
    """The notice line at the top of `user`'s home, as Slack shows it now."""
    return block(slack.home(user), home_blocks.BLOCK_NOTICE)["text"]["text"]


def reject_on_card(driver, slack, bot, posted, user: str, reason: str) -> None:
    opened = len(slack.of("views.open"))
    click(driver, posted, user, card.ACTION_REJECT)
    modal = slack.wait_for("views.open", count=opened + 1)[opened]
    state = {card.BLOCK_REASON: {card.ACTION_REASON: {"value": reason}}}
    assert driver.submit(user, {**modal.params["view"], "id": modal.params["_view_id"]}, state).status_code == 200
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Rejected" in text_of(c))
    bot.drain()  # the homes it redraws are drawn before anyone clicks again


def test_the_home_notice_is_escaped_once_and_a_failure_is_marked_as_one(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    (row,) = bot.services.store.open_requests()
    stale = open_home(driver, slack, "UBOB")
    reject_on_card(driver, slack, bot, posted, "UCAROL", "not now")
    click_home(driver, slack, "UBOB", home_button(stale, row.id, home_blocks.ACTION_APPROVE))
    bot.drain()
    refused = notice(slack, "UBOB")
    assert refused.startswith(":warning: ") and "already rejected by <@UCAROL>" in refused

    run(driver, slack, "pause live")
    run(driver, slack, "stream live na a&b on")
    home = open_home(driver, slack, "UDAVE")
    click_home(driver, slack, "UDAVE", block(home, "home_stream_0")["accessory"])
    bot.drain()
    stopped = notice(slack, "UDAVE")
    assert stopped.startswith(":white_check_mark: ") and "stream `a&amp;b` of `live`" in stopped
    assert agora.tasks == set()


class TestThroughApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_a_hostile_entry_point_is_escaped_exactly_once_in_the_answer_card_and_dm(self, driver, slack, agora, bot):
        agora.put(APP_ID, "<!channel>", "na", LIVE_CONFIG)
        answer = said(run(driver, slack, "pause <!channel>"))
        assert "for all streams of `&lt;!channel&gt;` stops" in answer
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        dm = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0]
        bot.drain()
        assert not agora.switch(APP_ID, "<!channel>")
        for shown_now in (text_of(dm), card_shown(slack, posted)):
            assert "Paused: custom recording for all streams of `&lt;!channel&gt;`" in shown_now
            assert "&amp;lt;" not in shown_now
        assert "<!channel>" not in slack.payload_text() and "&amp;lt;" not in slack.payload_text()


def test_what_slack_escapes_in_a_command_is_read_as_typed(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    reply = said(run(driver, slack, "stream live na a&amp;b&lt;c&gt; on"))  # typed: a&b<c>, as Slack sends it
    (put,) = task_calls(agora)
    assert put.path.endswith("/tasks?id=a%26b%3Cc%3E") and agora.tasks == {(APP_ID, "live", "na", "a&b<c>")}
    assert "stream `a&amp;b&lt;c&gt;` of `live`" in reply and "&amp;amp;" not in reply
    assert "`/recording stream live na a&amp;b&lt;c&gt; off`" in reply  # the command to type, as it is typed


@given(name=st.text(alphabet="&<>;ltgamp!@#x", min_size=1, max_size=20))
def test_every_verb_reads_slacks_escaped_text_as_typed(name: str) -> None:
    sent = messages.escape(name)  # what Slack puts in `text` for what was typed
    for text, read in (
        (f"stream live na {sent} on", lambda c: c.stream),
        (f"pause {sent}", lambda c: c.target.entry_point),
        (f"get {sent} na", lambda c: c.target.entry_point),
        (f"list na --app {sent}", lambda c: c.app_id),
    ):
        assert read(parse_command(text, default_app=APP_ID, default_region="na")) == name
