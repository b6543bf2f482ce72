"""Announcing the end of a request (cards updated in place, the requester told) happens
once across every process, and an announcement that failed is made by a later sweep."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import handlers.notify
from bot.models import Target
from bot.settings import Settings
from bot.store import Store, open_store
from bot.store.schema import change_requests
from bot.store.values import utcnow
from handlers.blocks import approval_card as card
from handlers.notify import Notifier
from recbot.app import sweep
from tests.approval_helpers import card_shown, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.slack import Call, FakeSlack
from tests.legacy_schema import rebuild
from tests.test_store import new_request

QUIET = 3600.0  # a sweep interval no test reaches: only the sweeps a test runs itself
REQUESTERS = {"one": "UALICE", "two": "UDAVE", "three": "UERIN"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = open_store(url)
    yield opened
    opened.close()


def ended(store: Store, request_id: str = "r1", announcer: str | None = None) -> str:
    new_request(store, request_id)
    assert store.requests.transition(request_id, "pending", "expire", announcer=announcer)
    return request_id


def test_an_end_is_claimed_by_one_caller_and_announced_once(store: Store) -> None:
    request_id = ended(store)
    assert [r.id for r in store.announcements.unannounced_ends()] == [request_id]
    token = store.announcements.claim(request_id)
    assert token is not None
    assert store.announcements.claim(request_id) is None  # held
    assert store.announcements.claim(request_id, stale_before=utcnow() - timedelta(minutes=5)) is None  # not stale
    store.announcements.release(request_id, "not-the-holder")
    assert store.announcements.claim(request_id) is None  # only the holder releases it
    store.announcements.release(request_id, token)  # it failed: free again
    again = store.announcements.claim(request_id)
    assert again is not None
    store.announcements.finish(request_id, token)  # a holder that was taken over finishes nothing
    assert [r.id for r in store.announcements.unannounced_ends()] == [request_id]
    store.announcements.finish(request_id, again)
    assert store.announcements.unannounced_ends() == []
    assert store.announcements.claim(request_id, stale_before=utcnow()) is None


def test_whoever_ends_a_request_holds_the_claim_from_that_moment(store: Store) -> None:
    request_id = ended(store, announcer="mover")
    assert store.announcements.claim(request_id) is None  # a sweep running now leaves it to the mover
    store.announcements.finish(request_id, "mover")
    assert store.announcements.unannounced_ends() == []


def test_an_open_request_has_nothing_to_announce(store: Store) -> None:
    new_request(store)
    assert store.announcements.unannounced_ends() == [] and store.announcements.claim("r1") is None


def test_a_claim_whose_holder_stopped_is_taken_over_once_it_is_stale(store: Store) -> None:
    request_id = ended(store, announcer="stopped")
    with store.engine.begin() as conn:  # claimed ten minutes ago by a process that went away since
        conn.execute(update(change_requests).values(announce_claimed_at=utcnow() - timedelta(minutes=10)))
    assert store.announcements.claim(request_id) is None
    assert store.announcements.claim(request_id, stale_before=utcnow() - timedelta(minutes=15)) is None
    assert store.announcements.claim(request_id, stale_before=utcnow() - timedelta(minutes=5)) is not None


def test_concurrent_claims_have_one_winner(store: Store) -> None:
    with ThreadPoolExecutor(8) as pool:
        for round_no in range(20):
            request_id = ended(store, f"r{round_no}")
            stale = [None, utcnow()] * 4  # movers, and sweeps that would take over a stale claim
            won = list(pool.map(lambda s, r=request_id: store.announcements.claim(r, stale_before=s), stale))
            assert len([w for w in won if w]) == 1, f"round {round_no}: {won}"


def test_a_version_4_database_with_rows_is_upgraded_and_announces_nothing_old(store: Store) -> None:
    # As schema version 4 left it: "ended1" ended before the upgrade (its end was announced
    # then, or never will be), "open1" is pending.
    url = rebuild(store.engine, "v4")
    upgraded = open_store(url)
    try:
        assert upgraded.announcements.unannounced_ends() == []
        assert upgraded.requests.get("ended1").state == "applied" and upgraded.requests.get("open1").state == "pending"
        assert upgraded.requests.transition("open1", "pending", "cancel")  # ends after the upgrade: tracked
        assert [r.id for r in upgraded.announcements.unannounced_ends()] == ["open1"]
        token = upgraded.announcements.claim("open1")
        assert token is not None
        upgraded.announcements.finish("open1", token)
        assert upgraded.announcements.unannounced_ends() == []
    finally:
        upgraded.close()


@pytest.fixture
def quiet_bot(settings: Settings) -> Iterator[RunningBot]:
    bot = start_bot(settings, fast_agora(settings), sweep_seconds=QUIET)
    yield bot
    bot.stop()


def dms(slack: FakeSlack, user: str) -> list[str]:
    return [text_of(c) for c in slack.of("chat.postMessage") if c.params["channel"] == user]


def open_requests(bot: RunningBot, slack: FakeSlack, agora: Any) -> dict[str, Call]:
    """One storage-change request per requester, each for its own entry point; their cards."""
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    cards = {}
    for entry_point, user in REQUESTERS.items():
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
        cards[entry_point] = request_storage_change(driver, slack, user=user, entry_point=entry_point)
    bot.drain()
    return cards


def expire_all(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(change_requests).values(expires_at=utcnow() - timedelta(seconds=1)))


def assert_announced_once(slack: FakeSlack, store: Store, cards: dict[str, Call]) -> None:
    for entry_point, user in REQUESTERS.items():
        shown = card_shown(slack, cards[entry_point])
        assert "Expired" in shown and card.BLOCK_BUTTONS not in shown, entry_point
        told = dms(slack, user)
        assert len(told) == 1 and "Expired" in told[0], f"{user}: {told}"
    for entry_point in REQUESTERS:
        events = [e.event for e in store.audit.history(Target(app_id=APP_ID, entry_point=entry_point, region="na"))]
        assert events.count("expired") == 1, entry_point


class NoticeFails:
    """The requester's notice cannot be built once (a bug met by one odd row): the announcement raises."""

    def __init__(self) -> None:
        self.raised = 0
        self._build = handlers.notify.approval_card.requester_notice

    def __call__(self, row: Any) -> list[dict[str, Any]]:
        if not self.raised:
            self.raised += 1
            raise ValueError("an odd row")
        return self._build(row)


@pytest.mark.parametrize("failure", ["card write rate-limited", "notice dropped", "announcement raises"])
def test_an_end_whose_announcement_failed_is_announced_by_the_next_sweep(
    quiet_bot, slack, agora, monkeypatch, failure
) -> None:
    cards = open_requests(quiet_bot, slack, agora)
    store = quiet_bot.services.store
    expire_all(store)
    notice_fails = NoticeFails()
    if failure == "card write rate-limited":
        slack.rate_limit("chat.update", times=3, retry_after=0)  # more than the client's retries
    elif failure == "notice dropped":
        slack.hang_ups["chat.postMessage"] = 3
    else:
        monkeypatch.setattr(handlers.notify.approval_card, "requester_notice", notice_fails)
    notifier = Notifier(quiet_bot.app.client, quiet_bot.services)

    sweep(quiet_bot.services, notifier)
    met = {
        "card write rate-limited": len(slack.of("chat.update:rate_limited")),
        "notice dropped": len(slack.of("chat.postMessage:dropped")),
        "announcement raises": notice_fails.raised * 3,
    }
    assert met[failure] == 3  # the first announcement failed
    sweep(quiet_bot.services, notifier)
    assert_announced_once(slack, store, cards)

    calls = len(slack.calls)
    sweep(quiet_bot.services, notifier)  # nothing is left to announce
    assert [c.method for c in slack.calls[calls:] if c.method.startswith("chat.")] == []
    assert store.announcements.unannounced_ends() == []


def test_an_announcement_that_failed_at_start_is_made_by_the_periodic_sweep(settings, slack, agora) -> None:
    """Requests that expired while recbot was stopped are announced by the sweep at start; one
    that Slack refused then is announced by a periodic sweep after it."""
    bot = start_bot(settings, fast_agora(settings), sweep_seconds=QUIET)
    try:
        cards = open_requests(bot, slack, agora)
        expire_all(bot.services.store)
    finally:
        bot.stop()
    slack.rate_limit("chat.update", times=3, retry_after=0)
    bot = start_bot(settings, fast_agora(settings), sweep_seconds=0.05)
    try:
        assert len(slack.of("chat.update:rate_limited")) == 3  # the sweep at start met it
        for user in REQUESTERS.values():
            slack.wait_for("chat.postMessage", where=lambda c, u=user: c.params["channel"] == u)
        bot.drain()
        assert_announced_once(slack, bot.services.store, cards)
    finally:
        bot.stop()
