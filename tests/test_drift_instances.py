"""Two instances on one PostgreSQL, both watching for outside changes: an alert whose card Slack
refused is posted again by a later pass, by one instance only, once."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot import drift as bot_drift
from bot.settings import load_settings
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack

ROUNDS = 8


@pytest.fixture
def two_bots(settings_overrides: dict[str, Any], postgres_url: str) -> Iterator[list[RunningBot]]:
    settings = load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    ).model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.05})  # passes 50 ms apart; model_copy does not validate
    bots = [start_bot(settings, fast_agora(settings)) for _ in range(2)]
    yield bots
    for bot in bots:
        bot.stop()


def changed_outside(bucket: str) -> dict[str, Any]:
    return {**copy.deepcopy(LIVE_CONFIG), "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": bucket}}


def alert_posts(slack: FakeSlack) -> list[Any]:
    """The alert cards Slack took (a refused post has no ts)."""
    return [
        c
        for c in slack.of("chat.postMessage")
        if c.params.get("channel") == "CAPPROVE" and c.params.get("text", "").startswith("Changed outside recbot")
    ]


def wait_until(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def settle(bots: list[RunningBot], passes: int = 3) -> None:
    for bot in bots:
        assert bot.services.drift.wait_passes(bot.services.drift.passes + passes)
        bot.drain()


def test_an_alert_slack_refused_is_posted_again_by_one_instance_once(
    two_bots: list[RunningBot], slack: FakeSlack, agora: AgoraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = two_bots[0]
    driver = SlackDriver(first.url, SIGNING_SECRET, slack.response_url())
    driver.command("get live na")  # the first read: remembered, and watched from now on
    slack.wait_for("response_url")
    settle(two_bots)
    store = first.services.store.drift
    for round_no in range(ROUNDS):
        where = f"round {round_no}"
        monkeypatch.setattr(bot_drift, "UNPOSTED_AFTER", timedelta(hours=1))
        slack.errors["chat.postMessage"] = "internal_error"
        slack.clear()
        agora.put(APP_ID, "live", "na", changed_outside(f"console-{round_no}"))
        wait_until(lambda n=round_no: any(a.after.bucket == f"console-{n}" for a in store.open_alerts()), where)
        settle(two_bots)
        (alert,) = store.open_alerts()
        assert alert.cards == [] and [c for c in alert_posts(slack) if "_ts" in c.params] == [], where
        del slack.errors["chat.postMessage"]
        # A slow post: the other instance's passes (50 ms apart) run while it is under way.
        slack.before["chat.postMessage"] = lambda _call: time.sleep(0.3)
        monkeypatch.setattr(bot_drift, "UNPOSTED_AFTER", timedelta(0))
        wait_until(lambda a=alert.id: bool(store.alert(a).cards), where)  # type: ignore[union-attr]
        settle(two_bots, passes=5)
        del slack.before["chat.postMessage"]
        posted = [c for c in alert_posts(slack) if "_ts" in c.params]
        assert len(posted) == 1, f"{where}: {len(posted)} cards posted"
        kept = store.alert(alert.id)
        assert kept is not None and [(c.channel, c.ts) for c in kept.cards] == [("CAPPROVE", posted[0].params["_ts"])]
        assert f"console-{round_no}" in str(posted[0].params["blocks"]), where
    assert agora.calls("PATCH") == []
