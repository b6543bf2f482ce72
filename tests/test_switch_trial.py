"""What a new user's trial of pause, resume and single streams found (issue 21), each
driven through signed Slack requests against the two fakes."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from bot.agora import AgoraUnavailable
from bot.commands import parse_command
from bot.models import Target
from bot.seal import Sealer
from bot.store.values import StreamTaskRow, utcnow
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from handlers.blocks import home as home_blocks
from handlers.blocks import messages
from handlers.blocks import switch as switch_blocks
from tests.approval_helpers import card_shown, click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG
from tests.fakes.agora import SWITCH_ON_REFUSAL, Fault
from tests.fakes.slack import Call
from tests.switch_helpers import (
    answers,
    get_switch_buttons,
    interim,
    run,
    said,
    switch_calls,
    switch_line,
    task_calls,
)
from tests.test_change_flow import final_view_text, open_form, state
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
    (row,) = bot.services.store.requests.open_requests()
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


def test_a_stream_refused_while_recbot_believes_it_paused_says_its_view_may_be_out_of_date(driver, slack, agora, bot):
    run(driver, slack, "pause live")
    agora.switches[(APP_ID, "live")] = True  # switched on again in Agora Console: recbot cannot see it
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert SWITCH_ON_REFUSAL in reply and "paused, but that view may be out of date" in reply
    assert "Pause it again with `/recording pause live`, then run this again" in reply
    assert agora.tasks == set()


def test_a_rate_limited_pause_says_nothing_was_changed_once(driver, slack, agora, bot) -> None:
    agora.inject(*[Fault(429, {"Retry-After": "0"}, "Too Many Requests", path="/auto")] * 4)
    answer = block(run(driver, slack, "pause live").params, switch_blocks.BLOCK_OUTCOME)["text"]["text"]
    assert answer.count("Nothing was changed") == 1 and "rate-limiting" in answer


@pytest.mark.parametrize(("verb", "path"), [("pause live", "/auto"), ("stream live na cam-1 on", "/tasks")])
def test_a_server_error_is_called_one_not_silence(driver, slack, agora, bot, verb, path) -> None:
    if verb.startswith("stream"):
        run(driver, slack, "pause live")
    agora.inject(*[Fault(500, message="Internal Server Error", path=path)] * 4)
    reply = said(run(driver, slack, verb))
    assert "Agora answered with a server error (500: Internal Server Error)" in reply
    assert "did not answer" not in reply and "may or may not have taken effect" in reply


def test_no_answer_at_all_is_said_as_such() -> None:
    from bot.applying import no_answer

    assert no_answer(AgoraUnavailable("timed out")) == "Agora did not answer (timed out)"
    assert (
        no_answer(AgoraUnavailable("answer was not JSON")) == "Agora's answer could not be read (answer was not JSON)"
    )
    assert no_answer(AgoraUnavailable("Bad Gateway", 502)) == "Agora answered with a server error (502: Bad Gateway)"


def test_one_word_too_many_says_what_pause_takes(driver, slack, agora, bot) -> None:
    reply = said(run(driver, slack, "pause live extra"))
    assert "`/recording pause` takes one entry point, and got 2 words (live extra)" in reply
    assert "`/recording pause &lt;entry_point&gt; [--app APPID]`" in reply


def test_the_answers_name_the_app_given_with_app(driver, slack, agora, bot) -> None:
    agora.put("OTHERAPP", "live", "eu", LIVE_CONFIG)
    assert "all streams of `live` (app `OTHERAPP`) stops" in said(run(driver, slack, "pause live --app OTHERAPP"))
    reply = said(run(driver, slack, "stream live eu cam-1 on --app OTHERAPP"))
    assert "records stream `cam-1` of `live` (eu, app `OTHERAPP`)" in reply
    assert "(app `" not in said(run(driver, slack, "pause live"))  # the default app goes unsaid


def test_backticks_cannot_break_a_code_span(driver, slack, agora, bot) -> None:
    refused = said(run(driver, slack, "stream live na ca`m on"))
    assert "Stream name must not contain a backtick" in refused and "Usage" in refused
    agora.put(APP_ID, "a`b", "na", LIVE_CONFIG)  # as Agora holds it
    reply = said(run(driver, slack, "pause a`b"))
    assert "all streams of `a\u02cbb` stops" in reply and "`/recording resume a\u02cbb`" in reply
    assert not agora.switch(APP_ID, "a`b") and task_calls(agora) == []


def test_markup_in_names_stays_text_on_the_home(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "_a*b_", "na", LIVE_CONFIG)
    run(driver, slack, "pause _a*b_")
    run(driver, slack, "stream _a*b_ na *cam_1* on")
    home = open_home(driver, slack, "UDAVE")
    lines = [
        b["text"]["text"] for b in home["blocks"] if b.get("block_id", "").startswith(("home_paused_", "home_stream_"))
    ]
    assert lines[0].startswith("`_a*b_` (app `APPID01`): paused by <@UALICE>")
    assert lines[1].startswith("Stream `*cam_1*` of `_a*b_` (na, app `APPID01`)")
    latest = block(home, home_blocks.BLOCK_LATEST)["text"]["text"]
    assert "• `_a*b_` (na, app `APPID01`)" in latest and "*_a*b_" not in latest


class TestEveryChangeApproved:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_a_request_for_another_app_names_it(self, driver, slack, agora, bot) -> None:
        agora.put("OTHERAPP", "live", "eu", LIVE_CONFIG)
        reply = said(run(driver, slack, "pause live --app OTHERAPP"))
        assert "once approved, custom recording for all streams of `live` (app `OTHERAPP`) stops" in reply

    def test_the_pause_button_says_approval_comes_first(self, driver, slack, agora, bot) -> None:
        confirm = get_switch_buttons(run(driver, slack, "get live na"))[switch_blocks.ACTION_PAUSE]["confirm"]
        assert "stops until resumed" in confirm["text"]["text"]
        assert "needs a second person's approval (RECBOT_APPROVAL_FOR=all)" in confirm["text"]["text"]

    def test_a_failed_apply_says_who_approved_not_who_failed(self, driver, slack, agora, bot) -> None:
        run(driver, slack, "pause live")
        agora.inject(Fault(404, message="entry point not found", path="/auto"))
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        dm = text_of(slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")[0])
        bot.drain()
        for shown_now in (dm, card_shown(slack, posted)):
            assert "Approved by <@UBOB>; *Failed*" in shown_now and "*Failed* by" not in shown_now
            assert "Nothing was changed: Agora has no entry point `live`" in shown_now

    def test_get_says_which_request_waits_and_a_second_one_is_told_its_kind_and_id(self, driver, slack, agora, bot):
        run(driver, slack, "pause live")
        (row,) = bot.services.store.requests.open_requests()
        line = switch_line(run(driver, slack, "get live na", user="UDAVE"))
        assert f":lock: A pause request `{row.id}` from <@UALICE> is waiting for approval (expires <!date^" in line
        busy = said(run(driver, slack, "resume live", user="UDAVE"))
        assert f"<@UALICE> already has an open pause request `{row.id}` for this entry point (since" in busy
        agora.put(APP_ID, "live", "eu", LIVE_CONFIG)
        assert f"`{row.id}`" in switch_line(run(driver, slack, "get live eu"))  # the switch is for every region

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("pause live --app NOPE", "No request was opened: Agora has no project with App ID `NOPE`"),
            ("resume nosuch", "No request was opened: Agora has no entry point `nosuch` in App ID `APPID01`"),
        ],
    )
    def test_an_unknown_app_or_entry_point_is_refused_before_any_request(self, driver, slack, agora, bot, text, words):
        agora.unknown_apps.add("NOPE")
        reply = said(run(driver, slack, text))
        assert words in reply
        bot.drain()
        assert bot.services.store.requests.open_requests() == [] and switch_calls(agora) == []
        assert [c.params["channel"] for c in slack.of("chat.postMessage")] == []  # no card
        assert [c.method for c in agora.calls()] == ["GET"]  # the list, and nothing else


def test_history_and_the_home_show_a_failure_as_one_with_its_reason(driver, slack, agora, bot) -> None:
    agora.inject(Fault(404, message="entry point not found", path="/auto"))
    run(driver, slack, "pause live")
    agora.inject(*[Fault(503, message="Service Unavailable", path="/auto")] * 4)
    run(driver, slack, "resume live")
    run(driver, slack, "stream live na cam-1 on")  # refused by Agora: the switch is on
    refused = (
        "*failed* by <@UALICE> (asked: Custom recording, every stream: unknown → paused): "
        "Nothing was changed: Agora has no entry point `live` in App ID `APPID01`."
    )
    unknown = (
        "*no usable answer from Agora: it may or may not have taken effect* by <@UALICE> "
        "(asked: Custom recording, every stream: unknown → on): "
        "Agora answered with a server error (503: Service Unavailable) to the resume"
    )
    stream = "(asked: Stream cam-1: not recorded by a task → recorded by a task): Agora refused to record stream"
    history = said(run(driver, slack, "history live na"))
    latest = block(open_home(driver, slack, "UDAVE"), home_blocks.BLOCK_LATEST)["text"]["text"]
    for shown_now in (history, latest):
        assert refused in shown_now and unknown in shown_now and stream in shown_now


def test_a_stream_task_whose_answer_was_lost_is_listed_as_unknown_with_stop(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/tasks")] * 4)
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert "recbot lists it as unknown" in reply and "`/recording stream live na cam-1 off`" in reply
    home = open_home(driver, slack, "UDAVE")
    item = block(home, "home_stream_0")
    assert "Stream `cam-1` of `live` (na, app `APPID01`): unknown (no answer from Agora" in item["text"]["text"]
    assert "recorded by a task since" not in item["text"]["text"]
    assert item["accessory"]["action_id"] == switch_blocks.ACTION_HOME_STOP
    agora.tasks.add((APP_ID, "live", "na", "cam-1"))  # Agora had taken it after all
    click_home(driver, slack, "UDAVE", item["accessory"])
    bot.drain()
    assert agora.tasks == set() and bot.services.store.switches.stream_tasks() == []
    assert [c.method for c in task_calls(agora)][-1] == "DELETE"


def test_every_stream_task_can_be_seen_newest_first_and_the_home_names_what_it_leaves_out(
    driver, slack, agora, bot
) -> None:
    agora.put(APP_ID, "live", "eu", LIVE_CONFIG)
    run(driver, slack, "pause live")
    for i in range(7):
        run(driver, slack, f"stream live na cam-{i} on")
    run(driver, slack, "stream live eu other on")
    reply = run(driver, slack, "get live na")
    listed = "\n".join(
        b["text"]["text"] for b in reply.params["blocks"] if b.get("block_id", "").startswith("summary_stream_tasks")
    )
    for i in range(7):
        assert f"• `cam-{i}`: recorded by a task since <!date^" in listed
        assert f"Stop: `/recording stream live na cam-{i} off`" in listed
    assert listed.index("`cam-6`") < listed.index("`cam-0`") and "`other`" not in listed
    home = open_home(driver, slack, "UDAVE")
    streams = [b["text"]["text"] for b in home["blocks"] if b.get("block_id", "").startswith("home_stream_")]
    assert [line.split("`")[1] for line in streams] == ["other", "cam-6", "cam-5", "cam-4", "cam-3"]
    more = block(home, switch_blocks.BLOCK_HOME_MORE)["elements"][0]["text"]
    assert "3 more single streams: `cam-2` of `live` (na, app `APPID01`), `cam-1` of `live`" in more
    assert (
        "`cam-0` of `live` (na, app `APPID01`)" in more
        and "`/recording get &lt;entry_point&gt; &lt;region&gt;`" in more
    )


def test_the_homes_more_line_counts_what_it_cannot_name() -> None:
    long = "x" * 128
    tasks = [
        StreamTaskRow(Target(app_id=APP_ID, entry_point=long, region="na"), f"{long[:120]}{i:03}", "UALICE", utcnow())
        for i in range(40)
    ]
    blocks = switch_blocks.home_blocks([], tasks, Sealer(Fernet.generate_key()))
    more = block({"blocks": blocks}, switch_blocks.BLOCK_HOME_MORE)["elements"][0]["text"]
    assert more.startswith("…and 35 more single streams: ") and " others (`/recording get" in more
    assert len(more) <= 3000


def test_a_switch_left_unknown_stays_on_the_home_with_pause_and_resume(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    agora.inject(*[Fault(502, message="Bad Gateway", path="/auto")] * 4)
    run(driver, slack, "resume live")  # a server error: the switch is unknown now
    home = open_home(driver, slack, "UDAVE")
    line = block(home, "home_paused_0")["text"]["text"]
    assert line.startswith("`live` (app `APPID01`): unknown (last asked: resume by <@UALICE> on <!date^")
    assert line.endswith("; no usable answer from Agora)")
    buttons = {e["action_id"]: e for e in block(home, "home_paused_0_buttons")["elements"]}
    assert set(buttons) == {switch_blocks.ACTION_HOME_PAUSE, switch_blocks.ACTION_HOME_RESUME}
    assert "stops until resumed" in buttons[switch_blocks.ACTION_HOME_PAUSE]["confirm"]["text"]["text"]
    click_home(driver, slack, "UDAVE", buttons[switch_blocks.ACTION_HOME_PAUSE])
    bot.drain()
    assert [c.json() for c in switch_calls(agora)][-1] == {"enabled": False} and not agora.switch(APP_ID, "live")
    paused = block(slack.home("UDAVE"), "home_paused_0")
    assert "paused by <@UDAVE>" in paused["text"]["text"]
    assert paused["accessory"]["action_id"] == switch_blocks.ACTION_HOME_RESUME
    assert notice(slack, "UDAVE").startswith(":white_check_mark: Paused")


def answered_while_agora_holds(driver, slack, agora, text: str, method: str) -> tuple[list[Call], Call]:
    """Send `text` while Agora holds its answer to the `method` call until Slack has an interim answer;
    the interim answers seen meanwhile, and the final one."""
    seen: list[Call] = []
    agora.after[method] = lambda _received: seen.extend(slack.wait_for("response_url", where=interim, timeout=5))
    assert driver.command(text).status_code == 200
    final = answers(slack, 1)[0]
    return seen, final


@pytest.mark.parametrize(
    ("text", "method", "words"),
    [
        ("pause live", "PATCH", "Asking Agora to pause custom recording of `live`…"),
        ("stream live na cam-1 off", "DELETE", "Asking Agora to stop recording stream `cam-1` of `live` (na)…"),
    ],
)
def test_a_slow_agora_gets_an_interim_answer_then_the_result_replaces_it(
    driver, slack, agora, bot, text, method, words
):
    seen, final = answered_while_agora_holds(driver, slack, agora, text, method)
    assert seen and words in said(seen[0]) and "up to about 20 seconds" in said(seen[0])
    assert final.params["replace_original"] is True and not interim(final)
    assert [interim(c) for c in slack.of("response_url")] == [True, False]


class TestInterimUnderApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_the_check_before_a_request_says_so(self, driver, slack, agora, bot) -> None:
        seen, final = answered_while_agora_holds(driver, slack, agora, "resume live", "GET")
        assert seen and "Checking with Agora that `live` exists, before a resume request is opened…" in said(seen[0])
        assert "needs a second person's approval" in said(final) and final.params["replace_original"] is True


RESUMES = ":warning: Applying this resumes custom recording of every stream of `live`, paused by <@UALICE> on <!date^"


def test_a_configuration_while_paused_is_warned_of_on_the_form_and_tells_who_paused(driver, slack, agora, bot):
    run(driver, slack, "pause live")
    view = open_form(driver, slack, user="UBOB")
    assert block(view, form.BLOCK_CURRENT)["elements"][1]["text"].startswith(RESUMES)
    updates = len(slack.of("views.update"))
    vendor = {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": "5"}}
    driver.block_action("UBOB", vendor, view={**view, "state": {"values": state(change=True, vendor=5)}})
    redrawn = slack.wait_for("views.update", count=updates + 1)[updates].params["view"]
    assert block(redrawn, form.BLOCK_CURRENT)["elements"][1]["text"].startswith(RESUMES)  # still there
    driver.submit("UBOB", view, state(mp4=True, hls=True))  # formats only: applied at once
    dm = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")[0].params["text"]
    assert dm.startswith("Custom recording of every stream of `live` (app `APPID01`) is on again: a configuration")
    assert "requested by <@UBOB> was applied on <!date^" in dm and "You paused it on <!date^" in dm
    assert dm.endswith("To pause it again: `/recording pause live`.")
    assert agora.switch(APP_ID, "live") and len(switch_calls(agora)) == 1


def test_no_warning_and_no_message_where_recbot_knows_of_no_pause(driver, slack, agora, bot) -> None:
    run(driver, slack, "resume live")
    view = open_form(driver, slack, user="UBOB")
    assert len(block(view, form.BLOCK_CURRENT)["elements"]) == 1
    driver.submit("UBOB", view, state(mp4=True, hls=True))
    assert "Change applied" in final_view_text(slack)
    bot.drain()
    assert [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"] == []


class TestConfigurationWhilePausedApproved:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_the_card_says_it_resumes_and_whoever_paused_is_told_once_applied(self, driver, slack, agora, bot):
        with bot.services.switches.book.changing(APP_ID, "live", False, "switch", "UALICE") as change:
            change.landed()  # as an earlier, approved pause left it
        view = open_form(driver, slack, user="UDAVE")
        driver.submit("UDAVE", view, state(mp4=True, hls=True))
        posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[-1]
        assert block(posted.params, card.BLOCK_RESUMES)["elements"][0]["text"].startswith(RESUMES)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        dm = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")[0].params["text"]
        assert "is on again: a configuration change requested by <@UDAVE> was applied" in dm
        bot.drain()
        assert agora.switch(APP_ID, "live") and card.BLOCK_RESUMES not in card_shown(slack, posted)
