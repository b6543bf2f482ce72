"""Reads kept until the next commit (bot/store/kept.py): a `/recording get`'s store reads are
answered from memory while nothing was committed since, and from the database after any
commit of this process, on any engine of the same SQLite file; never kept on PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, text

from bot.models import Target
from bot.store import open_store
from bot.store.engine import Commits, DatabaseInUse, commits_of, make_engine, only_process
from bot.store.kept import KEPT_SECONDS, KeptReads, kept_reads
from bot.store.values import SwitchRow, utcnow
from tests.conftest import APP_ID
from tests.test_switch_store import new_switch_request


class Counted:
    """A query that says how often it ran and answers what `value` holds now."""

    def __init__(self, value: object = "first") -> None:
        self.value = value
        self.runs = 0

    def __call__(self) -> object:
        self.runs += 1
        return self.value


def test_an_answer_is_kept_until_a_commit() -> None:
    commits = Commits()
    reads, query = KeptReads(commits), Counted()
    assert [reads.read("k", query) for _ in range(3)] == ["first"] * 3
    assert query.runs == 1
    query.value = "second"
    commits.add()
    assert reads.read("k", query) == "second" and query.runs == 2
    assert reads.read("k", query) == "second" and query.runs == 2


def test_an_answer_is_kept_for_five_seconds_at_most() -> None:
    """A write no commit of this process counted (a hand edit) shows within KEPT_SECONDS."""
    now = [100.0]
    reads, query = KeptReads(Commits(), clock=lambda: now[0]), Counted()
    reads.read("k", query)
    now[0] += KEPT_SECONDS - 0.01
    reads.read("k", query)
    assert query.runs == 1
    now[0] += 0.01
    query.value = "edited by hand"
    assert reads.read("k", query) == "edited by hand" and query.runs == 2
    assert reads.read("k", query) == "edited by hand" and query.runs == 2


def test_keys_are_kept_apart() -> None:
    reads = KeptReads(Commits())
    assert reads.read(("state", "a"), lambda: 1) == 1
    assert reads.read(("state", "b"), lambda: 2) == 2
    assert reads.read(("state", "a"), lambda: 3) == 1


def test_without_a_commit_count_every_read_queries() -> None:
    reads, query = KeptReads(None), Counted()
    for _ in range(3):
        reads.read("k", query)
    assert query.runs == 3


def test_an_answer_read_while_a_commit_was_made_is_not_kept_as_current() -> None:
    """The commit may have landed after the query read the row: only a read begun after
    it may be kept."""
    commits = Commits()
    reads = KeptReads(commits)

    def query_meanwhile_committed() -> str:
        commits.add()
        return "maybe before the commit"

    assert reads.read("k", query_meanwhile_committed) == "maybe before the commit"
    after = Counted("after the commit")
    assert reads.read("k", after) == "after the commit" and after.runs == 1
    assert reads.read("k", after) == "after the commit" and after.runs == 1


def test_past_its_bound_everything_kept_is_let_go() -> None:
    reads = KeptReads(Commits(), at_most=3)
    for key in range(3):
        reads.read(key, lambda: "kept")
    reads.read("fourth", lambda: "kept")
    again = Counted()
    assert reads.read(0, again) == "first" and again.runs == 1


@given(
    st.lists(st.one_of(st.tuples(st.just("read"), st.integers(0, 3)), st.tuples(st.just("write"), st.integers(0, 3))))
)
def test_every_read_answers_what_the_database_holds_now(steps: list[tuple[str, int]]) -> None:
    """Whatever the order of reads and committed writes, a read answers the latest write."""
    database: dict[int, int] = {}
    commits = Commits()
    reads = KeptReads(commits)
    for version, (step, key) in enumerate(steps):
        if step == "write":
            database[key] = version
            commits.add()
        else:
            assert reads.read(key, lambda key=key: database.get(key)) == database.get(key)


def test_the_count_never_goes_back_under_concurrent_commits() -> None:
    commits = Commits()
    threads = [threading.Thread(target=lambda: [commits.add() for _ in range(2000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert commits.count == 8000


def test_a_commit_on_any_engine_of_the_file_counts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    first, second = make_engine(url), make_engine(url)
    counted = commits_of(url)
    assert counted is not None
    try:
        with first.begin() as conn:
            conn.execute(text("create table t (x integer)"))
        before = counted.count
        with second.begin() as conn:
            conn.execute(text("insert into t values (1)"))
        assert counted.count > before
        before = counted.count
        with first.connect() as conn:  # a read, or a write rolled back, commits nothing
            conn.execute(text("select * from t")).all()
            conn.execute(text("insert into t values (2)"))
            conn.rollback()
        assert counted.count == before
    finally:
        first.dispose()
        second.dispose()


def test_nothing_is_kept_on_postgresql_or_a_read_only_file(tmp_path: Path) -> None:
    assert commits_of("postgresql://recbot@127.0.0.1:1/none") is None
    assert commits_of("sqlite://") is None
    path = tmp_path / "ro.db"
    make_engine(f"sqlite:///{path}").dispose()
    read_only = make_engine(f"sqlite:///{path}", read_only=True)
    query = Counted()
    reads = kept_reads(read_only)
    reads.read("k", query)
    reads.read("k", query)
    assert query.runs == 2


def test_the_stores_answer_what_was_written_through_another_engine(tmp_path: Path) -> None:
    """A get's three reads (the switch, the open request, stream tasks), each kept, then
    answered anew after writes made by a second store on the same file."""
    url = f"sqlite:///{tmp_path / 'recbot.db'}"
    reading, writing = open_store(url), open_store(url)
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    every_region = Target.every_region(APP_ID, "live")
    try:
        assert reading.switches.state(APP_ID, "live") is None
        assert reading.switches.stream_tasks_of(target) == []
        assert reading.requests.open_request_for(every_region) is None

        writing.switches.put(SwitchRow(APP_ID, "live", False, "switch", "set", "UALICE", utcnow()))
        writing.switches.add_stream_task(target, "s1", "UALICE")
        new_switch_request(writing, "r1", target=every_region)
        state = reading.switches.state(APP_ID, "live")
        assert state is not None and state.enabled is False
        assert [task.stream for task in reading.switches.stream_tasks_of(target)] == ["s1"]
        request = reading.requests.open_request_for(every_region)
        assert request is not None and request.id == "r1"

        writing.switches.remove_stream_task(target, "s1")
        assert writing.requests.transition("r1", "pending", "expire")
        assert reading.switches.stream_tasks_of(target) == []
        assert reading.requests.open_request_for(every_region) is None
    finally:
        reading.close()
        writing.close()


def test_a_second_recbot_through_a_symlink_to_the_file_is_refused(tmp_path: Path) -> None:
    """One process writes the file, whatever name it is reached by: the kept reads rely on it."""
    real, alias = tmp_path / "recbot.db", tmp_path / "alias.db"
    alias.symlink_to(real)
    (tmp_path / "linked").symlink_to(tmp_path, target_is_directory=True)
    with only_process(f"sqlite:///{real}"):
        for other in (alias, tmp_path / "linked" / "recbot.db"):
            with pytest.raises(DatabaseInUse), only_process(f"sqlite:///{other}"):
                pass
    with only_process(f"sqlite:///{alias}"):  # and the other way round
        with pytest.raises(DatabaseInUse), only_process(f"sqlite:///{real}"):
            pass


def test_a_switch_change_is_decided_on_the_database_not_on_what_is_kept(tmp_path: Path) -> None:
    """A write made outside this process (by hand) is not counted: what is shown may lag (5 s at
    most), but a change of the switch reads the row as it is."""
    url = f"sqlite:///{tmp_path / 'recbot.db'}"
    store = open_store(url)
    try:
        store.switches.put(SwitchRow(APP_ID, "live", False, "switch", "set", "UALICE", utcnow()))
        assert store.switches.state(APP_ID, "live").wanted is False  # type: ignore[union-attr]
        with sqlite3.connect(tmp_path / "recbot.db") as by_hand:  # uncounted
            by_hand.execute("update recording_switches set wanted = 1, actor = 'UHAND'")
        assert store.switches.state(APP_ID, "live").actor == "UALICE"  # type: ignore[union-attr]
        assert store.switches.state(APP_ID, "live", kept=False).actor == "UHAND"  # type: ignore[union-attr]
    finally:
        store.close()


def test_each_key_answers_for_its_own_rows_alone(tmp_path: Path) -> None:
    """With no commit between them, reads of neighbouring keys (another app, entry point or
    region) each answer their own rows, not one kept for another."""
    store = open_store(f"sqlite:///{tmp_path / 'recbot.db'}")
    a_live, a_live_eu = (
        Target(app_id="A", entry_point="live", region="na"),
        Target(app_id="A", entry_point="live", region="eu"),
    )
    a_other, b_live = (
        Target(app_id="A", entry_point="other", region="na"),
        Target(app_id="B", entry_point="live", region="na"),
    )
    try:
        for app_id, entry_point, wanted in (("A", "live", True), ("B", "live", False), ("A", "other", False)):
            store.switches.put(
                SwitchRow(app_id, entry_point, wanted, "switch", "set", f"U{app_id}{entry_point}", utcnow())
            )
        for stream, target in zip(("s1", "s2", "s3", "s4"), (a_live, a_live_eu, a_other, b_live), strict=True):
            store.switches.add_stream_task(target, stream, "UALICE")
        for request_id, target in (("r1", Target.every_region("A", "live")), ("r2", Target.every_region("A", "other"))):
            new_switch_request(store, request_id, target=target)
        for _ in range(2):  # answered by the database, then from what is kept
            assert [store.switches.state(a, e).actor for a, e in (("A", "live"), ("B", "live"), ("A", "other"))] == [  # type: ignore[union-attr]
                "UAlive",
                "UBlive",
                "UAother",
            ]
            assert store.switches.state("B", "other") is None
            tasks = [
                [t.stream for t in store.switches.stream_tasks_of(t)] for t in (a_live, a_live_eu, a_other, b_live)
            ]
            assert tasks == [["s1"], ["s2"], ["s3"], ["s4"]]
            opened = [
                store.requests.open_request_for(Target.every_region(a, e))
                for a, e in (("A", "live"), ("A", "other"), ("B", "live"))
            ]
            assert [r.id if r else None for r in opened] == ["r1", "r2", None]
            assert store.requests.open_request_for(a_live) is None  # one region: not the every-region request
    finally:
        store.close()


def test_what_a_read_returns_is_the_callers_to_change(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'recbot.db'}")
    target = Target(app_id=APP_ID, entry_point="live", region="na")
    try:
        store.switches.add_stream_task(target, "s1", "UALICE")
        store.switches.stream_tasks_of(target).clear()
        assert [t.stream for t in store.switches.stream_tasks_of(target)] == ["s1"]
    finally:
        store.close()


def test_a_read_made_while_a_commit_lands_is_read_again_after_it(tmp_path: Path) -> None:
    """The count moves once the commit has landed: a read taken as the COMMIT starts (which
    sees the row as it was) is not kept past it."""
    url = f"sqlite:///{tmp_path / 'recbot.db'}"
    reading, writing = open_store(url), open_store(url)
    seen: list[SwitchRow | None] = []

    def read_on_commit(statement: str) -> None:
        if statement == "COMMIT":
            seen.append(reading.switches.state(APP_ID, "live"))

    event.listen(
        writing.engine, "connect", lambda dbapi_connection, _: dbapi_connection.set_trace_callback(read_on_commit)
    )
    writing.engine.dispose()  # its connections from now on are traced
    try:
        writing.switches.put(SwitchRow(APP_ID, "live", False, "switch", "set", "UALICE", utcnow()))
        assert seen == [None]  # read as the commit began: the row not there yet
        state = reading.switches.state(APP_ID, "live")
        assert state is not None and state.actor == "UALICE"
    finally:
        reading.close()
        writing.close()


def test_a_file_named_two_ways_has_one_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert commits_of("sqlite:///r.db") is commits_of(f"sqlite:///{tmp_path}/r.db")
    relative, absolute = open_store("sqlite:///r.db"), open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        assert relative.switches.state(APP_ID, "live") is None
        absolute.switches.put(SwitchRow(APP_ID, "live", False, "switch", "set", "UALICE", utcnow()))
        assert relative.switches.state(APP_ID, "live") is not None
    finally:
        relative.close()
        absolute.close()
