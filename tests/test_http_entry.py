"""The HTTP entry: Slack's request signing is enforced, /healthz reports the database."""

from __future__ import annotations

import time

import requests

from tests.conftest import SIGNING_SECRET
from tests.driver import slack_signature


def test_unsigned_wrongly_signed_and_stale_requests_get_401_and_call_nothing(driver, slack, agora, bot) -> None:
    body = b"command=%2Frecording&text=get+live+na&user_id=UALICE&trigger_id=t&response_url=x"
    stale = int(time.time()) - 600
    answers = [
        driver.post(body, signature=""),
        driver.post(body, signature="v0=" + "0" * 64),
        driver.post(body, timestamp=stale, signature=slack_signature(SIGNING_SECRET, str(stale), body)),
        requests.post(driver.bot_url + "/slack/events", data=body, timeout=5),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    bot.drain()
    assert [c.method for c in slack.calls if c.method != "auth.test"] == []
    assert agora.calls() == []


def test_healthz_reports_database(bot) -> None:
    answer = requests.get(bot.url + "/healthz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "database": "ok"}


def test_unknown_path_is_404(bot) -> None:
    assert requests.get(bot.url + "/nope", timeout=5).status_code == 404
