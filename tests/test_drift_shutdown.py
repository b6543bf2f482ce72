"""A stop during a drift watch pass ends the pass: a pass over a big fleet
lasts longer than the shutdown waits for it, and the store and the Agora
client must not be closed under it (bench.drift_pass ended in tracebacks)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from bot.settings import Settings
from tests.conftest import APP_ID, LIVE_CONFIG, fast_agora
from tests.driver import start_bot
from tests.test_drift import watching

NAMES = 25  # with live, 26 entry points x 4 regions: a pass of 104 reads, 20 s at 5 per second


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_overrides,
        "AGORA_RATE_LIMIT": "5",
        "RECBOT_DRIFT_ALL": "true",
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return watching(settings)


def region_reads(agora) -> int:
    return len([c for c in agora.calls("GET") if "/regions/" in c.path])


def test_a_stop_during_a_pass_ends_the_pass_before_the_store_closes(settings, agora, caplog) -> None:
    for i in range(NAMES):
        for region in ("cn", "ap", "na", "eu"):
            agora.put(APP_ID, f"ep{i:02}", region, LIVE_CONFIG)
    before = set(threading.enumerate())
    bot = start_bot(settings, fast_agora(settings))
    watchers = [t for t in threading.enumerate() if t.name == "drift-watch" and t not in before]
    assert len(watchers) == 1
    deadline = time.monotonic() + 30  # a generous bound that only catches a watch that never starts
    while region_reads(agora) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert region_reads(agora) >= 3  # the first pass is under way
    with caplog.at_level(logging.WARNING):
        bot.stop()
    assert not watchers[0].is_alive()  # the pass ended before the store and the client were closed
    assert region_reads(agora) < (NAMES + 1) * 4  # cut short, not read to the end
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
