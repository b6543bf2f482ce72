"""Databases as recbot made them before Alembic, at each hand-written schema version: the
tables of the former bot/store.py as they stood at each version (copied from it, each column and
table tagged with the version that brought it), a `schema_version` row, and rows in
every table, for tests/test_migrations.py to upgrade and compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    text,
)
from sqlalchemy.engine import Engine

from bot.store.schema import metadata as current

# The versions each layout holds, and the schema_version it carries. One release numbered the
# switch tables 5, before the announcement columns took that number on the main line.
LAYOUTS: dict[str, tuple[set[int], int]] = {
    "v1": ({1}, 1),
    "v2": ({1, 2}, 2),
    "v3": ({1, 2, 3}, 3),
    "v4": ({1, 2, 3, 4}, 4),
    "v5": ({1, 2, 3, 4, 5}, 5),
    "v6": ({1, 2, 3, 4, 5, 6}, 6),
    "v7": ({1, 2, 3, 4, 5, 6, 7}, 7),
    "v5-switches-first": ({1, 2, 3, 4, 6}, 5),
}

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

# (table, version it came with, [(column, version it came with)])
TABLES: list[tuple[str, int, list[tuple[Column[Any], int]]]] = [
    (
        "change_requests",
        1,
        [
            (Column("id", String(32), primary_key=True), 1),
            (Column("app_id", String(128), nullable=False), 1),
            (Column("entry_point", String(128), nullable=False), 1),
            (Column("region", String(2), nullable=False), 1),
            (Column("open_target", String(300), unique=True), 1),
            (Column("state", String(16), nullable=False), 1),
            (Column("requester", String(32), nullable=False), 1),
            (Column("created_at", DateTime(timezone=True), nullable=False), 1),
            (Column("expires_at", DateTime(timezone=True), nullable=False), 1),
            (Column("updated_at", DateTime(timezone=True), nullable=False), 1),
            (Column("base_digest", String(64), nullable=False), 1),
            (Column("sealed_patch", LargeBinary), 1),
            (Column("changes", Text, nullable=False), 1),
            (Column("cards", Text, nullable=False, default="[]"), 1),
            (Column("decided_by", String(32)), 1),
            (Column("reason", Text), 1),
            (Column("result", Text), 1),
            (Column("version", Integer, nullable=False, server_default="0"), 2),
            (Column("probe", Text), 3),
            (Column("kind", String(16), nullable=False, server_default="config"), 6),
            (Column("spec", Text), 6),
            (Column("announced_version", Integer), 5),
            (Column("announce_claimed_by", String(32)), 5),
            (Column("announce_claimed_at", DateTime(timezone=True)), 5),
        ],
    ),
    (
        "approvals",
        1,
        [
            (Column("request_id", String(32), ForeignKey("change_requests.id"), primary_key=True), 1),
            (Column("approver", String(32), primary_key=True), 1),
            (Column("at", DateTime(timezone=True), nullable=False), 1),
        ],
    ),
    (
        "audit_events",
        1,
        [
            (Column("id", Integer, primary_key=True, autoincrement=True), 1),
            (Column("at", DateTime(timezone=True), nullable=False), 1),
            (Column("event", String(32), nullable=False), 1),
            (Column("actor", String(32), nullable=False), 1),
            (Column("app_id", String(128), nullable=False), 1),
            (Column("entry_point", String(128), nullable=False), 1),
            (Column("region", String(2), nullable=False), 1),
            (Column("request_id", String(32)), 1),
            (Column("detail", Text, nullable=False), 1),
        ],
    ),
    (
        "observed_configs",
        4,
        [
            (Column("app_id", String(128), primary_key=True), 4),
            (Column("entry_point", String(128), primary_key=True), 4),
            (Column("region", String(2), primary_key=True), 4),
            (Column("baseline", Text, nullable=False), 4),
            (Column("expected", Text), 4),
            (Column("seen_at", DateTime(timezone=True), nullable=False), 4),
        ],
    ),
    (
        "drift_alerts",
        4,
        [
            (Column("id", String(32), primary_key=True), 4),
            (Column("app_id", String(128), nullable=False), 4),
            (Column("entry_point", String(128), nullable=False), 4),
            (Column("region", String(2), nullable=False), 4),
            (Column("open_target", String(300), unique=True), 4),
            (Column("state", String(16), nullable=False), 4),
            (Column("detected_at", DateTime(timezone=True), nullable=False), 4),
            (Column("updated_at", DateTime(timezone=True), nullable=False), 4),
            (Column("before", Text, nullable=False), 4),
            (Column("after", Text, nullable=False), 4),
            (Column("changes", Text, nullable=False), 4),
            (Column("cards", Text, nullable=False, default="[]"), 4),
            (Column("decided_by", String(32)), 4),
            (Column("note", Text), 4),
            (Column("version", Integer, nullable=False, server_default="0"), 4),
        ],
    ),
    (
        "home_viewers",
        4,
        [
            (Column("user_id", String(32), primary_key=True), 4),
            (Column("opened_at", DateTime(timezone=True), nullable=False), 4),
        ],
    ),
    (
        "recording_switches",
        6,
        [
            (Column("app_id", String(128), primary_key=True), 6),
            (Column("entry_point", String(128), primary_key=True), 6),
            (Column("wanted", Boolean, nullable=False), 6),
            (Column("cause", String(16), nullable=False), 6),
            (Column("status", String(16), nullable=False), 6),
            (Column("actor", String(32), nullable=False), 6),
            (Column("at", DateTime(timezone=True), nullable=False), 6),
            (Column("request_id", String(32)), 6),
        ],
    ),
    (
        "stream_tasks",
        6,
        [
            (Column("app_id", String(128), primary_key=True), 6),
            (Column("entry_point", String(128), primary_key=True), 6),
            (Column("region", String(2), primary_key=True), 6),
            (Column("stream", String(128), primary_key=True), 6),
            (Column("started_by", String(32), nullable=False), 6),
            (Column("started_at", DateTime(timezone=True), nullable=False), 6),
            (Column("status", String(16)), 7),
        ],
    ),
]

OBSERVED = '{"mp4": true, "hls": false, "vendor": 1, "storage_region": 0, "bucket": "%s", "keys_digest": "k1"}'
CHANGES = '[["Access key", "...1234", "...9876"]]'

# Rows per table; a column is written only where the layout has it.
ROWS: dict[str, list[dict[str, Any]]] = {
    "change_requests": [
        {
            "id": "open1",
            "app_id": "A",
            "entry_point": "live",
            "region": "na",
            "open_target": '["A", "live", "na"]',
            "state": "pending",
            "requester": "UALICE",
            "created_at": T0,
            "expires_at": T0 + timedelta(days=3650),
            "updated_at": T0,
            "base_digest": "d" * 32,
            "sealed_patch": b"ciphertext",
            "changes": CHANGES,
            "cards": '[["CAPPROVE", "1700000000.000100"]]',
            "decided_by": None,
            "reason": None,
            "result": None,
            "version": 2,
            "probe": '["ok", "wrote and deleted a test object"]',
            "kind": "config",
            "spec": None,
            "announced_version": 2,
            "announce_claimed_by": None,
            "announce_claimed_at": None,
        },
        {
            "id": "ended1",
            "app_id": "A",
            "entry_point": "other",
            "region": "eu",
            "open_target": None,
            "state": "applied",
            "requester": "UALICE",
            "created_at": T0 - timedelta(days=1),
            "expires_at": T0,
            "updated_at": T0 - timedelta(hours=1),
            "base_digest": "e" * 32,
            "sealed_patch": None,
            "changes": CHANGES,
            "cards": "[]",
            "decided_by": "UBOB",
            "reason": None,
            "result": "Change applied and confirmed by reading it back.",
            "version": 5,
            "probe": None,
            "kind": "config",
            "spec": None,
            "announced_version": 5,
            "announce_claimed_by": None,
            "announce_claimed_at": None,
        },
    ],
    "approvals": [{"request_id": "ended1", "approver": "UBOB", "at": T0 - timedelta(hours=2)}],
    "audit_events": [
        {
            "at": T0,
            "event": "requested",
            "actor": "UALICE",
            "app_id": "A",
            "entry_point": "live",
            "region": "na",
            "request_id": "open1",
            "detail": '{"changes": [["Access key", "...1234", "...9876"]]}',
        },
        {
            "at": T0 - timedelta(hours=1),
            "event": "applied",
            "actor": "UBOB",
            "app_id": "A",
            "entry_point": "other",
            "region": "eu",
            "request_id": "ended1",
            "detail": '{"changes": [], "note": "applied"}',
        },
    ],
    "observed_configs": [
        {
            "app_id": "A",
            "entry_point": "live",
            "region": "na",
            "baseline": OBSERVED % "rec-bucket",
            "expected": None,
            "seen_at": T0,
        }
    ],
    "drift_alerts": [
        {
            "id": "alert1",
            "app_id": "A",
            "entry_point": "live",
            "region": "na",
            "open_target": '["A", "live", "na"]',
            "state": "open",
            "detected_at": T0,
            "updated_at": T0,
            "before": OBSERVED % "rec-bucket",
            "after": OBSERVED % "other-bucket",
            "changes": '[["Bucket", "rec-bucket", "other-bucket"]]',
            "cards": "[]",
            "decided_by": None,
            "note": None,
            "version": 0,
        }
    ],
    "home_viewers": [{"user_id": "UBOB", "opened_at": T0}],
    "recording_switches": [
        {
            "app_id": "A",
            "entry_point": "live",
            "wanted": False,
            "cause": "switch",
            "status": "set",
            "actor": "UALICE",
            "at": T0,
            "request_id": None,
        }
    ],
    "stream_tasks": [
        {
            "app_id": "A",
            "entry_point": "live",
            "region": "na",
            "stream": "cam1",
            "started_by": "UALICE",
            "started_at": T0,
            "status": None,
        }
    ],
}


def legacy_tables(layout: str) -> MetaData:
    """The tables, with the columns, of `layout`, plus schema_version."""
    versions, _ = LAYOUTS[layout]
    metadata = MetaData()
    Table("schema_version", metadata, Column("version", Integer, nullable=False))
    for name, since, columns in TABLES:
        if since in versions:
            Table(name, metadata, *[column._copy() for column, added in columns if added in versions])
    return metadata


def build(engine: Engine, layout: str) -> dict[str, list[dict[str, Any]]]:
    """Make the database of `layout` with rows in every table it has; the rows as written."""
    metadata = legacy_tables(layout)
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(insert(metadata.tables["schema_version"]).values(version=LAYOUTS[layout][1]))
        for name, table in metadata.tables.items():
            if name == "schema_version":
                continue
            rows = [{k: v for k, v in row.items() if k in table.c} for row in ROWS[name]]
            conn.execute(insert(table), rows)
            written[name] = rows
    return written


def rebuild(engine: Engine, layout: str) -> str:
    """Empty the database of `engine` and make it that of `layout` (with its rows); the URL to open it with."""
    with engine.begin() as conn:
        current.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    build(engine, layout)
    return engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
