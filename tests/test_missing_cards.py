"""A request whose approval card could not be posted is not stranded: the requester is told,
every sweep posts it again (once, across instances), and the requester can cancel it from
their App Home meanwhile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.models import RecordingConfig, StorageConfig, Target
from bot.settings import load_settings
from handlers.blocks import approval_card as card
from handlers.blocks import home as home_blocks
from handlers.notify import Notifier
from recbot.app import sweep
from tests.approval_helpers import NEW_ACCESS, NEW_SECRET, click, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.slack import Call, FakeSlack
from tests.test_change_flow import open_form, state
from tests.test_home import click_home, open_home, shown

NO_CARD = "no approval card could be posted"
TRY_AGAIN = "recbot will try again every sweep; you can cancel it from recbot's Home tab"
POSTED_NOW = "is posted now"


def is_card(call: Call) -> bool:
    """A card Slack took (it has a ts) in the approval channel."""
    return call.params.get("channel") == "CAPPROVE" and "_ts" in call.params


def dms(slack: FakeSlack, words: str, user: str = "UALICE") -> list[Call]:
    return [c for c in slack.of("chat.postMessage") if c.params["channel"] == user and words in text_of(c)]


def open_request(driver: SlackDriver, slack: FakeSlack, entry_point: str = "live") -> str:
    """Submit a storage change (it needs approval); the form's answer."""
    view = open_form(driver, slack, text=f"set {entry_point} na")
    updates = len(slack.of("views.update"))
    values = state(change=True, vendor=7, region=0, bucket="hw-bucket", access=NEW_ACCESS, secret=NEW_SECRET)
    driver.submit("UALICE", view, values)
    answer = json.dumps(slack.wait_for("views.update", count=updates + 1)[-1].params)
    assert "approval" in answer
    return answer


@pytest.fixture
def quiet_bot(settings) -> Iterator[RunningBot]:
    """A bot whose sweeps run only when the test runs one."""
    running = start_bot(settings, fast_agora(settings), sweep_seconds=3600)
    yield running
    running.stop()


@pytest.fixture
def quiet_driver(quiet_bot: RunningBot, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(quiet_bot.url, SIGNING_SECRET, slack.response_url())


def run_sweep(bot: RunningBot) -> None:
    sweep(bot.services, Notifier(bot.app.client, bot.services))


def test_a_card_slack_refused_is_posted_by_a_later_sweep_once(quiet_driver, quiet_bot, slack, agora) -> None:
    open_home(quiet_driver, slack, "UCAROL")
    slack.refused_channels["CAPPROVE"] = "channel_not_found"
    answer = open_request(quiet_driver, slack)
    assert "no approval card could be posted yet" in answer and "sent to the approvers" not in answer
    (told,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
    assert NO_CARD in text_of(told) and TRY_AGAIN in text_of(told) and "live (na, app APPID01)" in text_of(told)
    quiet_bot.drain()
    (row,) = quiet_bot.services.store.requests.open_requests()
    assert row.state == "pending" and row.cards == []
    assert "Waiting for your approval (1)" in shown(slack.home("UCAROL"))  # an approver's open home has it, card or not

    run_sweep(quiet_bot)  # Slack still refuses: tried, nobody told again
    assert [c for c in slack.of("chat.postMessage") if is_card(c)] == [] and len(dms(slack, "")) == 1
    del slack.refused_channels["CAPPROVE"]
    run_sweep(quiet_bot)
    (posted,) = [c for c in slack.of("chat.postMessage") if is_card(c)]
    assert row.id in text_of(posted) and card.BLOCK_BUTTONS in text_of(posted)
    assert len(dms(slack, POSTED_NOW)) == 1 and row.id in text_of(dms(slack, POSTED_NOW)[0])
    assert [(c.channel, c.ts) for c in quiet_bot.services.store.requests.get(row.id).cards] == [
        ("CAPPROVE", posted.params["_ts"])
    ]
    run_sweep(quiet_bot)  # it has its card now: nothing more is posted
    assert len([c for c in slack.of("chat.postMessage") if is_card(c)]) == 1 and len(dms(slack, POSTED_NOW)) == 1

    click(quiet_driver, posted, "UBOB", card.ACTION_APPROVE)
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Applied" in text_of(c))
    quiet_bot.drain()
    assert len(agora.calls("PATCH")) == 1


def test_the_requester_cancels_a_request_without_a_card_from_the_home(quiet_driver, quiet_bot, slack, agora) -> None:
    slack.refused_channels["CAPPROVE"] = "channel_not_found"
    open_request(quiet_driver, slack)
    quiet_bot.drain()
    (row,) = quiet_bot.services.store.requests.open_requests()
    own = next(b for b in open_home(quiet_driver, slack, "UALICE")["blocks"] if b.get("block_id", "").endswith(row.id))
    cancel = own["accessory"]
    assert cancel["action_id"] == home_blocks.ACTION_CANCEL and "confirm" in cancel

    open_home(quiet_driver, slack, "UBOB")
    click_home(quiet_driver, slack, "UBOB", cancel)  # another's button, replayed: refused
    quiet_bot.drain()
    assert "Only the requester can cancel a request." in shown(slack.home("UBOB"))
    click_home(quiet_driver, slack, "UALICE", {**cancel, "value": "forged"})
    quiet_bot.drain()
    assert "not a genuine recbot button" in shown(slack.home("UALICE"))
    assert quiet_bot.services.store.requests.get(row.id).state == "pending"

    click_home(quiet_driver, slack, "UALICE", cancel)
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: "Cancelled" in text_of(c))
    assert notice.params["channel"] == "UALICE" and row.id in text_of(notice)
    quiet_bot.drain()
    home = shown(slack.home("UALICE"))
    assert f"You cancelled request {row.id}; nothing was sent to Agora." in home and "You have no open requests" in home
    assert quiet_bot.services.store.requests.get(row.id).state == "cancelled"
    del slack.refused_channels["CAPPROVE"]
    run_sweep(quiet_bot)  # a cancelled request gets no card
    assert [c for c in slack.of("chat.postMessage") if is_card(c)] == [] and agora.calls("PATCH") == []


def test_a_request_whose_poster_stopped_gets_its_card_at_the_next_start(settings, slack, agora) -> None:
    """Opened (the claim on its cards taken) by a process that stopped before posting them: on the
    embedded SQLite, the next start finishes that at once."""
    first = start_bot(settings, fast_agora(settings), sweep_seconds=3600)
    try:
        target = Target(app_id=APP_ID, entry_point="live", region="na")
        storage = StorageConfig(vendor=7, region=0, bucket="hw-bucket", access_key=NEW_ACCESS, secret_key=NEW_SECRET)
        live = first.services.agora.get_config(target)
        opened = first.services.approvals.open(target, live, RecordingConfig(storage_config=storage), "UALICE", None)
        assert opened.request is not None and opened.request.announce_token is not None
        run_sweep(first)  # the claim is the opener's, and it is fresh: no sweep takes it
        assert [c for c in slack.of("chat.postMessage") if is_card(c)] == []
    finally:
        first.stop()
    second = start_bot(settings, fast_agora(settings), sweep_seconds=3600)
    try:
        (posted,) = [c for c in slack.of("chat.postMessage") if is_card(c)]
        assert opened.request.id in text_of(posted)
    finally:
        second.stop()


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


ROUNDS = 5
PER_ROUND = 3


def test_two_instances_post_each_missing_card_once(shared_settings, slack, agora) -> None:
    """Each round: three requests are opened while Slack refuses the approval channel, then
    both instances sweep twice at once: each request gets exactly one card and one "posted now".
    Then three more are opened while the other instance sweeps without pause: the opener's
    claim holds, so each gets its one card from the opener and nobody says "posted now"."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings), sweep_seconds=3600) for _ in range(2)]
    driver = SlackDriver(bots[0].url, SIGNING_SECRET, slack.response_url())
    store = bots[0].services.store
    try:
        with ThreadPoolExecutor(4) as pool:
            for round_no in range(ROUNDS):
                where = f"round {round_no}"
                slack.clear()
                refused = [f"r{round_no}-{i}" for i in range(PER_ROUND)]
                for entry_point in refused:
                    agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
                slack.refused_channels["CAPPROVE"] = "channel_not_found"
                for entry_point in refused:
                    open_request(driver, slack, entry_point)
                slack.wait_for("chat.postMessage", count=PER_ROUND, where=lambda c: NO_CARD in text_of(c))
                del slack.refused_channels["CAPPROVE"]
                list(pool.map(run_sweep, bots * 2))
                cards = [c for c in slack.of("chat.postMessage") if is_card(c)]
                for entry_point in refused:
                    (row,) = [r for r in store.requests.open_requests() if r.target.entry_point == entry_point]
                    mine = [c for c in cards if row.id in text_of(c)]
                    assert len(mine) == 1 and [c.ts for c in row.cards] == [mine[0].params["_ts"]], where
                    assert len([d for d in dms(slack, POSTED_NOW) if row.id in text_of(d)]) == 1, where

                slack.clear()
                opened = [f"o{round_no}-{i}" for i in range(PER_ROUND)]
                for entry_point in opened:
                    agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
                racing = pool.submit(lambda names=opened: [open_request(driver, slack, e) for e in names])
                while not racing.done():
                    run_sweep(bots[1])
                racing.result()
                for bot in bots:
                    bot.drain()
                run_sweep(bots[1])
                cards = [c for c in slack.of("chat.postMessage") if is_card(c)]
                assert len(cards) == PER_ROUND and dms(slack, POSTED_NOW) == [] and dms(slack, NO_CARD) == [], where
                for entry_point in opened:
                    (row,) = [r for r in store.requests.open_requests() if r.target.entry_point == entry_point]
                    assert len(row.cards) == 1, where
    finally:
        for bot in bots:
            bot.stop()
