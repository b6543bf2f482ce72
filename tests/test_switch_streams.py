"""Single streams from Slack: the switch off first (as recbot knows it), PUT and
DELETE of the task, Agora's errors in words, hostile stream names that never
change which URL is hit, and history."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import APP_ID
from tests.fakes.agora import SWITCH_ON_REFUSAL, Fault
from tests.switch_helpers import run, said, switch_calls, task_calls

TASKS = f"/v1/projects/{APP_ID}/fls/entry_points/live/admin/record/custom/regions/na/tasks"


def test_on_is_refused_while_recbot_knows_the_switch_is_on_with_the_command_to_pause(driver, slack, agora, bot):
    run(driver, slack, "resume live")
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert "Nothing was sent" in reply and "on for every stream, as far as recbot knows" in reply
    assert "Pause it first with `/recording pause live`" in reply
    assert "on: resumed by <@UALICE>" in reply  # what recbot knows, and since when
    bot.drain()
    assert task_calls(agora) == [] and agora.tasks == set()


def test_on_after_a_pause_records_the_stream_and_off_stops_it(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert "Agora accepted" in reply and "within the next 24 hours" in reply
    assert "`/recording stream live na cam-1 off`" in reply and "does not know" not in reply
    assert agora.tasks == {(APP_ID, "live", "na", "cam-1")}
    reply = said(run(driver, slack, "stream live na cam-1 off"))
    assert "Stopped" in reply and agora.tasks == set()
    assert [(c.method, c.path, c.status) for c in task_calls(agora)] == [
        ("PUT", f"{TASKS}?id=cam-1", 200),
        ("DELETE", f"{TASKS}/cam-1", 200),
    ]
    assert [c.json() for c in switch_calls(agora)] == [{"enabled": False}]  # the switch first, once


def test_on_while_the_switch_is_unknown_is_sent_and_agora_decides(driver, slack, agora, bot) -> None:
    """The choice for "never set through recbot": send it, and pass Agora's refusal on with the pause command."""
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    (put,) = task_calls(agora)
    assert put.status == 400 and SWITCH_ON_REFUSAL in reply
    assert "never set through recbot" in reply and "pause it first with `/recording pause live`" in reply
    agora.switches[(APP_ID, "live")] = False  # paused in Agora Console, which recbot cannot see
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert "Agora accepted" in reply and "recbot does not know whether custom recording of `live` is off" in reply
    assert agora.tasks == {(APP_ID, "live", "na", "cam-1")}


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault(404, message="entry point not found", path="/tasks"), "Agora has no entry point `live` configured"),
        (Fault(400, message="stream is not pushed", path="/tasks"), "Agora refused to record stream `cam-1`"),
        (Fault(401, message="Invalid authentication credentials", path="/tasks"), "AGORA_CUSTOMER_ID"),
    ],
)
def test_agoras_refusals_of_on_are_passed_on_and_list_nothing(driver, slack, agora, bot, fault, words) -> None:
    run(driver, slack, "pause live")
    agora.inject(fault)
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert words in reply and len(task_calls(agora)) == 1
    if fault.status == 400:
        assert "stream is not pushed" in reply and "pushed now or within the next 24 hours" in reply
        assert "pause it first" not in reply  # recbot knows it paused the entry point
    assert bot.services.store.switches.stream_tasks() == [] and agora.tasks == set()


@pytest.mark.parametrize("status", [429, 500, 504])
def test_on_and_off_ride_out_transient_errors_and_explain_persistent_ones(driver, slack, agora, bot, status) -> None:
    run(driver, slack, "pause live")
    agora.inject(Fault(status, {"Retry-After": "0"}, method="PUT"))
    assert "Agora accepted" in said(run(driver, slack, "stream live na cam-1 on"))
    assert [c.status for c in task_calls(agora)] == [status, 200]
    agora.inject(*[Fault(status, {"Retry-After": "0"}, method="DELETE")] * 4)
    reply = said(run(driver, slack, "stream live na cam-1 off"))
    assert ("rate-limiting" if status == 429 else "whether Agora still records stream `cam-1` is unknown") in reply
    assert len(bot.services.store.switches.stream_tasks()) == 1  # still listed: it may still record
    assert agora.tasks == {(APP_ID, "live", "na", "cam-1")}


def test_off_for_a_task_agora_does_not_have_says_so_and_unlists_it(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    run(driver, slack, "stream live na cam-1 on")
    agora.tasks.clear()  # the push ended
    reply = said(run(driver, slack, "stream live na cam-1 off"))
    assert "Agora has no recording task for stream `cam-1`" in reply and "no longer lists it" in reply
    assert bot.services.store.switches.stream_tasks() == []
    reply = said(run(driver, slack, "stream live na never-seen off"))
    assert "Check the names, the region and `--app`" in reply


def test_history_shows_the_switch_and_the_stream_tasks(driver, slack, agora, bot) -> None:
    run(driver, slack, "pause live")
    run(driver, slack, "stream live na cam-1 on")
    run(driver, slack, "stream live na cam-1 off", user="UBOB")
    history = said(run(driver, slack, "history live na"))
    assert "single stream recording started" in history and "by <@UALICE>" in history
    assert "single stream recording stopped" in history and "by <@UBOB>" in history
    assert "Stream cam-1: not recorded by a task → recorded by a task" in history
    assert "paused custom recording of every stream" in history
    assert "single stream" not in said(run(driver, slack, "history live eu"))  # tasks have a region


@pytest.mark.parametrize(
    "stream",
    ["a/../b", "%2F", "..%2F..", "ünï/cödé", "名前", "a?id=other&x=1", "a#frag", "<!channel>", "+plus", "x" * 128],
)
def test_hostile_stream_names_stay_one_encoded_segment(driver, slack, agora, bot, stream) -> None:
    run(driver, slack, "pause live")
    run(driver, slack, f"stream live na {stream} on")
    run(driver, slack, f"stream live na {stream} off")
    encoded = quote(stream, safe="")
    put, delete = task_calls(agora)
    assert (put.method, put.path, put.status) == ("PUT", f"{TASKS}?id={encoded}", 200)
    assert (delete.method, delete.path, delete.status) == ("DELETE", f"{TASKS}/{encoded}", 200)
    assert agora.tasks == set()
    assert "<!channel>" not in slack.payload_text()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("stream live na a b on", "exactly four arguments"),
        ("stream live na " + "x" * 1000 + " on", "at most 128 characters"),
        ("stream live na . on", "must not be '.' or '..'"),
        ("stream live na .. off", "must not be '.' or '..'"),
        ("stream live na cam\x07 on", "control characters"),
        ("stream live xx cam on", "Region must be one of"),
        ("stream live na cam maybe", "`on` or `off`"),
        ("stream live na cam", "exactly four arguments"),
        ("stream live na cam on --app ..", "App ID must not be"),
    ],
)
def test_bad_stream_commands_get_usage_and_call_nothing(driver, slack, agora, bot, text, words) -> None:
    reply = said(run(driver, slack, text))
    assert words in reply and "Usage" in reply
    bot.drain()
    assert agora.calls() == [] and bot.services.store.switches.stream_tasks() == []


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault(400, message="bad stream", method="DELETE"), "refused the request as invalid: bad stream"),
        (Fault(401, message="Invalid authentication credentials", method="DELETE"), "AGORA_CUSTOMER_ID"),
    ],
)
def test_agoras_refusals_of_off_are_passed_on_and_keep_it_listed(driver, slack, agora, bot, fault, words) -> None:
    run(driver, slack, "pause live")
    run(driver, slack, "stream live na cam-1 on")
    agora.inject(fault)
    reply = said(run(driver, slack, "stream live na cam-1 off"))
    assert words in reply and "Nothing was stopped" in reply
    assert [c.method for c in task_calls(agora)] == ["PUT", "DELETE"]  # not retried
    assert len(bot.services.store.switches.stream_tasks()) == 1 and agora.tasks == {(APP_ID, "live", "na", "cam-1")}


@pytest.mark.parametrize("status", [429, 503])
def test_a_persistent_error_on_on_is_explained_and_listed_only_if_it_may_record(driver, slack, agora, bot, status):
    run(driver, slack, "pause live")
    agora.inject(*[Fault(status, {"Retry-After": "0"}, method="PUT")] * 4)
    reply = said(run(driver, slack, "stream live na cam-1 on"))
    assert ("rate-limiting" if status == 429 else "whether Agora records stream `cam-1` is unknown") in reply
    assert len(task_calls(agora)) == 4
    # A 429 refused it; a server error may have come after Agora took it: listed as unknown, to be stopped.
    assert [task.answered for task in bot.services.store.switches.stream_tasks()] == ([] if status == 429 else [False])
