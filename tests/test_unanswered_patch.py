"""A PATCH Agora answers with a server error (on every attempt) may or may not have landed:
the person is told Agora's status, and the read-back says which (applied, not applied), or
that nobody knows yet and how to check."""

from __future__ import annotations

import pytest

from handlers.blocks import approval_card as card
from tests.approval_helpers import click, request_storage_change, text_of
from tests.conftest import APP_ID
from tests.fakes.agora import Fault
from tests.test_change_flow import final_view_text, open_form, state

EVERY_ATTEMPT = 4  # the client's first try and three retries
SERVER_ERROR = "Agora answered the change with a server error (503: upstream overloaded)"


def server_errors(applies: bool = False) -> list[Fault]:
    return [Fault(503, message="upstream overloaded", method="PATCH", applies=applies)] * EVERY_ATTEMPT


def submitted(driver, slack, agora, *faults: Fault) -> str:
    """A direct change (HLS on) submitted while Agora answers with `faults`; the modal's last words."""
    view = open_form(driver, slack)
    agora.inject(*faults)
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    return final_view_text(slack)


def test_a_patch_answered_with_a_redirect_was_not_applied_and_says_which_setting(driver, slack, agora) -> None:
    shown = submitted(driver, slack, agora, Fault(307, {"Location": "https://elsewhere.example/"}, method="PATCH"))
    assert "The change was not applied" in shown and "AGORA_API_URL" in shown
    assert "server error" not in shown and len(agora.calls("PATCH")) == 1


def test_a_patch_answered_5xx_that_landed_then_a_redirect_is_read_back_and_told_applied(driver, slack, agora) -> None:
    redirect = Fault(302, {"Location": "https://elsewhere.example/"}, method="PATCH")
    shown = submitted(driver, slack, agora, Fault(503, applies=True, method="PATCH"), redirect)
    assert "Change applied" in shown and "reading it back shows the change in effect" in shown
    assert agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": True}


def test_a_patch_answered_5xx_and_read_back_as_before_was_not_applied(driver, slack, agora) -> None:
    shown = submitted(driver, slack, agora, *server_errors())
    assert f"The change was not applied: {SERVER_ERROR}" in shown
    assert "reading it back shows the configuration as it was: try again later." in shown
    assert "not in effect" not in shown
    assert len(agora.calls("PATCH")) == EVERY_ATTEMPT
    assert agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": False}


def test_a_patch_answered_5xx_that_landed_is_applied_and_says_so(driver, slack, agora) -> None:
    shown = submitted(driver, slack, agora, *server_errors(applies=True))
    assert f"Change applied: {SERVER_ERROR}, but reading it back shows the change in effect." in shown
    assert agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": True}


def test_a_patch_answered_5xx_whose_read_back_fails_is_unknown_with_how_to_check(driver, slack, agora) -> None:
    read_back_fails = [Fault(503, message="still overloaded", method="GET")] * EVERY_ATTEMPT
    patched: list[bool] = []

    def then_reads_fail(_: object) -> None:
        if not patched:
            agora.inject(*read_back_fails)
        patched.append(True)

    agora.after["PATCH"] = then_reads_fail
    shown = submitted(driver, slack, agora, *server_errors())
    assert f"{SERVER_ERROR}, and reading it back failed too (Agora is not answering properly" in shown
    assert "still overloaded" in shown
    assert "whether the change was applied is unknown. Check it with `/recording get`." in shown


@pytest.mark.parametrize(
    ("applies", "outcome", "words"),
    [
        (False, "Failed", f"The change was not applied: {SERVER_ERROR}"),
        (True, "Applied", f"Change applied: {SERVER_ERROR}, but reading it back shows the change in effect."),
    ],
)
def test_an_approved_change_answered_5xx_tells_the_requester_what_the_read_back_shows(
    driver, slack, agora, bot, applies, outcome, words
) -> None:
    posted = request_storage_change(driver, slack)
    agora.inject(*server_errors(applies))
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    assert outcome in text_of(notice) and words in text_of(notice)
    bot.drain()
    (row,) = bot.services.store.requests.in_state(outcome.lower())
    assert row.result is not None and words in row.result


def test_a_patch_answered_5xx_asking_for_a_long_pause_says_when_to_try_again(driver, slack, agora) -> None:
    """A person's change is sent once when Agora asks for an hour: the wait is passed on."""
    shown = submitted(driver, slack, agora, Fault(503, {"Retry-After": "3600"}, "upstream overloaded", method="PATCH"))
    assert f"The change was not applied: {SERVER_ERROR}, and reading it back shows the configuration as it was: " in (
        shown
    )
    assert "try again in 60 min (Agora asked recbot to wait that long)." in shown
    assert len(agora.calls("PATCH")) == 1
