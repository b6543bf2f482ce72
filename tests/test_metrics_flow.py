"""Change requests, applies, the drift watch and fleet-wide jobs, as /metrics counts them: the bot
driven with signed Slack requests, /metrics scraped before and after, and each counter moved by
exactly what happened (a move lost to another process moves nothing). The database's gauges are
read on SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Table, select, update
from sqlalchemy.exc import OperationalError

from bot.job_lifecycle import JOB_STATES
from bot.lifecycle import OPEN_STATES
from bot.settings import Settings, load_settings
from bot.store.engine import aware
from bot.store.schema import change_requests, drift_alerts
from handlers.blocks import approval_card as card
from handlers.blocks import job_card
from tests import bulk_helpers
from tests.approval_helpers import click, request_storage_change
from tests.bulk_helpers import ask, fleet
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator, Fault, Received
from tests.fakes.slack import FakeSlack
from tests.job_helpers import wait_until
from tests.metrics_helpers import Scrape, moved, scrape
from tests.switch_helpers import run
from tests.test_approvals import ended_card, ephemeral_replies
from tests.test_change_flow import final_view_text, open_form, state

# The families this file is about; what else a flow moves (Agora calls, Slack calls) is counted elsewhere.
FLOW = {
    "recbot_change_request_transitions_total",
    "recbot_applies_total",
    "recbot_change_request_decision_seconds_count",
    "recbot_drift_passes_total",
    "recbot_drift_pass_seconds_count",
    "recbot_bulk_targets_total",
}
HOUR = 3600.0
OUTSIDE_CHANGE: dict[str, Any] = {**copy.deepcopy(LIVE_CONFIG), "hlsConfig": {"enabled": True}}


def flow(before: Scrape, after: Scrape) -> dict[str, float]:
    """What moved among FLOW's series between two scrapes, each named `name{label=value,...}`."""
    found = {}
    for (name, labels), delta in moved(before, after).items():
        if name in FLOW:
            found[name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}"] = delta
    return found


def transition(event: str, state: str) -> str:
    return f"recbot_change_request_transitions_total{{event={event},state={state}}}"


def applies(outcome: str) -> str:
    return f"recbot_applies_total{{outcome={outcome}}}"


def decisions(decision: str) -> str:
    return f"recbot_change_request_decision_seconds_count{{decision={decision}}}"


def passes(outcome: str) -> str:
    return f"recbot_drift_passes_total{{outcome={outcome}}}"


def targets(outcome: str) -> str:
    return f"recbot_bulk_targets_total{{outcome={outcome}}}"


def backdate(bot: RunningBot, table: Table, column: str, by: timedelta) -> None:
    """Make the open rows of `table` older by `by` (computed here: SQLite cannot subtract an interval)."""
    key, when = table.c.id, table.c[column]
    with bot.services.store.engine.begin() as conn:
        rows = conn.execute(select(key, when).where(table.c.state.in_(("pending", "open")))).all()
        for row_id, at in rows:
            conn.execute(update(table).where(key == row_id).values({column: aware(at) - by}))


def backdate_request(bot: RunningBot, by: timedelta) -> None:
    """Make the pending request older than it is: its decision's wait and the oldest pending age grow by `by`."""
    backdate(bot, change_requests, "created_at", by)


def backdate_alerts(bot: RunningBot, by: timedelta) -> None:
    backdate(bot, drift_alerts, "detected_at", by)


def reject(driver: SlackDriver, slack: FakeSlack, posted: Any, user: str, reason: str) -> None:
    """Click Reject and submit the reason modal it opens."""
    opened = len(slack.of("views.open"))
    click(driver, posted, user, card.ACTION_REJECT)
    modal = slack.wait_for("views.open", count=opened + 1)[opened]
    view = {**modal.params["view"], "id": modal.params["_view_id"]}
    driver.submit(user, view, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": reason}}})


def test_an_approved_change_counts_its_creation_each_move_one_apply_and_its_wait(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    posted = request_storage_change(driver, slack)
    backdate_request(bot, timedelta(hours=1))
    pending = scrape(bot.metrics_url)
    assert flow(before, pending) == {transition("create", "pending"): 1}
    assert pending.value("recbot_change_requests_open", state="pending") == 1
    assert pending.value("recbot_change_requests_oldest_pending_seconds") >= HOUR
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    assert "Applied" in ended_card(slack, posted)
    click(driver, posted, "UCAROL", card.ACTION_APPROVE)  # too late: moves nothing
    assert "already applied" in ephemeral_replies(slack)[0]
    bot.drain()
    after = scrape(bot.metrics_url)
    assert flow(pending, after) == {
        transition("approve", "approved"): 1,
        transition("claim", "applying"): 1,
        transition("confirm", "applied"): 1,
        applies("applied"): 1,
        decisions("approved"): 1,
    }
    # Observed from the request's creation (an hour ago), not from the click: in the 4-hour bucket.
    waited = "recbot_change_request_decision_seconds"
    assert after.value(f"{waited}_sum", decision="approved") >= HOUR
    assert after.value(f"{waited}_bucket", decision="approved", le="3600.0") == 0
    assert after.value(f"{waited}_bucket", decision="approved", le="14400.0") == 1
    assert after.value("recbot_change_requests_open", state="pending") == 0
    assert after.value("recbot_change_requests_oldest_pending_seconds") == 0


def test_a_rejection_counts_its_move_and_its_wait_and_no_apply(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    posted = request_storage_change(driver, slack)
    reject(driver, slack, posted, "UBOB", "wrong bucket")
    assert "Rejected" in ended_card(slack, posted)
    bot.drain()
    after = scrape(bot.metrics_url)
    assert flow(before, after) == {
        transition("create", "pending"): 1,
        transition("reject", "rejected"): 1,
        decisions("rejected"): 1,
    }
    assert agora.calls("PATCH") == []


def test_a_cancellation_is_a_move_but_no_decision(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    posted = request_storage_change(driver, slack)
    click(driver, posted, "UALICE", card.ACTION_CANCEL)
    assert "Cancelled" in ended_card(slack, posted)
    bot.drain()
    assert flow(before, scrape(bot.metrics_url)) == {
        transition("create", "pending"): 1,
        transition("cancel", "cancelled"): 1,
    }


def test_a_request_found_stale_counts_a_stale_apply(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    posted = request_storage_change(driver, slack)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)  # changed after the request was made
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    assert "Stale" in ended_card(slack, posted)
    bot.drain()
    assert flow(before, scrape(bot.metrics_url)) == {
        transition("create", "pending"): 1,
        transition("approve", "approved"): 1,
        transition("claim", "applying"): 1,
        transition("find_stale", "stale"): 1,
        applies("stale"): 1,
        decisions("approved"): 1,
    }
    assert agora.calls("PATCH") == []


class TestExpiry:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_REQUEST_TTL_SECONDS": "1"}

    def test_the_sweep_expiring_a_request_counts_one_move(self, driver, slack, agora, bot) -> None:
        before = scrape(bot.metrics_url)
        posted = request_storage_change(driver, slack)
        assert "Expired" in ended_card(slack, posted)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)  # too late: moves nothing
        assert "already expired" in ephemeral_replies(slack)[0]
        bot.drain()
        after = scrape(bot.metrics_url)
        assert flow(before, after) == {transition("create", "pending"): 1, transition("expire", "expired"): 1}
        assert after.value("recbot_change_requests_open", state="pending") == 0


def test_direct_changes_count_as_applies_applied_or_failed_and_move_no_request(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    driver.submit("UALICE", open_form(driver, slack), state(mp4=True, hls=True))
    assert "applied" in final_view_text(slack, count=2)
    applied = scrape(bot.metrics_url)
    assert flow(before, applied) == {applies("applied"): 1}
    agora.inject(Fault(400, message="bad body", method="PATCH"))
    driver.submit("UALICE", open_form(driver, slack), state(mp4=False, hls=True))
    assert "not applied" in final_view_text(slack, count=4)
    failed = scrape(bot.metrics_url)
    assert flow(applied, failed) == {applies("failed"): 1}
    view = open_form(driver, slack)
    agora.put(APP_ID, "live", "na", LIVE_CONFIG)  # changed since the form was read: stale, nothing sent
    driver.submit("UALICE", view, state(mp4=False, hls=True))
    assert "changed since you opened the form" in final_view_text(slack, count=6)
    bot.drain()
    assert flow(failed, scrape(bot.metrics_url)) == {}


def test_a_claim_lost_to_another_process_is_not_counted(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    requests = bot.services.store.requests
    assert requests.transition(row.id, "pending", "approve", decided_by="UBOB")  # another process's moves:
    assert requests.transition(row.id, "approved", "claim")  # counted by that process, not this one
    before = scrape(bot.metrics_url)
    assert bot.services.approvals.apply(row.id) is None
    bot.drain()
    assert flow(before, scrape(bot.metrics_url)) == {}


def test_an_end_lost_to_another_process_counts_no_apply(driver, slack, agora, bot) -> None:
    """While this process PATCHes, another one fails the request (its recovery, say): this
    process's confirm loses the compare-and-set, so neither the confirm nor an apply is counted."""
    before = scrape(bot.metrics_url)
    posted = request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()

    def fail_it_elsewhere(_: Received) -> None:
        assert bot.services.store.requests.transition(row.id, "applying", "fail", result="failed elsewhere")

    agora.after["PATCH"] = fail_it_elsewhere
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    wait_until(lambda: len(agora.calls("PATCH")) == 1, "the change was sent")
    bot.drain()
    assert bot.services.store.requests.get(row.id).state == "failed"
    assert flow(before, scrape(bot.metrics_url)) == {
        transition("create", "pending"): 1,
        transition("approve", "approved"): 1,
        transition("claim", "applying"): 1,
        decisions("approved"): 1,
    }


def remember(driver: SlackDriver, slack: FakeSlack, bot: RunningBot) -> None:
    """A `/recording get`: the first read of a target makes recbot remember it."""
    answered = len(slack.of("response_url"))
    driver.command("get live na")
    slack.wait_for("response_url", count=answered + 1)
    bot.drain()


def test_drift_passes_count_those_run_done_or_failed_not_those_left_to_the_lock_holder(
    driver, slack, agora, bot
) -> None:
    """The periodic watch is off here (conftest): every pass is one this test runs."""
    drift = bot.services.drift
    remember(driver, slack, bot)
    before = scrape(bot.metrics_url)
    assert drift.run() == []
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    (opened,) = drift.run()
    assert opened.kind == "opened"
    backdate_alerts(bot, timedelta(hours=1))
    after = scrape(bot.metrics_url)
    done = {passes("done"): 2, "recbot_drift_pass_seconds_count{}": 2}
    assert flow(before, after) == done
    assert after.value("recbot_drift_alerts_open") == 1
    assert after.value("recbot_drift_alerts_oldest_open_seconds") >= HOUR

    with bot.services.store.drift.watch_lock() as held:  # as another process running a pass
        assert held
        assert drift.run() == []
    assert flow(after, scrape(bot.metrics_url)) == {}

    skipped = scrape(bot.metrics_url)
    database = Path(bot.services.settings.DATABASE_URL.removeprefix("sqlite:///"))
    aside = database.rename(database.with_suffix(".aside"))
    bot.services.store.engine.dispose()
    database.mkdir()  # the database cannot be opened: the pass cannot read what to watch
    try:
        with pytest.raises(OperationalError):
            drift.run()
    finally:
        database.rmdir()
        aside.rename(database)
    assert flow(skipped, scrape(bot.metrics_url)) == {passes("failed"): 1, "recbot_drift_pass_seconds_count{}": 1}

    drift.acknowledge(opened.alert.id, "UBOB")
    acknowledged = scrape(bot.metrics_url)
    assert acknowledged.value("recbot_drift_alerts_open") == 0
    assert acknowledged.value("recbot_drift_alerts_oldest_open_seconds") == 0


def test_a_fleet_wide_job_counts_each_target_it_ended_by_outcome(driver, slack, agora, bot) -> None:
    fleet(agora)  # cam0..cam5 and live, all of bucket rec-bucket: 7 targets
    before = scrape(bot.metrics_url)
    posted = ask(driver, slack)
    (job,) = bot.services.store.jobs.in_state("pending")
    asked = scrape(bot.metrics_url)
    assert asked.value("recbot_bulk_jobs", state="pending") == 1
    agora.put(APP_ID, "cam1", "na", OUTSIDE_CHANGE)  # changed since the plan read it: stale
    del agora.configs[(APP_ID, "cam2", "na")]  # deleted since: Agora answers 404, it fails
    bulk_helpers.click(driver, posted, "UBOB", job_card.ACTION_APPROVE)
    wait_until(lambda: not bot.services.bulk.get(job.id).is_open, "the job ended")
    bot.drain()
    after = scrape(bot.metrics_url)
    assert flow(before, after) == {targets("applied"): 5, targets("stale"): 1, targets("failed"): 1}
    assert len(agora.patches()) == 5
    assert after.value("recbot_bulk_jobs", state="done") == 1
    assert after.value("recbot_bulk_jobs", state="pending") == 0


def test_targets_already_as_asked_count_at_the_plan_and_those_never_sent_at_the_jobs_end(
    driver, slack, agora, bot
) -> None:
    fleet(agora)
    agora.put(APP_ID, "cam0", "na", OUTSIDE_CHANGE)  # records HLS already: nothing to send it
    agora.put(APP_ID, "cam1", "na", OUTSIDE_CHANGE)  # and so does this one: each counts
    before = scrape(bot.metrics_url)
    posted = ask(driver, slack, hls="on")
    asked = scrape(bot.metrics_url)
    assert flow(before, asked) == {targets("unchanged"): 2}
    bulk_helpers.click(driver, posted, "UALICE", job_card.ACTION_CANCEL)
    wait_until(lambda: bot.services.store.jobs.in_state("cancelled") != [], "the job was cancelled")
    bulk_helpers.click(driver, posted, "UALICE", job_card.ACTION_CANCEL)  # a late click ends nothing more
    bot.drain()
    assert flow(asked, scrape(bot.metrics_url)) == {targets("skipped"): 5}
    assert not agora.patches()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_settings(request: pytest.FixtureRequest, settings_overrides: dict[str, Any]) -> Settings:
    """The test's settings on the embedded SQLite, or on the local PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        return load_settings(_env_file=None, **settings_overrides)
    url = request.getfixturevalue("postgres_url")
    seal_key = Fernet.generate_key().decode()
    return load_settings(_env_file=None, **{**settings_overrides, "DATABASE_URL": url, "RECBOT_SEAL_KEY": seal_key})


@pytest.fixture
def any_bot(database_settings: Settings) -> Iterator[RunningBot]:
    running = start_bot(database_settings, fast_agora(database_settings))
    yield running
    running.stop()


def gauges(found: Scrape) -> dict[str, float]:
    """Every database gauge of a scrape, by `name{state=...}`."""
    read = {f"open{{{s}}}": found.value("recbot_change_requests_open", state=s) for s in OPEN_STATES}
    read |= {f"jobs{{{s}}}": found.value("recbot_bulk_jobs", state=s) for s in JOB_STATES}
    read["alerts"] = found.value("recbot_drift_alerts_open")
    return read


def test_the_database_gauges_read_requests_alerts_and_jobs(any_bot: RunningBot, slack, agora: AgoraEmulator) -> None:
    bot = any_bot
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    url = bot.metrics_url
    empty = scrape(url)
    assert empty.value("recbot_database_up") == 1
    assert set(gauges(empty).values()) == {0}
    assert empty.value("recbot_change_requests_oldest_pending_seconds") == 0
    assert empty.value("recbot_drift_alerts_oldest_open_seconds") == 0

    # Requests: by state, and the oldest pending one's age.
    request_storage_change(driver, slack)
    backdate_request(bot, timedelta(hours=2))
    found = scrape(url)
    assert gauges(found) == {**gauges(empty), "open{pending}": 1}
    assert found.value("recbot_change_requests_oldest_pending_seconds") >= 2 * HOUR
    (row,) = bot.services.store.requests.open_requests()
    requests = bot.services.store.requests
    for at, event, now in (("pending", "approve", "approved"), ("approved", "claim", "applying")):
        assert requests.transition(row.id, at, event)  # as another process leaves it, for a moment
        found = scrape(url)
        assert gauges(found) == {**gauges(empty), f"open{{{now}}}": 1}
        assert found.value("recbot_change_requests_oldest_pending_seconds") == 0  # none waits for approval
    assert requests.transition(row.id, "applying", "fail")
    assert gauges(scrape(url)) == gauges(empty)

    # Drift alerts: open, and the oldest's age.
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    (opened,) = bot.services.drift.run()
    backdate_alerts(bot, timedelta(hours=1))
    found = scrape(url)
    assert gauges(found) == {**gauges(empty), "alerts": 1}
    assert found.value("recbot_drift_alerts_oldest_open_seconds") >= HOUR
    bot.services.drift.acknowledge(opened.alert.id, "UBOB")
    found = scrape(url)
    assert gauges(found) == gauges(empty)
    assert found.value("recbot_drift_alerts_oldest_open_seconds") == 0

    # Fleet-wide jobs, by state.
    fleet(agora)
    posted = ask(driver, slack)
    assert gauges(scrape(url)) == {**gauges(empty), "jobs{pending}": 1}
    bulk_helpers.click(driver, posted, "UALICE", job_card.ACTION_CANCEL)
    wait_until(lambda: bot.services.store.jobs.in_state("cancelled") != [], "the job was cancelled")
    assert gauges(scrape(url)) == {**gauges(empty), "jobs{cancelled}": 1}


def test_the_oldest_pending_age_is_the_oldest_requests_not_the_newest(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack)
    backdate_request(bot, timedelta(hours=2))
    agora.put(APP_ID, "backup", "na", LIVE_CONFIG)
    request_storage_change(driver, slack, entry_point="backup")  # pending too, and new
    found = scrape(bot.metrics_url)
    assert found.value("recbot_change_requests_open", state="pending") == 2
    assert found.value("recbot_change_requests_oldest_pending_seconds") >= 2 * HOUR


def test_a_direct_pause_and_resume_count_as_applies_and_a_failed_one_as_failed(driver, slack, agora, bot) -> None:
    before = scrape(bot.metrics_url)
    run(driver, slack, "pause live")
    run(driver, slack, "resume live")
    sent = scrape(bot.metrics_url)
    assert flow(before, sent) == {applies("applied"): 2}
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    run(driver, slack, "pause live")
    assert flow(sent, scrape(bot.metrics_url)) == {applies("failed"): 1}


class TestASwitchAskedForApproval:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_APPROVAL_FOR": "all"}

    def test_is_an_ok_command_that_applies_nothing_yet(self, driver, slack, agora, bot) -> None:
        before = scrape(bot.metrics_url)
        run(driver, slack, "pause live")
        counted = lambda: scrape(bot.metrics_url).total("recbot_commands_total") > before.total("recbot_commands_total")  # noqa: E731
        wait_until(counted, "the command was counted")
        after = scrape(bot.metrics_url)
        commands = {labels: d for (name, labels), d in moved(before, after).items() if name == "recbot_commands_total"}
        assert commands == {frozenset({("verb", "pause"), ("outcome", "ok")}): 1}
        assert applies("applied") not in flow(before, after) and applies("failed") not in flow(before, after)
