"""A listener that fails in a way nobody planned for: the person is answered where they
acted (the command's reply, the modal, the card's reply, their App Home) with a reference,
told honestly whether anything was sent to Agora, and the log names where it failed (file,
line, function) under that reference, never the exception's message, which may hold a secret."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from bot.logs import failure_frames
from handlers.blocks import approval_card as card
from handlers.blocks import home as home_blocks
from tests.approval_helpers import click, request_storage_change, text_of
from tests.test_change_flow import final_view_text, open_form, state
from tests.test_home import click_home, home_button, open_home, shown

# What a bug's message could carry: a key someone typed. Not known to any redaction filter.
SECRET = "hunter2-typed-storage-key-77"
NOT_SENT = "Something went wrong on recbot's side; nothing was sent to Agora (ref "
SENT = "Something went wrong on recbot's side after a change was sent to Agora, so whether it is in effect is unknown"
REF = re.compile(r"\(ref ([0-9a-f]{12})\)")


def bug(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(f"a bug holding {SECRET}")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it, tracebacks included."""
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


def assert_logged_where(caplog: pytest.LogCaptureFixture, said: str, *frames: str) -> None:
    """The failure is logged under the reference the person was given, with its frames, not its message."""
    (ref,) = REF.findall(said)
    (record,) = [r for r in caplog.records if r.name == "handlers.errors" and ref in r.getMessage()]
    message = record.getMessage()
    assert "RuntimeError" in message and 'File "' in message and record.exc_info is None
    for frame in frames:
        assert frame in message, message
    assert SECRET not in logged(caplog) and "a bug holding" not in logged(caplog)


def test_a_command_that_fails_is_answered_to_the_person_alone(driver, slack, bot, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(bot.services, "read_config", bug)
    driver.command("get live na")
    (answer,) = slack.wait_for("response_url")
    said = text_of(answer)
    assert NOT_SENT in said and answer.params["response_type"] == "ephemeral" and SECRET not in said
    bot.drain()
    assert_logged_where(caplog, said, "handlers/commands.py", "in show_config", "tests/test_listener_errors.py")


def test_a_submitted_form_that_fails_after_its_ack_says_so_in_the_modal(driver, slack, bot, monkeypatch, caplog):
    monkeypatch.setattr(bot.services.changes, "submit", bug)
    view = open_form(driver, slack)
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    said = final_view_text(slack, count=2)  # the form, then (after "Working…" in the ack) what went wrong
    assert NOT_SENT in said and SECRET not in said
    bot.drain()
    assert_logged_where(caplog, said, "handlers/views.py", "in edit_submitted")


def test_a_modal_submission_that_fails_before_its_ack_is_answered_in_it(driver, slack, bot, monkeypatch, caplog):
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UBOB", card.ACTION_REJECT)
    (opened,) = slack.wait_for("views.open", count=2)[1:]
    monkeypatch.setattr(bot.services.approvals, "reject", bug)
    reason = {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "not this bucket"}}}
    answer = driver.submit("UBOB", {**opened.params["view"], "id": opened.params["_view_id"]}, reason)
    assert answer.status_code == 200 and answer.json()["response_action"] == "update"
    said = str(answer.json()["view"])
    assert NOT_SENT in said and SECRET not in said
    assert_logged_where(caplog, said, "handlers/views.py", "in reject_submitted")


def test_an_approval_that_fails_after_the_patch_says_the_change_was_sent(
    driver, slack, agora, bot, monkeypatch, caplog
):
    posted = request_storage_change(driver, slack)
    monkeypatch.setattr(bot.services.drift, "applied", bug)  # recording the read-back, after the PATCH
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (answer,) = slack.wait_for("response_url")
    said = text_of(answer)
    assert SENT in said and "Check it with `/recording get`" in said and answer.params["replace_original"] is False
    bot.drain()
    assert len(agora.calls("PATCH")) == 1
    assert_logged_where(caplog, said, "bot/applying.py", "in apply_change", "handlers/actions.py", "in approve")


def test_slack_refusing_a_call_after_the_patch_says_the_change_was_sent(driver, slack, agora, bot, monkeypatch):
    posted = request_storage_change(driver, slack)

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise SlackApiError("refused", {"ok": False, "error": "internal_error"})

    monkeypatch.setattr(bot.services.drift, "applied", refused)  # after the PATCH, as above
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (answer,) = slack.wait_for("response_url")
    said = text_of(answer)
    assert "Slack refused recbot's update (internal_error)" in said and "A change was sent to Agora" in said
    bot.drain()
    assert len(agora.calls("PATCH")) == 1


def test_a_home_button_that_fails_says_so_on_the_home(driver, slack, bot, monkeypatch, caplog) -> None:
    request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    approve = home_button(open_home(driver, slack, "UBOB"), row.id, home_blocks.ACTION_APPROVE)
    monkeypatch.setattr(bot.services.approvals, "approve", bug)
    # Acked, then failed at once: Slack still gets the ack (200), not Bolt's 404 "unhandled request".
    click_home(driver, slack, "UBOB", approve)
    slack.wait_for("views.publish", where=lambda c: NOT_SENT in text_of(c))
    bot.drain()
    said = shown(slack.home("UBOB"))
    assert NOT_SENT in said and SECRET not in slack.payload_text()
    assert_logged_where(caplog, said, "handlers/actions.py", "in approve_from_home")


def test_opening_a_home_that_fails_is_told_directly(driver, slack, bot, monkeypatch, caplog) -> None:
    monkeypatch.setattr(bot.services.store.drift, "open_alerts", bug)
    driver.home_opened("UDAVE")
    (told,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UDAVE")
    said = text_of(told)
    assert NOT_SENT in said and SECRET not in said
    bot.drain()
    assert_logged_where(caplog, said, "handlers/events.py", "in home_opened", "handlers/notify.py")


def test_the_frames_of_a_chained_failure_name_each_exception_and_no_message() -> None:
    def read_key() -> None:
        raise KeyError(SECRET)

    def use_key() -> None:
        try:
            read_key()
        except KeyError as exc:
            raise ValueError(f"could not use {SECRET}") from exc

    try:
        use_key()
    except ValueError as exc:
        frames = failure_frames(exc)
    assert SECRET not in frames
    lines = frames.splitlines()
    assert lines[0] == "KeyError" and "ValueError" in lines and lines.index("ValueError") > 1
    assert any("in read_key" in line for line in lines) and any("in use_key" in line for line in lines)
    assert all(line.startswith('  File "') for line in lines if line not in ("KeyError", "ValueError"))


def test_an_answer_slack_did_not_confirm_is_told_as_slacks_trouble_directly(driver, slack, bot, caplog) -> None:
    """The answer's connection is dropped once it was sent: it may have been shown, or not. The
    person hears so by a direct message, not "something went wrong on recbot's side"."""
    caplog.set_level(logging.INFO)
    slack.hang_ups["response_url"] = 1
    driver.command("get live na")
    (told,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")
    said = text_of(told)
    assert "Slack did not confirm that recbot's answer reached you (ref " in said
    assert "Nothing was sent to Agora; if you do not see the answer above, run the command again." in said
    assert "recbot's side" not in said
    assert [c.method for c in slack.calls if c.method.startswith("response_url")] == ["response_url:dropped"]
    bot.drain()
    (ref,) = REF.findall(said)
    (record,) = [r for r in caplog.records if r.name == "handlers.errors" and ref in r.getMessage()]
    assert record.levelno == logging.WARNING and "did not confirm" in record.getMessage()


def test_slack_refusing_to_fill_the_form_is_told_as_slacks_not_recbots(driver, slack, bot, caplog) -> None:
    slack.errors["views.update"] = "internal_error"  # the loading modal opens; filling it is refused
    driver.command("set live na")
    (answer,) = slack.wait_for("response_url")
    said = text_of(answer)
    assert "Slack refused recbot's update (internal_error)" in said and "Nothing was sent to Agora; try again" in said
    assert "recbot's side" not in said and answer.params["response_type"] == "ephemeral"
    (ref,) = REF.findall(said)
    bot.drain()
    (record,) = [r for r in caplog.records if r.name == "handlers.errors" and ref in r.getMessage()]
    assert record.levelno == logging.WARNING and "internal_error" in record.getMessage()
