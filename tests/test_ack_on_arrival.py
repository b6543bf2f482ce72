"""Commands and button clicks are acked on the thread that received them, before any listener
runs: their ack is always empty, and Bolt's runner would otherwise wait for a listener thread to
give it (polling every 10 ms), or never get it while every listener thread is busy."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from handlers.blocks import fleet
from recbot.app import LISTENER_THREADS
from tests.driver import RunningBot, SlackDriver
from tests.fakes.slack import FakeSlack


@pytest.fixture
def listeners_busy(bot: RunningBot) -> Iterator[threading.Event]:
    """Every listener thread held until the event is set (as by a slow Agora)."""
    release = threading.Event()
    executor = bot.app.listener_runner.listener_executor
    for _ in range(LISTENER_THREADS):
        executor.submit(release.wait)
    yield release
    release.set()


def test_a_command_is_acked_while_every_listener_thread_is_busy(
    driver: SlackDriver, slack: FakeSlack, listeners_busy: threading.Event
) -> None:
    response = driver.command("get live na")
    assert (response.status_code, response.text) == (200, "")
    assert slack.of("response_url") == []  # acked; its listener has not run
    listeners_busy.set()
    (answer,) = slack.wait_for("response_url")
    assert "MP4 recording" in str(answer.params)


def test_a_button_click_is_acked_while_every_listener_thread_is_busy(
    driver: SlackDriver, slack: FakeSlack, listeners_busy: threading.Event
) -> None:
    action = {"action_id": f"{fleet.ACTION_PAGE}_next", "value": "gone-scan:2", "type": "button"}
    response = driver.block_action("UALICE", action, message={"ts": "1.2", "blocks": []}, channel="CRUN")
    assert response.status_code == 200
    assert slack.of("response_url") == []
    listeners_busy.set()
    slack.wait_for("response_url")  # the click's listener ran once a thread was free
