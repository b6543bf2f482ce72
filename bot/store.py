"""The embedded store (SQLite by default, PostgreSQL through the same URL):
schema, migrations, change requests and the audit trail."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

change_requests = Table(
    "change_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", String(128), nullable=False),
    Column("entry_point", String(128), nullable=False),
    Column("region", String(2), nullable=False),
    # Set while the request is open, NULL once it ends: one open request per target.
    Column("open_target", String(300), unique=True),
    Column("state", String(16), nullable=False),
    Column("requester", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("base_digest", String(64), nullable=False),
    Column("patch_public", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("sealed_access_key", LargeBinary),
    Column("sealed_secret_key", LargeBinary),
    Column("card_channel", String(32)),
    Column("card_ts", String(32)),
    Column("decided_by", String(32)),
    Column("reason", Text),
    Column("result", Text),
)

approvals = Table(
    "approvals",
    metadata,
    Column("request_id", String(32), ForeignKey("change_requests.id"), primary_key=True),
    Column("approver", String(32), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),
    Column("actor", String(32), nullable=False),
    Column("app_id", String(128), nullable=False),
    Column("entry_point", String(128), nullable=False),
    Column("region", String(2), nullable=False),
    Column("request_id", String(32)),
    Column("detail", Text, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[change_requests, approvals, audit_events])


# Append only: each entry moves the schema one version up; never edit a released one.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1]


def _enable_sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """An engine for `DATABASE_URL`; `postgresql://` uses psycopg 3."""
    if database_url.startswith(("postgresql://", "postgres://")):
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    engine = create_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def migrate(engine: Engine) -> int:
    """Bring the schema to the newest version; safe when several processes start at once."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(schema_version.c.version)).scalar()
        if current is None:
            conn.execute(schema_version.insert().values(version=0))
            current = 0
        for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
            step(conn)
            conn.execute(schema_version.update().values(version=version))
            log.info("database schema migrated to version %d", version)
        return len(MIGRATIONS)


class Store:
    """Owns the engine; created (and migrated) on first start."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        migrate(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
