"""The harness's own promise: a bot the tests stop is gone, its threads and its
heap, so the tests after it neither share the GIL with it nor walk it in every
full garbage collection (a thousand such bots made each collection last 0.5 s)."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from tests.conftest import SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


def test_a_stopped_bot_leaves_no_thread_and_no_app_behind(settings, slack, agora) -> None:
    before = set(threading.enumerate())
    bot = start_bot(settings, fast_agora(settings))
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    driver.command("get live na")
    slack.wait_for("response_url")
    app = weakref.ref(bot.app)
    bot.stop()
    del bot
    gc.collect()
    assert threads_left(before) == []
    assert app() is None, "the stopped bot's app is still reachable"


def threads_left(before: set[threading.Thread], within: float = 2.0) -> list[str]:
    """Threads started since `before` and still alive after `within` seconds: the Agora fake's
    handler of a kept connection ends once it reads the close, a moment after the stop."""
    deadline = time.monotonic() + within
    while (
        left := [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    ) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left
