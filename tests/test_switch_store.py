"""The store's part of the recording switch and single streams (schema v6), on
the embedded SQLite and on the local PostgreSQL: request kinds, what recbot
knows of each switch, the per-entry-point switch lock, and the upgrade."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import inspect

from bot.models import EVERY_REGION, FieldChange, Target
from bot.store import Store, migrations, open_store
from bot.store.schema import audit_events, change_requests
from bot.store.values import SwitchBusy, SwitchRow, TargetBusy, utcnow
from tests.legacy_schema import rebuild
from tests.test_store import CHANGES, TARGET, new_request, store  # noqa: F401 - the store fixture

LIVE_AS_A_WHOLE = Target.every_region("A", "live")
SWITCH_CHANGES = [FieldChange("Custom recording, every stream", "on", "paused")]


def new_switch_request(
    store: Store,  # noqa: F811 - not the fixture: any store
    request_id: str = "s1",
    enabled: bool = False,
    target: Target = LIVE_AS_A_WHOLE,
):
    """A pause (or resume) request of `target`, every region, waiting for approval for an hour."""
    return store.requests.create(
        request_id=request_id,
        target=target,
        requester="UALICE",
        expires_at=utcnow() + timedelta(hours=1),
        base_digest="",
        sealed_patch=None,
        changes=SWITCH_CHANGES,
        kind="switch",
        spec={"enabled": enabled},
    )


def test_a_switch_request_reads_back_with_its_kind_and_spec(store: Store) -> None:  # noqa: F811
    row = new_switch_request(store)
    assert (row.kind, row.spec, row.sealed_patch, row.problem) == ("switch", {"enabled": False}, None, None)
    assert row.target == LIVE_AS_A_WHOLE and row.target.describe() == "live (every region, app A)"
    assert new_request(store).kind == "config"  # a config request of one region is another target
    with pytest.raises(TargetBusy):
        new_switch_request(store, "s2", enabled=True)  # one open switch request per entry point
    assert store.requests.transition("s1", "pending", "cancel")
    new_switch_request(store, "s3")


def test_a_kind_this_recbot_does_not_know_is_a_problem_not_a_crash(store: Store) -> None:  # noqa: F811
    new_switch_request(store)
    with store.engine.begin() as conn:
        conn.execute(change_requests.update().values(kind="bulk"))
    (row,) = store.requests.open_requests()
    assert row.problem and "bulk" in row.problem


def test_history_of_a_region_includes_its_entry_points_switch(store: Store) -> None:  # noqa: F811
    store.audit.append("paused", "UALICE", LIVE_AS_A_WHOLE, changes=SWITCH_CHANGES)
    store.audit.append("direct_change", "UALICE", TARGET, changes=CHANGES)
    store.audit.append("stream_on", "UALICE", Target(app_id="A", entry_point="live", region="eu"))
    history = store.audit.history(TARGET)
    assert [(e.event, e.target.region) for e in history] == [("direct_change", "na"), ("paused", EVERY_REGION)]
    assert store.audit.history(Target(app_id="A", entry_point="other", region="na")) == []


def _state(enabled: bool | None, cause: str = "switch", entry_point: str = "live") -> SwitchRow:
    status = "sending" if enabled is None else "set"
    return SwitchRow("A", entry_point, bool(enabled), cause, status, "UALICE", utcnow(), None)


def test_what_recbot_knows_of_a_switch_is_kept_per_entry_point(store: Store) -> None:  # noqa: F811
    assert store.switches.state("A", "live") is None
    store.switches.put(_state(False))
    store.switches.put(_state(None, entry_point="other"))
    assert store.switches.state("A", "live").enabled is False
    store.switches.put(_state(True, "config"))
    known = store.switches.state("A", "live")
    assert (known.enabled, known.cause, known.at.tzinfo is not None) == (True, "config", True)
    assert [(s.entry_point, s.enabled) for s in store.switches.states("A")] == [("live", True), ("other", None)]
    assert store.switches.states("B") == []
    store.switches.forget("A", "live")
    assert store.switches.state("A", "live") is None


def test_stream_tasks_are_listed_once_until_removed(store: Store) -> None:  # noqa: F811
    store.switches.add_stream_task(TARGET, "cam/1", "UALICE")
    store.switches.add_stream_task(TARGET, "cam/1", "UBOB")  # started again: still one
    (task,) = store.switches.stream_tasks()
    assert (task.target, task.stream, task.started_by) == (TARGET, "cam/1", "UBOB")
    assert store.switches.remove_stream_task(TARGET, "cam/1") and not store.switches.remove_stream_task(TARGET, "cam/1")
    assert store.switches.stream_tasks() == []


def test_the_switch_lock_has_one_holder_per_entry_point(store: Store) -> None:  # noqa: F811
    shared = store.engine.dialect.name == "postgresql"
    other = open_store(store.engine.url.render_as_string(hide_password=False)) if shared else store
    try:
        with store.switches.lock("A", "live"):
            with pytest.raises(SwitchBusy):
                with other.switches.lock("A", "live", timeout=0.2):
                    pass
            with other.switches.lock("A", "other", timeout=5):  # another entry point is free
                pass
        with other.switches.lock("A", "live", timeout=5):  # released
            pass
    finally:
        if other is not store:
            other.close()


def test_a_wait_for_the_switch_lock_shorter_than_a_millisecond_still_gives_up(store: Store) -> None:  # noqa: F811
    """PostgreSQL reads a lock_timeout of 0 ms as no limit at all: a tiny wait must not become a wait forever."""
    shared = store.engine.dialect.name == "postgresql"
    other = open_store(store.engine.url.render_as_string(hide_password=False)) if shared else store
    gave_up: list[bool] = []

    def wait_briefly() -> None:
        try:
            with other.switches.lock("A", "live", timeout=0.0005):
                gave_up.append(False)
        except SwitchBusy:
            gave_up.append(True)

    try:
        with store.switches.lock("A", "live"):
            waiter = threading.Thread(target=wait_briefly, daemon=True)
            waiter.start()
            waiter.join(20)
            assert gave_up == [True]  # refused while held; not still waiting when the holder lets go
    finally:
        if other is not store:
            other.close()


def test_the_switch_lock_makes_the_second_holder_wait(store: Store) -> None:  # noqa: F811
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with store.switches.lock("A", "live"):
            holding.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    with store.switches.lock("A", "live", timeout=30):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_a_version_4_database_with_rows_is_upgraded_in_place(store: Store) -> None:  # noqa: F811
    url = rebuild(store.engine, "v4")  # as schema version 4 left it, with a pending request and audit rows
    upgraded = open_store(url)
    try:
        with upgraded.engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position(migrations.head())
            tables = set(inspect(conn).get_table_names())
            assert {"recording_switches", "stream_tasks"} <= tables
            assert conn.execute(audit_events.select()).first() is not None
        row = upgraded.requests.get("open1")
        assert (row.kind, row.spec, row.problem, row.sealed_patch) == ("config", None, None, b"ciphertext")
        assert upgraded.requests.transition("open1", "pending", "cancel")
        new_switch_request(upgraded)
        upgraded.switches.put(_state(False))
        assert upgraded.switches.state("A", "live").enabled is False
    finally:
        upgraded.close()


def test_a_version_6_database_learns_which_stream_tasks_got_no_answer(store: Store) -> None:  # noqa: F811
    url = rebuild(store.engine, "v6")  # as schema version 6 left it, with stream task cam1 of TARGET
    upgraded = open_store(url)
    try:
        with upgraded.engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position(migrations.head())
        assert [(t.stream, t.answered) for t in upgraded.switches.stream_tasks()] == [("cam1", True)]  # accepted before
        upgraded.switches.add_stream_task(TARGET, "cam-2", "UBOB", answered=False)
        upgraded.switches.add_stream_task(TARGET, "cam1", "UBOB", answered=False)  # asked again; no answer this time
        assert [(t.stream, t.answered) for t in upgraded.switches.stream_tasks_of(TARGET)] == [
            ("cam1", False),
            ("cam-2", False),
        ]
        upgraded.switches.add_stream_task(TARGET, "cam1", "UBOB")  # and then accepted
        assert [(t.stream, t.answered) for t in upgraded.switches.stream_tasks_of(TARGET)] == [
            ("cam1", True),
            ("cam-2", False),
        ]
    finally:
        upgraded.close()
