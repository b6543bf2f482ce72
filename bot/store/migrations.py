"""The schema's migrations, by Alembic (alembic/ beside this file): where a database
stands, what an upgrade would apply, the upgrade itself (several processes starting
at once on PostgreSQL upgrade once, under an advisory lock), and the SQL of an
upgrade for a DBA to review. A database recbot made before Alembic carries a
`schema_version` table instead: it is stamped with the revision matching what it
holds, then upgraded like any other, every row kept."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from bot.store.engine import MIGRATION_LOCK, SCHEMA, is_postgresql
from bot.store.schema import metadata

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).with_name("alembic")

# What each revision matching a hand-written schema version added, as a database made before
# Alembic shows it: (revision, {table it has: columns that table has by then}).
LEGACY: list[tuple[str, dict[str, set[str]]]] = [
    ("0001", {"change_requests": set(), "approvals": set(), "audit_events": set()}),
    ("0002", {"change_requests": {"version"}}),
    ("0003", {"change_requests": {"probe"}}),
    ("0004", {"observed_configs": set(), "drift_alerts": set(), "home_viewers": set()}),
    ("0005", {"change_requests": {"announced_version", "announce_claimed_by", "announce_claimed_at"}}),
    ("0006", {"change_requests": {"kind", "spec"}, "recording_switches": set(), "stream_tasks": set()}),
    ("0007", {"stream_tasks": {"status"}}),
]

# Alembic's `op` and `context` are global to a process: its upgrades run one at a time.
_upgrading = threading.Lock()


class UnknownRevision(Exception):
    """Where the database stands is not a revision this recbot can upgrade from (a newer recbot
    upgraded it, or its alembic_version is not one revision); the message is one line,
    `<what>: <how to fix>`."""


class OfflineUnsafe(Exception):
    """The SQL of this database's upgrade cannot be printed correctly; the message says why, in one line."""


def shown(revision: str) -> str:
    """A revision as it may be printed: as stored when it looks like one, else escaped (repr), so that a
    stored value cannot forge a line of doctor's output or a log."""
    return revision if re.fullmatch(r"[0-9A-Za-z_]{1,40}", revision) else repr(revision[:40])


@dataclass(frozen=True)
class Position:
    """Where a database stands: its revision (None: empty), and for a database made
    before Alembic, the schema_version it carries (it is stamped at the next upgrade)."""

    revision: str | None
    legacy_version: int | None = None

    def describe(self) -> str:
        if self.revision is None:
            return "no revision (empty)"
        if self.legacy_version is not None:
            return f"revision {shown(self.revision)} (schema_version {self.legacy_version}, from before Alembic)"
        return f"revision {shown(self.revision)}"


def config(connection: Connection | None = None, *, dialect: str | None = None, out: TextIO | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: on `connection`, or offline for `dialect`."""
    cfg = Config(output_buffer=out, stdout=out) if out is not None else Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    cfg.attributes["dialect"] = dialect
    return cfg


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None
    return found


def position(conn: Connection) -> Position:
    """Where the database on `conn` stands, changing nothing; UnknownRevision when recbot cannot
    tell (several revisions at once, or recbot's tables with no revision at all)."""
    current = MigrationContext.configure(conn).get_current_heads()
    if len(current) > 1:
        raise UnknownRevision(
            f"the database's alembic_version holds {len(current)} revisions ({', '.join(map(shown, current))}) "
            "where recbot keeps one: restore the backup taken before it changed, or delete the row that is wrong"
        )
    if current:
        return Position(current[0])
    tables = set(inspect(conn).get_table_names())
    if "schema_version" not in tables:
        ours = sorted(tables & set(metadata.tables))
        if ours:
            raise UnknownRevision(
                f"the database holds recbot's tables ({', '.join(ours[:3])}{', ...' if len(ours) > 3 else ''}) "
                "but no alembic_version or schema_version, so its revision is unknown: restore the backup "
                "taken before, or point DATABASE_URL at an empty database"
            )
        return Position(None)
    version = conn.execute(text("SELECT version FROM schema_version")).scalar() or 0
    return Position(_legacy_revision(conn, tables, version), version)


def _legacy_revision(conn: Connection, tables: set[str], version: int) -> str | None:
    """The last revision whose tables and columns a pre-Alembic database holds, and every
    one's before it, up to its schema_version: a number alone is not trusted, as one
    release numbered the switch tables 5 before the announcement columns took that number."""
    found = None
    for revision, needs in LEGACY[:version]:
        for table, columns in needs.items():
            if table not in tables or not columns <= {c["name"] for c in inspect(conn).get_columns(table)}:
                return found
        found = revision
    return found


def pending(conn: Connection) -> list[tuple[str, str]]:
    """The revisions an upgrade would apply, oldest first, each with its title; UnknownRevision
    if the database is at a revision this recbot does not know."""
    start = position(conn).revision
    known = scripts()
    # Only a revision's exact id: a stored `head` or `0001+1` is a symbol to Alembic, not a revision.
    if start is not None and start not in {r.revision for r in known.walk_revisions()}:
        raise UnknownRevision(
            f"the database is at revision {shown(start)}, which this recbot does not know (its head is {head()}): "
            "a newer recbot upgraded it; run that recbot, or restore the backup taken before that upgrade"
        )
    todo = list(known.iterate_revisions("heads", start or "base"))
    return [(r.revision, r.doc.rstrip(".")) for r in reversed(todo) if r.revision != start]


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the migration lock of every process until it ends."""
    with _upgrading, engine.begin() as conn:
        if is_postgresql(engine):
            conn.execute(text(f"SELECT pg_advisory_xact_lock(:k, {SCHEMA})"), {"k": MIGRATION_LOCK})
        else:
            # Python's sqlite3 opens no transaction before CREATE or ALTER, so each would be kept
            # at once: a start stopped halfway left tables without a revision, a database no later
            # start could upgrade. An explicit BEGIN makes the upgrade all or nothing.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def upgrade(engine: Engine) -> None:
    """Bring the database to the head revision, stamping one made before Alembic first;
    the first of several processes starting at once does it, the others find it done.
    UnknownRevision if a newer recbot upgraded it, or its revision cannot be told."""
    with _locked(engine) as conn:
        where = position(conn)
        todo = pending(conn)  # UnknownRevision before anything is done
        if where.legacy_version is not None:
            context = MigrationContext.configure(conn)
            context.stamp(scripts(), where.revision or "base")
        command.upgrade(config(conn), "head")
    if todo:  # Alembic's own lines are silenced at a start (they are many, and mostly chatter)
        log.info(
            "upgraded the database from %s to revision %s: %s",
            where.describe(),
            head(),
            ", ".join(revision for revision, _ in todo),
        )


def upgrade_sql(engine: Engine | None, dialect: str, out: TextIO) -> None:
    """Print the SQL that would bring the database (on `engine`, which is only read; None: one
    that does not exist yet) to the head revision, applying nothing. UnknownRevision as an
    upgrade would refuse; OfflineUnsafe where the printed SQL would differ from the upgrade."""
    where, todo = Position(None), [(r.revision, r.doc) for r in scripts().walk_revisions()]
    if engine is not None:
        with engine.connect() as conn:
            if is_postgresql(engine):
                conn.execute(text("SET TRANSACTION READ ONLY"))
            where, todo = position(conn), pending(conn)
            ahead = _held_ahead(conn, where) if where.legacy_version is not None else []
        if ahead:
            raise OfflineUnsafe(
                f"the SQL of this upgrade cannot be printed: the database, made before Alembic at {where.describe()}, "
                f"already holds part of later revisions ({', '.join(ahead)}), which only the upgrade itself skips; "
                "review the upgrade by running `./run migrate` on a copy of the database instead"
            )
    if not todo:
        out.write(f"-- nothing to apply: the database is at revision {head()}, the head\n")
        return
    cfg = config(dialect=dialect, out=out)
    if where.legacy_version is not None:
        out.write("-- made before Alembic (schema_version): stamped first\n")
        command.stamp(cfg, where.revision or "base", sql=True)
    start = f"{where.revision}:" if where.revision else ""
    command.upgrade(cfg, f"{start}head", sql=True)


def _held_ahead(conn: Connection, where: Position) -> list[str]:
    """The tables and columns of revisions after `where` that a database made before Alembic
    holds already: an upgrade skips them (lacks), but printed SQL cannot look, and adds them."""
    done = [revision for revision, _ in LEGACY].index(where.revision) + 1 if where.revision else 0
    tables = set(inspect(conn).get_table_names())
    held = []
    for _revision, needs in LEGACY[done:]:
        for table, columns in needs.items():
            if table not in tables:
                continue
            if not columns:
                held.append(table)
            else:
                found = {c["name"] for c in inspect(conn).get_columns(table)}
                held += [f"{table}.{column}" for column in sorted(columns & found)]
    return held


def lacks(table: str, column: str | None = None) -> bool:
    """For a revision: whether the database lacks `table` (or its `column`). One made before
    Alembic may hold a later revision's part already; printing SQL, it lacks everything."""
    if context.is_offline_mode():
        return True
    found = inspect(op.get_bind())
    if not found.has_table(table):
        return True
    return column is not None and column not in {c["name"] for c in found.get_columns(table)}


def check(engine: Engine) -> None:
    """Alembic's autogenerate comparison of the database with the tables in schema.py;
    AutogenerateDiffsDetected if a revision is missing."""
    with engine.connect() as conn:
        command.check(config(conn))
