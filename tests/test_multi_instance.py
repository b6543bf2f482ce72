"""Two bot instances on one PostgreSQL: concurrent clicks apply a change
exactly once, and people see exactly one outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.lifecycle import ENDED_STATES
from bot.models import Target
from bot.settings import load_settings
from bot.store.schema import change_requests
from bot.store.values import utcnow
from handlers.blocks import approval_card as card
from handlers.blocks import drift_card
from handlers.notify import Notifier
from recbot.app import ORPHAN_AGE, orphan_age_at_start, sweep
from tests.approval_helpers import NEW_ACCESS, NEW_SECRET, card_shown, click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


@pytest.fixture
def shared_settings(settings_overrides: dict[str, Any], postgres_url: str) -> Any:
    return load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": postgres_url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()},
    )


ROUNDS = 20
CLICKS = 20


def test_twenty_clicks_over_two_instances_apply_and_announce_once(shared_settings, slack, agora) -> None:
    """Each round: both approvers click Approve ten times each, spread over both
    instances at once. Every round must end with one PATCH, one DM to the
    requester, one audited approval and application, one card write (the
    winner's), an applied card, and every other click told so alone."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    approvers = ["UBOB", "UCAROL"]
    try:
        with ThreadPoolExecutor(CLICKS) as pool:
            for round_no in range(ROUNDS):
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)
                slack.clear()
                agora.clear()
                posted = request_storage_change(drivers[round_no % 2], slack)
                clicks = [(drivers[i % 2], approvers[(i // 2) % 2]) for i in range(CLICKS)]
                list(pool.map(lambda c, p=posted: click(c[0], p, c[1], card.ACTION_APPROVE), clicks))
                for bot in bots:
                    bot.drain()
                where = f"round {round_no}"
                assert len(agora.calls("PATCH")) == 1, where
                dms = [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                assert len(dms) == 1 and "Applied" in text_of(dms[0]), where
                shown = card_shown(slack, posted)
                assert "Applied" in shown and card.BLOCK_BUTTONS not in shown, where
                card_writes = [c for c in slack.of("chat.update") if c.params["ts"] == posted.params["_ts"]]
                assert len(card_writes) == 1, f"{where}: {len(card_writes)} card writes"
                replies = [text_of(c) for c in slack.of("response_url")]
                assert len(replies) == CLICKS - 1 and all("already" in r for r in replies), where
                assert all(c.params["response_type"] == "ephemeral" for c in slack.of("response_url")), where
                store = bots[0].services.store
                (row,) = [r for r in store.requests.in_state("applied") if r.cards[0].ts == posted.params["_ts"]]
                events = [e.event for e in store.audit.history(row.target, 100) if e.request_id == row.id]
                assert events.count("applied") == 1 and events.count("approved") == 1, f"{where}: {events}"
                assert row.sealed_patch is None, where
    finally:
        for bot in bots:
            bot.stop()
    storage = agora.config(APP_ID, "live", "na")["storageConfig"]
    assert (storage["accessKey"], storage["secretKey"]) == (NEW_ACCESS, NEW_SECRET)


def test_a_starting_instance_leaves_another_instances_apply_alone(shared_settings, slack, agora) -> None:
    first = start_bot(shared_settings, fast_agora(shared_settings))
    try:
        request_storage_change(SlackDriver(first.url, SIGNING_SECRET, slack.response_url()), slack)
        (row,) = first.services.store.requests.open_requests()
        requests = first.services.store.requests
        assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")
        assert requests.transition(row.id, "approved", "claim")  # first is applying it now
        second = start_bot(shared_settings, fast_agora(shared_settings))
        try:
            assert second.services.store.requests.get(row.id).state == "applying"  # not taken over at start
            assert orphan_age_at_start(second.services) == ORPHAN_AGE
            (ended,) = second.services.approvals.recover(timedelta(0))  # once it is old enough
            assert ended.state == "failed" and "not sent again" in (ended.result or "")
            assert agora.calls("PATCH") == []
        finally:
            second.stop()
    finally:
        first.stop()


def test_the_apply_claim_has_one_winner_across_instances(shared_settings, slack, agora) -> None:
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    driver = SlackDriver(bots[0].url, SIGNING_SECRET, slack.response_url())
    store = bots[0].services.store
    try:
        with ThreadPoolExecutor(2) as pool:
            for round_no in range(ROUNDS):
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)
                agora.clear()
                request_storage_change(driver, slack)
                (row,) = store.requests.open_requests()
                assert store.requests.transition(row.id, "pending", "approve", decided_by="UBOB")
                results = list(pool.map(lambda b, r=row.id: b.services.approvals.apply(r), bots))
                winners = [r for r in results if r is not None]
                assert len(winners) == 1 and winners[0].state == "applied", f"round {round_no}: {results}"
                assert len(agora.calls("PATCH")) == 1, f"round {round_no}"
    finally:
        for bot in bots:
            bot.stop()


def test_approve_reject_and_cancel_at_once_end_the_request_one_way(shared_settings, slack, agora) -> None:
    """Each round the approver approves, another rejects and the requester
    cancels, at once, on both instances: one outcome, told once, everywhere."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    store = bots[0].services.store
    outcomes = set()
    try:
        with ThreadPoolExecutor(6) as pool:
            for round_no in range(ROUNDS):
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)
                slack.clear()
                agora.clear()
                posted = request_storage_change(drivers[round_no % 2], slack)
                click(drivers[0], posted, "UCAROL", card.ACTION_REJECT)
                (opened,) = slack.wait_for("views.open", count=2)[1:]
                modal = {**opened.params["view"], "id": "VREJECT"}
                jobs = [(move, drivers[i % 2]) for i, move in enumerate(["approve", "reject", "cancel"] * 2)]
                list(pool.map(lambda job, p=posted, m=modal: decide(job[0], job[1], p, m), jobs))
                for bot in bots:
                    bot.drain()
                where = f"round {round_no}"
                (row,) = [r for r in store.requests.in_state(*ENDED_STATES) if r.cards[0].ts == posted.params["_ts"]]
                outcomes.add(row.state)
                assert len(agora.calls("PATCH")) == (1 if row.state == "applied" else 0), where
                dms = [text_of(c) for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                assert len(dms) == 1 and row.state.capitalize() in dms[0], f"{where}: {row.state} {dms}"
                shown = card_shown(slack, posted)
                assert row.state.capitalize() in shown and card.BLOCK_BUTTONS not in shown, f"{where}: {row.state}"
                events = [e.event for e in store.audit.history(row.target, 100) if e.request_id == row.id]
                assert [e for e in events if e in ENDED_STATES] == [row.state], f"{where}: {events}"
    finally:
        for bot in bots:
            bot.stop()
    assert outcomes <= {"applied", "rejected", "cancelled"}


def decide(move: str, driver: SlackDriver, posted: Any, reject_modal: dict[str, Any]) -> None:
    if move == "approve":
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
    elif move == "reject":
        reason = {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "not this bucket"}}}
        assert driver.submit("UCAROL", reject_modal, reason).status_code == 200
    else:
        click(driver, posted, "UALICE", card.ACTION_CANCEL)


def test_two_sweepers_expire_each_request_once(shared_settings, slack, agora) -> None:
    bots = [start_bot(shared_settings, fast_agora(shared_settings), sweep_seconds=3600) for _ in range(2)]
    driver = SlackDriver(bots[0].url, SIGNING_SECRET, slack.response_url())
    store = bots[0].services.store
    entry_points = [f"ep{i}" for i in range(10)]
    for entry_point in entry_points:
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
    try:
        with ThreadPoolExecutor(4) as pool:
            for round_no in range(3):
                slack.clear()
                cards = [request_storage_change(driver, slack, entry_point=e) for e in entry_points]
                with store.engine.begin() as conn:
                    conn.execute(change_requests.update().values(expires_at=utcnow() - timedelta(seconds=1)))
                sweeps = [(b, Notifier(b.app.client, b.services)) for b in bots] * 2
                list(pool.map(lambda job: sweep(job[0].services, job[1]), sweeps))
                for posted in cards:
                    where = f"round {round_no}, card {posted.params['_ts']}"
                    assert "Expired" in card_shown(slack, posted), where
                    writes = [c for c in slack.of("chat.update") if c.params["ts"] == posted.params["_ts"]]
                    assert len(writes) == 1, where
                dms = [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                assert len(dms) == len(entry_points) and all("Expired" in text_of(d) for d in dms)
                expired = [e for t in entry_points for e in store.audit.history(target(t), 100) if e.event == "expired"]
                assert len(expired) == len(entry_points) * (round_no + 1)
    finally:
        for bot in bots:
            bot.stop()


def test_two_sweepers_make_each_failed_announcement_once(shared_settings, slack, agora) -> None:
    """Each round ten requests expire while Slack refuses every card write, so no end is
    announced; then both instances sweep twice at once: each end is announced exactly once."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings), sweep_seconds=3600) for _ in range(2)]
    driver = SlackDriver(bots[0].url, SIGNING_SECRET, slack.response_url())
    store = bots[0].services.store
    entry_points = [f"ep{i}" for i in range(10)]
    for entry_point in entry_points:
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
    sweepers = [(b, Notifier(b.app.client, b.services)) for b in bots]
    try:
        with ThreadPoolExecutor(4) as pool:
            for round_no in range(5):
                where = f"round {round_no}"
                slack.clear()
                cards = [request_storage_change(driver, slack, entry_point=e) for e in entry_points]
                with store.engine.begin() as conn:
                    conn.execute(change_requests.update().values(expires_at=utcnow() - timedelta(seconds=1)))
                slack.errors["chat.update"] = "internal_error"
                list(pool.map(lambda job: sweep(job[0].services, job[1]), sweepers))
                del slack.errors["chat.update"]
                assert len(store.announcements.unannounced_ends()) == len(entry_points), where
                assert [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"] == [], where
                list(pool.map(lambda job: sweep(job[0].services, job[1]), sweepers * 2))
                dms = [text_of(c) for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
                for posted in cards:
                    shown = card_shown(slack, posted)
                    assert "Expired" in shown and card.BLOCK_BUTTONS not in shown, where
                    request_id = shown.split("Recording change request ")[1].split(" ")[0]
                    assert len([d for d in dms if request_id in d]) == 1, f"{where}: {request_id}"
                assert len(dms) == len(entry_points) and store.announcements.unannounced_ends() == [], where
    finally:
        for bot in bots:
            bot.stop()


def target(entry_point: str) -> Target:
    return Target(app_id=APP_ID, entry_point=entry_point, region="na")


DRIFT_ROUNDS = 10
WATCHED = [f"ep{i}" for i in range(5)]


def test_two_watching_instances_announce_each_outside_change_once(shared_settings, slack, agora) -> None:
    """Both instances watch every 20 ms. Each round five entry points change
    outside recbot at once; each change must get exactly one alert card, one
    audit event, and, when both approvers acknowledge it on both instances at
    once, one acknowledgement; Agora only ever gets reads."""
    from tests.test_drift import click_alert, is_alert, replies, settle

    settings = shared_settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.02})
    for entry_point in WATCHED:
        agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
    bots = [start_bot(settings, fast_agora(settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    store = bots[0].services.store
    for entry_point in WATCHED:
        bots[0].services.read_config(target(entry_point))  # as a /recording get does: remembered
    try:
        with ThreadPoolExecutor(4) as pool:
            for round_no in range(DRIFT_ROUNDS):
                where = f"round {round_no}"
                slack.clear()
                for entry_point in WATCHED:
                    changed = {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"]}}
                    changed["storageConfig"]["bucket"] = f"console-{round_no}"
                    agora.put(APP_ID, entry_point, "na", changed)
                slack.wait_for("chat.postMessage", count=len(WATCHED), where=is_alert)
                for bot in bots:
                    settle(bot, passes=3)
                cards = [c for c in slack.of("chat.postMessage") if is_alert(c)]
                assert sorted(c.params["text"].split(": ")[1].split(" ")[0] for c in cards) == WATCHED, where
                for entry_point in WATCHED:
                    events = [e.event for e in store.audit.history(target(entry_point), 100)]
                    assert events.count("changed_outside") == round_no + 1, f"{where}: {events}"
                clicks = [
                    (posted, drivers[i % 2], ["UBOB", "UCAROL"][i // 2 % 2]) for posted in cards for i in range(4)
                ]
                list(pool.map(lambda c: click_alert(c[1], c[0], c[2], "drift_acknowledge"), clicks))
                for bot in bots:
                    bot.drain()
                told = replies(slack, 0)
                assert len(told) == len(cards) * 3 and all("already acknowledged" in t for t in told), where
                for posted in cards:
                    assert "Acknowledged" in card_shown(slack, posted), where
                for bot in bots:
                    settle(bot, passes=3)
                assert len([c for c in slack.of("chat.postMessage") if is_alert(c)]) == len(WATCHED), where
                assert store.drift.open_alerts() == [], where
                acknowledged = [
                    e for t in WATCHED for e in store.audit.history(target(t), 100) if e.event == "drift_acknowledged"
                ]
                assert len(acknowledged) == len(WATCHED) * (round_no + 1), where
    finally:
        for bot in bots:
            bot.stop()
    assert agora.calls("PATCH") == []


SIGHT_ROUNDS = 20


def test_an_approval_clicked_the_instant_its_card_is_posted_counts(shared_settings, slack, agora) -> None:
    """Slack can deliver a click on a card before recbot has heard back that the card was
    posted (so before it knows the card's ts). Each round the Slack fake clicks Approve the
    moment it has posted the card, through the other instance: in even rounds the click is
    handled in full before the poster hears back, in odd rounds at the same time. The click
    counts every time, the change is applied once, and people see it once."""
    bots = [start_bot(shared_settings, fast_agora(shared_settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    store = bots[0].services.store
    now: dict[str, Any] = {}

    def click_on_sight(posted: Any) -> None:
        if posted.params.get("channel") != "CAPPROVE" or not posted.params["text"].startswith("Recording change"):
            return
        clicker = (now["round"] + 1) % 2
        click(drivers[clicker], posted, "UBOB", card.ACTION_APPROVE)
        if now["round"] % 2 == 0:
            bots[clicker].drain()  # the poster is a listener of the other instance, waiting for this answer

    slack.after["chat.postMessage"] = click_on_sight
    try:
        for round_no in range(SIGHT_ROUNDS):
            where = f"round {round_no}"
            now["round"] = round_no
            agora.put(APP_ID, "live", "na", LIVE_CONFIG)
            slack.clear()
            agora.clear()
            posted = request_storage_change(drivers[round_no % 2], slack)
            slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
            for bot in bots:
                bot.drain()
            assert [text_of(c) for c in slack.of("response_url")] == [], where  # nobody was refused
            (row,) = [
                r for r in store.requests.in_state(*ENDED_STATES) if r.cards and r.cards[0].ts == posted.params["_ts"]
            ]
            assert row.state == "applied" and row.approvers == ["UBOB"], f"{where}: {row.state}"
            assert len(agora.calls("PATCH")) == 1, where
            shown = card_shown(slack, posted)
            assert "Applied" in shown and card.BLOCK_BUTTONS not in shown, where
            dms = [text_of(c) for c in slack.of("chat.postMessage") if c.params["channel"] == "UALICE"]
            assert len(dms) == 1 and "Applied" in dms[0], where
            events = [e.event for e in store.audit.history(row.target, 100) if e.request_id == row.id]
            assert sorted(events) == ["applied", "approved", "requested"], f"{where}: {events}"
    finally:
        for bot in bots:
            bot.stop()


def test_an_outside_change_acknowledged_the_instant_its_alert_is_posted_counts(shared_settings, slack, agora) -> None:
    """As above for the drift alert's Acknowledge: the Slack fake clicks it the moment it has
    posted the alert card, through either instance (handled in full before the watch hears
    back in even rounds, at the same time in odd ones): acknowledged once, by that click."""
    from tests.test_drift import click_alert, is_alert, settle

    settings = shared_settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.02})
    agora.put(APP_ID, "live", "na", LIVE_CONFIG)
    bots = [start_bot(settings, fast_agora(settings)) for _ in range(2)]
    drivers = [SlackDriver(b.url, SIGNING_SECRET, slack.response_url()) for b in bots]
    store = bots[0].services.store
    bots[0].services.read_config(target("live"))  # as a /recording get does: remembered
    now: dict[str, Any] = {}

    def acknowledge_on_sight(posted: Any) -> None:
        if not is_alert(posted):
            return
        clicker = now["round"] % 2
        click_alert(drivers[clicker], posted, "UBOB", "drift_acknowledge")
        if now["round"] % 2 == 0:
            bots[clicker].drain()  # the poster is a watch thread, not a listener: nothing waits on it

    slack.after["chat.postMessage"] = acknowledge_on_sight
    try:
        for round_no in range(SIGHT_ROUNDS):
            where = f"round {round_no}"
            now["round"] = round_no
            slack.clear()
            changed = {**LIVE_CONFIG, "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": f"c-{round_no}"}}
            agora.put(APP_ID, "live", "na", changed)
            (posted,) = slack.wait_for("chat.postMessage", where=is_alert)
            for bot in bots:
                settle(bot, passes=3)
            assert [text_of(c) for c in slack.of("response_url")] == [], where  # nobody was refused
            shown = card_shown(slack, posted)
            assert "Acknowledged" in shown and "<@UBOB>" in shown and drift_card.BLOCK_BUTTONS not in shown, where
            assert len([c for c in slack.of("chat.postMessage") if is_alert(c)]) == 1, where
            assert store.drift.open_alerts() == [], where
            events = [e.event for e in store.audit.history(target("live"), 100)]
            assert events.count("drift_acknowledged") == events.count("changed_outside") == round_no + 1, where
    finally:
        for bot in bots:
            bot.stop()
    assert agora.calls("PATCH") == []
