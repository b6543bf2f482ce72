"""Migrations by Alembic: a database recbot made before Alembic, at any hand-written schema
version, upgrades in place with every row kept, on SQLite and PostgreSQL; a fresh one
upgrades to the head; `alembic check` finds nothing to generate; two instances starting
at once on PostgreSQL upgrade once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import inspect, select, text

from bot.seal import Sealer
from bot.store import migrations, open_store
from bot.store.engine import make_engine
from bot.store.schema import agora_budget, metadata
from bot.store.values import PlannedTarget
from tests.conftest import POSTGRES_URL
from tests.legacy_schema import LAYOUTS, build
from tests.test_doctor import cli

Urls = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Urls]:
    """Makes URLs of empty databases: SQLite files, or fresh schemas of the local PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield lambda: f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        return
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    made: list[str] = []

    def fresh() -> str:
        schema = f"recbot_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"

    yield fresh
    for schema in made:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    admin.close()


def _same(value: Any) -> Any:
    """A value as both dialects hand it back: datetimes in UTC without a zone (SQLite drops it)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def _rows(url: str, table: str, columns: list[str]) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            t = metadata.tables[table]
            found = conn.execute(select(*[t.c[c] for c in columns])).mappings()
            return [{k: _same(v) for k, v in r.items()} for r in found]
    finally:
        engine.dispose()


def _position(url: str) -> tuple[migrations.Position, set[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.position(conn), set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_database_made_before_alembic_upgrades_in_place_with_every_row_kept(new_url: Urls, layout: str) -> None:
    url = new_url()
    legacy = make_engine(url)
    written = build(legacy, layout)
    legacy.dispose()
    assert set(written) >= {"change_requests", "approvals", "audit_events"}
    store = open_store(url)
    try:
        for table, rows in written.items():
            expected = [{k: _same(v) for k, v in r.items()} for r in rows]
            assert sorted(_rows(url, table, list(rows[0])), key=repr) == sorted(expected, key=repr), (
                f"{layout}: {table}"
            )
        versions, _ = LAYOUTS[layout]
        after = {r["id"]: r for r in _rows(url, "change_requests", ["id", "version", "announced_version", "kind"])}
        if 5 not in versions:  # open requests are tracked from the upgrade on, ended ones never announced again
            assert after["open1"]["announced_version"] == after["open1"]["version"]
            assert after["ended1"]["announced_version"] is None
        assert after["open1"]["version"] == (2 if 2 in versions else 0)
        assert {r["kind"] for r in after.values()} == {"config"}
        # What recbot reads of them.
        opened = store.requests.get("open1")
        assert opened is not None and opened.problem is None and opened.sealed_patch == b"ciphertext"
        assert opened.cards[0].channel == "CAPPROVE" and opened.approvers == []
        ended = store.requests.get("ended1")
        assert ended is not None and ended.approvers == ["UBOB"] and ended.state == "applied"
        assert store.announcements.unannounced_ends() == []
        assert [e.event for e in store.audit.latest()] == ["applied", "requested"]  # newest first
        if 4 in versions:
            assert [a.id for a in store.drift.open_alerts()] == ["alert1"] and store.homes.all() == ["UBOB"]
        if 6 in versions:
            switch = store.switches.state("A", "live")
            assert switch is not None and switch.enabled is False
            assert [(t.stream, t.answered) for t in store.switches.stream_tasks()] == [("cam1", True)]
        # It moves on as any request does, and its end is tracked.
        assert store.requests.transition("open1", "pending", "cancel")
        assert [r.id for r in store.announcements.unannounced_ends()] == ["open1"]
    finally:
        store.close()
    where, tables = _position(url)
    assert where == migrations.Position(migrations.head()) and "schema_version" not in tables


def test_a_fresh_database_upgrades_to_the_head_and_alembic_check_finds_nothing(new_url: Urls) -> None:
    url = new_url()
    store = open_store(url)
    try:
        migrations.check(store.engine)  # AutogenerateDiffsDetected if schema.py and the revisions differ
        with store.engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position(migrations.head())
            assert migrations.pending(conn) == []
    finally:
        store.close()
    again = open_store(url)  # a second start finds nothing to do
    again.close()


# An upgrade of a fresh database, killed (SIGKILL: nothing of the process's own runs) right after
# its third CREATE TABLE.
KILLED_HALFWAY = """
import os, signal, sys
from sqlalchemy import event
from bot.store import migrations
from bot.store.engine import make_engine

engine = make_engine(sys.argv[1])
created = []

@event.listens_for(engine, "after_cursor_execute")
def kill_halfway(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created.append(statement)
        if len(created) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

migrations.upgrade(engine)
"""


def test_an_upgrade_stopped_halfway_leaves_nothing_and_the_next_start_upgrades(new_url: Urls) -> None:
    url = new_url()
    root = str(Path(__file__).resolve().parent.parent)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_HALFWAY, url], env={**os.environ, "PYTHONPATH": root}, timeout=120
    )
    assert killed.returncode == -9
    where, tables = _position(url)
    assert where == migrations.Position(None) and tables == set()  # not tables without a revision
    open_store(url).close()  # a later start upgrades it, from nothing
    assert _position(url)[0] == migrations.Position(migrations.head())


@pytest.mark.parametrize("layout", ["v1", "v5-switches-first"])
def test_alembic_check_finds_nothing_after_an_upgrade_from_before_alembic(new_url: Urls, layout: str) -> None:
    url = new_url()
    legacy = make_engine(url)
    build(legacy, layout)
    legacy.dispose()
    store = open_store(url)
    try:
        migrations.check(store.engine)
    finally:
        store.close()


def test_what_an_upgrade_would_apply_is_told_without_applying_it(new_url: Urls) -> None:
    url = new_url()
    engine = make_engine(url)
    build(engine, "v3")
    try:
        with engine.connect() as conn:
            where = migrations.position(conn)
            todo = [revision for revision, _ in migrations.pending(conn)]
        assert where == migrations.Position("0003", legacy_version=3)
        assert todo == ["0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0012"]
        with engine.connect() as conn:
            assert "alembic_version" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == 3
    finally:
        engine.dispose()


def test_a_database_at_0009_with_rows_upgrades_to_the_head_with_every_row_kept(new_url: Urls) -> None:
    """Revision 0010 only adds the job tables, 0011 the budget's rate, 0012 columns and tables for
    jobs in Slack, the audit's job_id and the fleet scans: a database at 0009 (made
    before Alembic, with rows in every table, upgraded to 0009 as a release of it did) keeps every
    row and the budget's tokens, and takes jobs."""
    url = new_url()
    engine = make_engine(url)
    written = build(engine, "v7")
    with engine.begin() as conn:
        MigrationContext.configure(conn).stamp(migrations.scripts(), "0007")
        command.upgrade(migrations.config(conn), "0009")
        conn.execute(agora_budget.update().values(tokens=7.5))
    engine.dispose()
    where, tables = _position(url)
    assert where == migrations.Position("0009") and "jobs" not in tables
    added_since = {("agora_budget", "rate"), ("audit_events", "job_id")}  # 0011's and 0012's
    every_column = {
        table: [c.name for c in metadata.tables[table].c if (table, c.name) not in added_since]
        for table in tables - {"alembic_version"}
    }
    before = {table: sorted(_rows(url, table, columns), key=repr) for table, columns in every_column.items()}
    assert all(before[table] for table in written) and before["agora_budget"][0]["tokens"] == 7.5
    store = open_store(url)
    try:
        for table, columns in every_column.items():
            assert sorted(_rows(url, table, columns), key=repr) == before[table], table
        assert _rows(url, "jobs", ["id"]) == [] and _rows(url, "job_targets", ["id"]) == []
        assert _rows(url, "agora_budget", ["rate"]) == [{"rate": None}]  # no instance has written it yet
        store.jobs.create(
            job_id="j1",
            requester="UALICE",
            change={"hls": True},
            sealed_secrets=None,
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            targets=[PlannedTarget(store.requests.get("open1").target, {"digest": "d"})],
        )
        assert store.jobs.progress("j1")["planned"] == 1
        migrations.check(store.engine)
    finally:
        store.close()
    where, tables = _position(url)
    assert where == migrations.Position(migrations.head()) == migrations.Position("0012")
    assert {"jobs", "job_targets", "job_approvals", "fleet_scans"} <= tables


ROUNDS = 10

# A start's upgrade in a process of its own, once the test says go, its log on stderr.
START = """
import logging, pathlib, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from bot.store import open_store
pathlib.Path(sys.argv[2] + ".ready").touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.005)
open_store(sys.argv[1]).close()
"""


@pytest.mark.parametrize("new_url", ["postgresql"], indirect=True)  # the embedded SQLite has one process
def test_two_instances_starting_at_once_upgrade_once(new_url: Urls, tmp_path: Path) -> None:
    """Each round, two processes start on one PostgreSQL database (fresh, or made before Alembic with
    rows) at once: both start, every revision runs once, and no row is lost or doubled."""
    for round_no in range(ROUNDS):
        url = new_url()
        if round_no % 2:
            legacy = make_engine(url)
            build(legacy, "v4")
            legacy.dispose()
        go = tmp_path / f"go{round_no}"
        starts = [
            subprocess.Popen(
                [sys.executable, "-c", START, url, f"{go}"],
                stderr=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).parent.parent,
            )
            for _ in range(2)
        ]
        while not Path(f"{go}.ready").exists():
            time.sleep(0.005)
        time.sleep(0.05)  # both have imported recbot by now, or nearly: the go matters, not the pause
        go.touch()
        logs = [start.communicate(timeout=60)[1] for start in starts]
        where = f"round {round_no}"
        assert [start.returncode for start in starts] == [0, 0], f"{where}: {logs}"
        ran = [line for log in logs for line in log.splitlines() if line.startswith("Running upgrade")]
        assert len(ran) == len(set(ran)) and any("0007 -> 0008" in line for line in ran), f"{where}: {ran}"
        where_now, _ = _position(url)
        assert where_now == migrations.Position(migrations.head()), where
        if round_no % 2:
            assert len(_rows(url, "change_requests", ["id"])) == 2, where


def test_migrate_upgrades_before_a_rollout_and_sql_prints_it_applying_nothing(
    new_url: Urls, settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    url = new_url()
    engine = make_engine(url)
    build(engine, "v3")
    env = {**{k: str(v) for k, v in settings_overrides.items()}, "DATABASE_URL": url}
    # Its open request is sealed: without a key given, migrate refuses to make a new one over it.
    key = Fernet.generate_key().decode()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE change_requests SET sealed_patch = :sealed"), {"sealed": Sealer(key.encode()).seal("{}")}
        )
    env["RECBOT_SEAL_KEY"] = key
    try:
        printed = cli(["migrate", "--sql"], tmp_path, env)
        assert printed.returncode == 0, printed.stderr
        sql = printed.stdout
        assert "ALTER TABLE change_requests ADD COLUMN announced_version INTEGER" in sql
        assert "CREATE TABLE recording_switches" in sql and "DROP TABLE IF EXISTS schema_version" in sql
        assert "INSERT INTO alembic_version (version_num) VALUES ('0003')" in sql  # stamped first
        assert "CREATE TABLE observed_configs" in sql and "CREATE TABLE change_requests" not in sql
        with engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position("0003", legacy_version=3)  # nothing applied
        done = cli(["migrate"], tmp_path, env)
        assert done.returncode == 0 and done.stderr == "", done.stderr  # the key opens what is sealed: no warning
        assert (
            f"upgraded from revision 0003 (schema_version 3, from before Alembic) to revision {migrations.head()}"
            in (done.stdout)
        )
        with engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position(migrations.head())
        again = cli(["migrate"], tmp_path, env)
        assert again.returncode == 0 and f"already at revision {migrations.head()}" in again.stdout
        assert len(_rows(url, "change_requests", ["id"])) == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize("sql", [False, True], ids=["migrate", "sql"])
def test_migrate_refuses_a_name_one_typo_from_what_it_reads(tmp_path: Path, sql: bool) -> None:
    """DATABSE_URL left DATABASE_URL at its default: a deploy job upgraded a new SQLite file beside
    it, said so, exited 0, and the database it meant was never upgraded."""
    (tmp_path / ".env").write_text(f"DATABSE_URL=sqlite:///{tmp_path / 'meant.db'}\n")
    refused = cli(["migrate", *(["--sql"] if sql else [])], tmp_path, {})
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        "recbot cannot migrate: DATABSE_URL in .env is not a name recbot reads: if it is meant as DATABASE_URL, "
        "rename it\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_migrate_sql_reads_no_seal_key_even_for_a_shared_database(new_url: Urls, tmp_path: Path) -> None:
    """A DBA reviewing the SQL is not handed the key that opens the credentials stored in it."""
    url = new_url()
    printed = cli(["migrate", "--sql"], tmp_path, {"DATABASE_URL": url})
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE change_requests" in printed.stdout
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert migrations.position(conn) == migrations.Position(None)  # nothing applied
    finally:
        engine.dispose()


def test_migrate_reads_the_database_settings_alone(tmp_path: Path) -> None:
    """A DBA or a deploy job has the database's URL, not the bot's Slack and Agora credentials;
    those it does not read at all, so a broken one stops nothing either."""
    database = tmp_path / "recbot.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", "SLACK_BOT_TOKEN": "not-a-token", "AGORA_RATE_LIMIT": "lots"}
    printed = cli(["migrate", "--sql"], tmp_path, env)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE change_requests" in printed.stdout and not database.exists()
    done = cli(["migrate"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert f"upgraded from no revision (empty) to revision {migrations.head()}" in done.stdout
    assert f"made the seal key {database}.key (mode 0600)" in done.stdout
    with make_engine(f"sqlite:///{database}").connect() as conn:
        assert migrations.position(conn) == migrations.Position(migrations.head())


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DATABASE_URL": "sqlite:///"}, "DATABASE_URL names no file"),
        ({"DATABASE_URL": "mysql://db/recbot"}, "DATABASE_URL must start with sqlite:///"),
        ({"DATABASE_URL": "postgresql://db.invalid/recbot"}, "RECBOT_SEAL_KEY is required with a shared"),
        ({"RECBOT_SEAL_KEY": "\u200bsecret-key-pasted"}, "RECBOT_SEAL_KEY contains a character that is not printable"),
        ({"RECBOT_SEAL_KEY": "short-secret-key"}, "RECBOT_SEAL_KEY is not a valid key"),
    ],
)
def test_migrate_says_what_is_wrong_with_the_database_settings_and_touches_nothing(
    tmp_path: Path, env: dict[str, str], said: str
) -> None:
    refused = cli(["migrate"], tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'recbot.db'}", **env})
    assert refused.returncode == 2 and f"recbot cannot migrate: {said}" in refused.stderr
    assert "secret-key" not in refused.stderr and list(tmp_path.iterdir()) == []


def test_a_database_a_newer_recbot_upgraded_is_refused_at_start_and_left_alone(
    settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    url = settings_overrides["DATABASE_URL"]
    open_store(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrations.UnknownRevision):
        open_store(url)
    env = {k: str(v) for k, v in settings_overrides.items()}
    started = cli(["--http", "--host", "127.0.0.1", "--port", "0"], tmp_path, env)
    assert started.returncode == 2
    assert "recbot cannot start: the database is at revision 9999, which this recbot does not know" in started.stderr
    refused = cli(["migrate"], tmp_path, env)
    assert refused.returncode == 2 and "the database is at revision 9999, which this recbot does not" in refused.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    engine.dispose()
