"""Typed text and Agora's words reach Slack's mrkdwn inert: a `<!channel>` typed into a command or
quoted from an Agora error never notifies anyone, and no link or mention is made of it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.agora import AgoraBadRequest, AgoraError, AgoraUnavailable
from bot.commands import UsageError, parse_command
from bot.models import Target
from bot.outcome import Outcome
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form, messages
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import FakeSlack
from tests.switch_helpers import run
from tests.test_change_flow import final_view_text, open_form, state

# Slack's control sequences: a broadcast or special mention, a user, a channel.
CONTROL = re.compile(r"<[!@#]")
INJECTIONS = ["<!channel>", "<!here>", "<!everyone>", "<@U0123ABC>", "<#C0123|general>", "<https://e.x|click>"]


def controls(payload: Any) -> list[str]:
    """Every Slack control sequence in what recbot sent, as Slack would parse it (JSON-decoded)."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            texts.append(node)

    walk(payload)
    return [found for text in texts for found in CONTROL.findall(text)]


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("get live <!channel>", "&lt;!channel&gt;"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("stream live na cam <!here>", "&lt;!here&gt;"),
        ("stream live <!here> cam on", "&lt;!here&gt;"),
        ("list <!channel>", "&lt;!channel&gt;"),
        ("set live <@U0123ABC>", "&lt;@U0123ABC&gt;"),
        ("history live <#C0123|general>", "&lt;#C0123|general&gt;"),
        ("get live na --<!here>", "--&lt;!here&gt;"),
        ("get live\u200b na", None),
    ],
)
def test_typed_text_in_a_refused_command_is_inert(driver, slack: FakeSlack, typed: str, shown: str | None) -> None:
    driver.command(typed)
    (reply,) = slack.wait_for("response_url")
    text = json.dumps(reply.params, ensure_ascii=False)
    assert controls(reply.params) == [], text
    assert shown is None or shown in text, text  # what was typed is shown, escaped


def test_an_agora_refusal_quoted_in_get_is_inert(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(status=400, message="<!channel> bad *request* <https://e.x|here>", method="GET"))
    driver.command("get live na")
    (reply,) = slack.wait_for("response_url")
    text = json.dumps(reply.params)
    assert "Agora refused the request as invalid" in text and "&lt;!channel&gt;" in text
    assert controls(reply.params) == [], text


def test_an_agora_refusal_quoted_in_list_is_inert(driver, slack: FakeSlack, agora: AgoraEmulator, bot) -> None:
    agora.inject(Fault(status=400, message="<!here> no such list", path="/fls/entry_points"))
    driver.command("list")
    bot.drain()
    replies = slack.of("response_url")
    assert "Agora refused the request as invalid" in json.dumps(replies[-1].params)
    assert [c for r in replies for c in controls(r.params)] == []


def test_an_agora_refusal_quoted_in_the_form_is_inert(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    agora.inject(Fault(status=400, message="<!channel> cannot read", method="GET"))
    driver.command("set live na")
    text = final_view_text(slack, count=1)
    assert "Agora refused the request as invalid" in text and controls(json.loads(text)) == [], text


typed_text = st.text(max_size=80) | st.lists(
    st.sampled_from([*INJECTIONS, "get", "set", "list", "stream", "live", "na", "--app", " ", "on", "&"]),
    max_size=8,
).map(" ".join)


@given(text=typed_text)
def test_no_typed_text_makes_a_control_sequence_in_a_refusal(text: str) -> None:
    try:
        parse_command(text, default_app=APP_ID, default_region="na")
    except UsageError as exc:
        assert controls(messages.usage(str(exc))) == []
        assert controls(messages.error(str(exc))) == []


@given(said=typed_text, error=st.sampled_from([AgoraBadRequest, AgoraUnavailable, AgoraError]))
def test_no_agora_message_makes_a_control_sequence(said: str, error: type[AgoraError]) -> None:
    shown = error(said).user_message()
    assert controls(messages.error(shown)) == []
    assert controls(edit_form.message_view(f":x: {shown}")) == []
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    outcome = edit_form.outcome_view(target, Outcome("failed", f"The change was not applied. {shown}"))
    assert controls(outcome) == []  # no broadcast, no person, no channel, no link
    assert "<http" not in json.dumps(outcome)


def test_a_mention_recbot_writes_itself_still_mentions() -> None:
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    said = "<@UALICE> already has an open request for this entry point. <!channel> <@U0123ABC>"
    busy = Outcome("refused", said, mentions=("UALICE",))
    shown = json.dumps(edit_form.outcome_view(target, busy))
    assert "<@UALICE> already has" in shown and "&lt;!channel&gt; &lt;@U0123ABC&gt;" in shown


QUOTED = "<!channel> look <@U0123ABC> <http://e.x|here>"
RAW = ("<!channel>", "<@U0123ABC>", "<http://e.x|here>")


def test_agora_words_quoted_after_a_direct_change_are_inert(driver, slack: FakeSlack, agora: AgoraEmulator) -> None:
    view = open_form(driver, slack)
    agora.inject(Fault(status=400, message=QUOTED, method="PATCH"))
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    shown = final_view_text(slack)
    assert "Agora refused the request as invalid: &lt;!channel&gt; look &lt;@U0123ABC&gt;" in shown
    assert [raw for raw in RAW if raw in slack.payload_text()] == []


def test_agora_words_quoted_after_an_approved_change_are_inert(driver, slack: FakeSlack, agora: AgoraEmulator, bot):
    posted = request_storage_change(driver, slack)
    agora.inject(Fault(status=400, message=QUOTED, method="PATCH"))
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    assert "Failed" in text_of(notice) and "&lt;!channel&gt; look &lt;@U0123ABC&gt;" in text_of(notice)
    bot.drain()
    assert [raw for raw in RAW if raw in slack.payload_text()] == []


@pytest.mark.parametrize(("command", "method"), [("pause live", "PATCH"), ("stream live na cam on", "PUT")])
def test_agora_words_quoted_after_a_switch_are_inert(
    driver, slack: FakeSlack, agora: AgoraEmulator, bot, command, method
):
    if method == "PUT":
        agora.switches[(APP_ID, "live")] = False  # a single stream is recorded only while the switch is off
    agora.inject(Fault(status=400, message=QUOTED, method=method))
    answer = run(driver, slack, command)  # the answer that replaces "Asking Agora…"
    assert "&lt;!channel&gt; look &lt;@U0123ABC&gt;" in text_of(answer)
    bot.drain()
    assert [raw for raw in RAW if raw in slack.payload_text()] == []
