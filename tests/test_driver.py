"""The harness's own promise: a bot the tests stop is gone, its threads and its
heap, so the tests after it neither share the GIL with it nor walk it in every
full garbage collection (a thousand such bots made each collection last 0.5 s)."""

from __future__ import annotations

import gc
import threading
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
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []
    assert app() is None, "the stopped bot's app is still reachable"
