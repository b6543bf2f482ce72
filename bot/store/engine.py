"""The engine of DATABASE_URL and what differs between its two dialects: psycopg 3
for `postgresql://`, SQLite's pragmas, datetimes SQLite hands back naive, and the
locks every process on one database shares (PostgreSQL advisory locks, of the schema
recbot uses; on the embedded SQLite, which one process uses, locks of this process)."""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

# The advisory lock keys of recbot. An advisory lock is the whole PostgreSQL database's: the
# second key, a hash of the schema (and the switch lock's entry point), keeps recbots that
# share a database in schemas of their own from waiting on each other.
SCHEMA = "hashtext(coalesce(current_schema(), ''))"
SCHEMA_AND_NAME = "hashtext(coalesce(current_schema(), '') || ' ' || :n)"
MIGRATION_LOCK = 4242001
WATCH_LOCK = 4242002
SWITCH_LOCK = 4242003
# Connections kept to the embedded SQLite file, and opened beyond them at a peak.
SQLITE_POOL_SIZE = 16
SQLITE_POOL_OVERFLOW = 48


class Commits:
    """How many commits this process has made to one SQLite file, on any engine: a read taken
    at one count is still the database's answer while the count stands (kept.py)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()  # an increment lost to a race could take the count back

    @property
    def count(self) -> int:
        return self._count

    def add(self) -> None:
        with self._lock:
            self._count += 1


_commits_of_file: dict[Path, Commits] = {}
_commits_guard = threading.Lock()


def commits_of(database_url: str) -> Commits | None:
    """The commit count of the SQLite file of `database_url`, shared by every engine of this
    process on it; None for PostgreSQL (other instances write it too) and in-memory SQLite."""
    path = sqlite_path(database_url)
    return None if path is None else _commits_of_path(path)


def _commits_of_path(path: Path) -> Commits:
    with _commits_guard:
        return _commits_of_file.setdefault(path.resolve(), Commits())


class CountingConnection(sqlite3.Connection):
    """A SQLite connection that counts each commit once it is done, so that no read begun after
    the count moved can have missed it. Every write of recbot commits (no autocommit anywhere)."""

    commits: Commits

    def commit(self) -> None:
        super().commit()
        self.commits.add()


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(database_url: str, connect_timeout: int = 10, *, read_only: bool = False) -> Engine:
    """An engine for `DATABASE_URL`; `postgresql://` uses psycopg 3. `read_only` opens a SQLite
    file read-only, never creating it: what only looks (doctor, `migrate --sql`) writes nothing."""
    connect_args: dict[str, Any] = {}
    if database_url.startswith(("postgresql://", "postgres://")):
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
        connect_args["connect_timeout"] = connect_timeout
    path = sqlite_path(database_url)
    if read_only and path is not None:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
    elif path is not None:
        # One process on a local file: a kept connection is never dropped under it (no ping), and
        # a burst of readers finds connections kept, not one opened and closed per read.
        commits = _commits_of_path(path)
        engine = create_engine(
            database_url,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_OVERFLOW,
            connect_args={"factory": CountingConnection},
        )

        @event.listens_for(engine, "connect")
        def count_commits(dbapi_connection: CountingConnection, _record: object) -> None:
            dbapi_connection.commits = commits
    else:
        engine = create_engine(database_url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_pragmas)
    return engine


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite DATABASE_URL, or None (PostgreSQL, in-memory)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def sqlite_unwritable(database_url: str) -> str | None:
    """Why recbot could not write the SQLite file or its folder (the journal, the seal key and the
    lock are made beside it), as `<what>: <how to fix>`; None if it can, or for PostgreSQL. A start
    and doctor refuse in these words, rather than fail every command once started."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    folder = path.resolve().parent
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"the SQLite file {path} is read-only to recbot: let recbot's user write it, or change DATABASE_URL"
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the folder {folder} is read-only to recbot, which writes the database, its journal, seal key "
            "and lock there: let recbot's user write the folder, or change DATABASE_URL"
        )
    return None


class DatabaseInUse(Exception):
    """Another recbot holds the embedded SQLite file."""


def _lock_of(path: Path) -> Path:
    # Beside the file itself: a start through a symlink to it is the same database (and a
    # second writer would leave the other's kept reads, kept.py, behind).
    return Path(f"{path.resolve()}.lock")


def _in_use(path: Path, lock: Path) -> str:
    return (
        f"another recbot is running on the SQLite file {path} (it holds {lock}): the embedded SQLite "
        "serves one process; stop the other, or run several instances on one PostgreSQL "
        "(README, Several instances)"
    )


@contextmanager
def only_process(database_url: str) -> Iterator[None]:
    """On SQLite, an exclusive lock on `<database>.lock` while the caller runs: the embedded store
    serves one process (its recovery of work left behind assumes no other runs), so a second
    start on the same file is refused; the kernel drops the lock when the process ends, however
    it ends. Nothing on PostgreSQL, where instances share by design."""
    path = sqlite_path(database_url)
    if path is None:
        yield
        return
    lock = _lock_of(path)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(_in_use(path, lock)) from None
        yield


def sqlite_in_use(database_url: str) -> str | None:
    """Why a start would be refused because another process runs on this SQLite file, in the
    start's words; None when none does, or for PostgreSQL. Creates nothing: a lock file that does
    not exist is held by nobody. Holds a shared lock for the instant of the test, during which a
    start at that very moment would be refused as if one ran (rerunning it starts)."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    lock = _lock_of(path)
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _in_use(path, lock)
    finally:
        os.close(descriptor)  # and with it the shared lock
    return None


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class SharedLocks:
    """Locks held across every process on the database: a PostgreSQL advisory lock on
    a connection of its own for as long as it is held, or on the embedded SQLite
    (one process) a lock of this process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local: dict[tuple[int, str], threading.Lock] = {}
        self._local_guard = threading.Lock()

    def _lock_of(self, key: int, name: str) -> threading.Lock:
        with self._local_guard:
            return self._local.setdefault((key, name), threading.Lock())

    @contextmanager
    def try_hold(self, key: int) -> Iterator[bool]:
        """Whether this caller holds lock `key` (never waits)."""
        if not is_postgresql(self._engine):
            lock = self._lock_of(key, "")
            held = lock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    lock.release()
            return
        with self._engine.connect() as conn:
            held = bool(conn.execute(text(f"SELECT pg_try_advisory_lock(:k, {SCHEMA})"), {"k": key}).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(text(f"SELECT pg_advisory_unlock(:k, {SCHEMA})"), {"k": key})
                    conn.commit()

    @contextmanager
    def hold(self, key: int, name: str, timeout: float, busy: Callable[[], Exception]) -> Iterator[None]:
        """Hold lock (`key`, `name`), waiting at most `timeout` seconds, else raise `busy()`."""
        if not is_postgresql(self._engine):
            lock = self._lock_of(key, name)
            if not lock.acquire(timeout=timeout):
                raise busy()
            try:
                yield
            finally:
                lock.release()
            return
        with self._engine.connect() as conn:
            # Local to this transaction; the advisory lock itself outlives the commit.
            # At least 1 ms: PostgreSQL reads a lock_timeout of 0 as "wait forever".
            wait_ms = max(1, math.ceil(timeout * 1000))
            conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{wait_ms}ms"})
            try:
                conn.execute(text(f"SELECT pg_advisory_lock(:k, {SCHEMA_AND_NAME})"), {"k": key, "n": name})
            except OperationalError:
                raise busy() from None
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock(:k, {SCHEMA_AND_NAME})"), {"k": key, "n": name})
                conn.commit()
