"""Two bot instances on one PostgreSQL: a pause or resume through approval is
sent exactly once however many clicks race, and what recbot records of the
switch follows the order in which Agora got the changes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.settings import load_settings
from handlers.blocks import approval_card as card
from tests.approval_helpers import card_shown, click, text_of
from tests.conftest import APP_ID, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.switch_helpers import answers, interim, said, switch_calls

ROUNDS = 10
CLICKS = 20


def shared(settings_overrides: dict[str, Any], postgres_url: str, **more: str) -> Any:
    return load_settings(
        _env_file=None,
        **{
            **settings_overrides,
            "DATABASE_URL": postgres_url,
            "RECBOT_SEAL_KEY": Fernet.generate_key().decode(),
            **more,
        },
    )


@pytest.fixture
def two_bots(request: pytest.FixtureRequest, settings_overrides, postgres_url):
    settings = shared(settings_overrides, postgres_url, **getattr(request, "param", {}))
    bots = [start_bot(settings, fast_agora(settings)) for _ in range(2)]
    yield bots
    for bot in bots:
        bot.stop()


@pytest.mark.parametrize("two_bots", [{"RECBOT_APPROVAL_FOR": "all"}], indirect=True)
def test_racing_approvals_of_pauses_and_resumes_send_each_once(two_bots, slack, agora) -> None:
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in two_bots]
    with ThreadPoolExecutor(CLICKS) as pool:
        for round_no in range(ROUNDS):
            enabled = round_no % 2 == 1  # pause, resume, pause, ...
            slack.clear()
            agora.clear()
            assert drivers[round_no % 2].command(("resume" if enabled else "pause") + " live").status_code == 200
            posted = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[0]
            answers(slack, 1)
            clicks = [(drivers[i % 2], ("UBOB", "UCAROL")[(i // 2) % 2]) for i in range(CLICKS)]
            list(pool.map(lambda c, p=posted: click(c[0], p, c[1], card.ACTION_APPROVE), clicks))
            for bot in two_bots:
                bot.drain()
            where = f"round {round_no}"
            assert [c.json() for c in switch_calls(agora)] == [{"enabled": enabled}], where
            assert agora.switch(APP_ID, "live") is enabled, where
            dms = [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
            assert len(dms) == 1 and "Applied" in text_of(dms[0]), where
            shown = card_shown(slack, posted)
            assert "Applied" in shown and card.BLOCK_BUTTONS not in shown, where
            replies = [said(c) for c in slack.of("response_url") if not interim(c)][1:]
            assert len(replies) == CLICKS - 1 and all("already" in r for r in replies), where
            store = two_bots[0].services.store
            row = store.requests.get(posted.params["text"].split()[3])
            assert row is not None and row.state == "applied" and row.kind == "switch", where
            events = [e.event for e in store.audit.history(row.target, 100) if e.request_id == row.id]
            assert events.count("applied") == 1 and events.count("approved") == 1, f"{where}: {events}"
            known = two_bots[round_no % 2].services.switches.book.known(APP_ID, "live")
            assert known is not None and known.enabled is enabled and known.request_id == row.id, where


def test_what_recbot_records_follows_the_order_agora_got_racing_switches(two_bots, slack, agora) -> None:
    """Each round a pause on one instance and a resume on the other race; the first one
    Agora serves answers late. What recbot then knows must be what Agora holds."""
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in two_bots]
    with ThreadPoolExecutor(2) as pool:
        for round_no in range(ROUNDS):
            slack.clear()
            agora.clear()
            agora.inject(Fault(lands=True, delay=0.3, path="/auto"))
            commands = [(drivers[0], "pause live", "UALICE"), (drivers[1], "resume live", "UBOB")]
            list(pool.map(lambda c: c[0].command(c[1], user=c[2]), commands))
            replies = [said(c) for c in answers(slack, 2)]
            for bot in two_bots:
                bot.drain()
            where = f"round {round_no}: {replies}"
            assert all(":white_check_mark:" in r for r in replies), where
            assert len(switch_calls(agora)) == 2, where
            held = agora.switch(APP_ID, "live")
            last = switch_calls(agora)[-1].json()["enabled"]
            assert held is last, where
            for bot in two_bots:
                assert bot.services.switches.book.known(APP_ID, "live").enabled is held, where
