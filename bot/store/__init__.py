"""The store (SQLite by default, PostgreSQL through the same URL), one module per concern:
engine (dialects, shared locks), schema (tables), values (rows), requests, announcements,
audit, drift, homes, switches, jobs, job approvals, job_progress (what people see of a job),
fleet_scans, and migrations (Alembic). Services are handed the repository they need;
`open_store` builds them all on one engine, upgraded to the head revision, for the
composition root and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from bot.store import migrations
from bot.store.announcements import AnnouncementStore
from bot.store.audit import AuditLog
from bot.store.drift import DriftStore
from bot.store.engine import SharedLocks, make_engine, sqlite_path
from bot.store.fleet_scans import FleetScans
from bot.store.homes import HomeViewers
from bot.store.job_approvals import JobApprovals
from bot.store.job_progress import JobProgressStore
from bot.store.jobs import JobStore
from bot.store.requests import RequestStore
from bot.store.schema import change_requests, jobs
from bot.store.switches import SwitchStore


class DatabaseFileGone(Exception):
    """The embedded SQLite's file was deleted or replaced while recbot had it open: reads still
    come from the old file, writes fail."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()  # through a symlink, as SQLite opens it
    except OSError:
        return None
    return found.st_dev, found.st_ino


@dataclass(frozen=True)
class Store:
    """Every repository, on one engine; `file` is the embedded SQLite's, as opened."""

    engine: Engine
    requests: RequestStore
    announcements: AnnouncementStore
    audit: AuditLog
    drift: DriftStore
    homes: HomeViewers
    switches: SwitchStore
    jobs: JobStore
    job_approvals: JobApprovals
    job_progress: JobProgressStore
    fleet_scans: FleetScans
    file: tuple[Path, tuple[int, int] | None] | None = None

    def ping(self) -> None:
        """SQLAlchemyError when the database does not answer a read of a table (SQLite's `SELECT 1`
        reads no file, and so passed with the file locked by another process); DatabaseFileGone
        when the SQLite file is no longer the one opened."""
        self.check_file()  # first: a connection opened since a deletion makes a new, empty file there
        with self.engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM alembic_version"))

    def check_file(self) -> None:
        """DatabaseFileGone when the embedded SQLite's file was deleted or replaced since it was opened."""
        if self.file is not None and _identity(self.file[0]) != self.file[1]:
            raise DatabaseFileGone(f"{self.file[0]} was deleted or replaced while recbot had it open")

    def close(self) -> None:
        self.engine.dispose()


def open_store(database_url: str) -> Store:
    """The repositories on a new engine for `database_url`, its schema upgraded first."""
    engine = make_engine(database_url)
    migrations.upgrade(engine)
    locks = SharedLocks(engine)
    path = sqlite_path(database_url)
    return Store(
        file=(path, _identity(path)) if path is not None else None,
        engine=engine,
        requests=RequestStore(engine),
        announcements=AnnouncementStore(engine),
        audit=AuditLog(engine),
        drift=DriftStore(engine, locks),
        homes=HomeViewers(engine),
        switches=SwitchStore(engine, locks),
        jobs=JobStore(engine),
        job_approvals=JobApprovals(engine),
        job_progress=JobProgressStore(engine),
        fleet_scans=FleetScans(engine),
    )


def _sealed_columns(conn: Connection) -> list[tuple[Table, Column[Any]]]:
    """The columns holding sealed secrets that a database of any revision has yet."""
    found = inspect(conn)
    return [
        (table, column)
        for table, column in ((change_requests, change_requests.c.sealed_patch), (jobs, jobs.c.sealed_secrets))
        if found.has_table(table.name) and column.name in {c["name"] for c in found.get_columns(table.name)}
    ]


def sealed_rows(conn: Connection) -> int:
    """How many rows hold secrets sealed with the seal key (open requests and jobs)."""
    return sum(
        conn.execute(select(func.count()).select_from(table).where(column.is_not(None))).scalar_one()
        for table, column in _sealed_columns(conn)
    )


def a_sealed_value(conn: Connection) -> bytes | None:
    """One value sealed with the seal key (an open request's or job's), to try a key on; None: none."""
    for table, column in _sealed_columns(conn):
        found = conn.execute(select(column).select_from(table).where(column.is_not(None)).limit(1)).scalar()
        if found is not None:
            return bytes(found)
    return None


def count_sealed(database_url: str) -> int:
    """sealed_rows of the database at `database_url`, opened read-only; 0 where it does not exist yet."""
    path = sqlite_path(database_url)
    if path is not None and not path.exists():
        return 0
    engine = make_engine(database_url, read_only=True)
    try:
        with engine.connect() as conn:
            return sealed_rows(conn)
    finally:
        engine.dispose()
