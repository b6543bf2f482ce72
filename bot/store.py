"""The store (SQLite by default, PostgreSQL through the same URL): schema,
migrations, change requests with compare-and-set transitions, and the audit log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.models import FieldChange, Target

log = logging.getLogger(__name__)

OPEN_STATES = ("pending", "approved", "applying")
ENDED_STATES = ("applied", "failed", "rejected", "expired", "cancelled", "stale")

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
    # The patch with its keys, Fernet-sealed; NULL as soon as the request ends.
    Column("sealed_patch", LargeBinary),
    Column("changes", Text, nullable=False),
    Column("cards", Text, nullable=False, default="[]"),
    Column("decided_by", String(32)),
    Column("reason", Text),
    Column("result", Text),
    # Bumped by every change a person could see on the card (schema version 2).
    Column("version", Integer, nullable=False, server_default="0"),
    # What the storage probe found when the request was made, safe to show (schema version 3).
    Column("probe", Text),
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


def _v2(conn: Connection) -> None:
    # _v1 creates tables from the current definitions, so a fresh database has the column already.
    if "version" not in {c["name"] for c in inspect(conn).get_columns("change_requests")}:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN version INTEGER NOT NULL DEFAULT 0"))


def _v3(conn: Connection) -> None:
    if "probe" not in {c["name"] for c in inspect(conn).get_columns("change_requests")}:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN probe TEXT"))


# Append only: each entry moves the schema one version up; never edit a released one.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CardRef:
    channel: str
    ts: str


@dataclass(frozen=True)
class RequestRow:
    """A change request as stored; `sealed_patch` is ciphertext, or None once ended.
    `version` grows with every change of what its card shows; `problem` says why
    a row's stored fields could not be read (it can then only be failed)."""

    id: str
    target: Target
    state: str
    requester: str
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    base_digest: str
    sealed_patch: bytes | None
    changes: list[FieldChange]
    cards: list[CardRef]
    approvers: list[str]
    decided_by: str | None
    reason: str | None
    result: str | None
    version: int = 0
    problem: str | None = None
    probe: ProbeNote | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class ProbeNote:
    """The storage probe's verdict (ok, refused, unreachable) and its summary, as stored."""

    verdict: str
    summary: str


class Vote(Enum):
    """What one approval did."""

    CLOSED = "the request is no longer pending, or has expired"
    REPEAT = "this approver had already approved"
    COUNTED = "counted; more approvals are needed"
    COMPLETED = "counted, and it was the last one needed: the request is now approved"


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    event: str
    actor: str
    target: Target
    request_id: str | None
    detail: dict[str, Any]


class TargetBusy(Exception):
    """Another request for the same target is open."""

    def __init__(self, holder: RequestRow) -> None:
        self.holder = holder
        super().__init__(f"request {holder.id} is open for {holder.target.describe()}")


def _open_key(target: Target) -> str:
    return json.dumps([target.app_id, target.entry_point, target.region])


def _changes_json(changes: Iterable[FieldChange]) -> str:
    return json.dumps([[c.label, c.before, c.after] for c in changes])


def _request_row(r: Any, approvers: list[str]) -> RequestRow:
    """A stored row as a RequestRow. Fields that cannot be read (a damaged row,
    or one an older or newer recbot wrote) do not raise: the row says so in
    `problem`, so a sweep can end it and go on with the next."""
    problem = None
    try:
        target = Target(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes = [FieldChange(*c) for c in json.loads(r["changes"])]
    except (ValueError, TypeError) as exc:
        target = Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes, problem = [], f"its stored target or changes could not be read ({type(exc).__name__})"
    try:
        cards = [CardRef(*c) for c in json.loads(r["cards"])]
    except (ValueError, TypeError) as exc:
        cards, problem = [], problem or f"its stored card places could not be read ({type(exc).__name__})"
    try:
        probe = ProbeNote(*json.loads(r["probe"])) if r["probe"] else None
    except (ValueError, TypeError):
        probe = None  # only shown on the card; losing it loses nothing else
    return RequestRow(
        id=r["id"],
        target=target,
        state=r["state"],
        requester=r["requester"],
        created_at=_aware(r["created_at"]),
        expires_at=_aware(r["expires_at"]),
        updated_at=_aware(r["updated_at"]),
        base_digest=r["base_digest"],
        sealed_patch=r["sealed_patch"],
        changes=changes,
        cards=cards,
        approvers=approvers,
        decided_by=r["decided_by"],
        reason=r["reason"],
        result=r["result"],
        version=r["version"],
        problem=problem,
        probe=probe,
    )


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(database_url: str, connect_timeout: int = 10) -> Engine:
    """An engine for `DATABASE_URL`; `postgresql://` uses psycopg 3."""
    connect_args: dict[str, Any] = {}
    if database_url.startswith(("postgresql://", "postgres://")):
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
        connect_args["connect_timeout"] = connect_timeout
    engine = create_engine(database_url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_pragmas)
    return engine


LATEST_VERSION = len(MIGRATIONS)


def schema_version_of(engine: Engine) -> int:
    """The schema version a database is at (0: none yet), changing nothing."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_version"):
            return 0
        return conn.execute(select(schema_version.c.version)).scalar() or 0


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
    """Persistence of change requests and audit events. Every state change is
    one conditional UPDATE, so concurrent clicks and processes cannot both win."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        migrate(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    # change requests
    def create_request(
        self,
        *,
        request_id: str,
        target: Target,
        requester: str,
        expires_at: datetime,
        base_digest: str,
        sealed_patch: bytes,
        changes: list[FieldChange],
        probe: ProbeNote | None = None,
    ) -> RequestRow:
        """Insert a pending request, or raise TargetBusy naming the open one."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(change_requests).values(
                        id=request_id,
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        open_target=_open_key(target),
                        state="pending",
                        requester=requester,
                        created_at=now,
                        expires_at=expires_at,
                        updated_at=now,
                        base_digest=base_digest,
                        sealed_patch=sealed_patch,
                        changes=_changes_json(changes),
                        cards="[]",
                        probe=json.dumps([probe.verdict, probe.summary]) if probe else None,
                    )
                )
        except IntegrityError:
            holder = self._open_for(target)
            if holder is None:  # it ended in between; the caller may try again
                raise
            raise TargetBusy(holder) from None
        row = self.get(request_id)
        assert row is not None
        return row

    def get(self, request_id: str) -> RequestRow | None:
        with self.engine.connect() as conn:
            rows = self._rows(conn, change_requests.c.id == request_id)
        return rows[0] if rows else None

    def _open_for(self, target: Target) -> RequestRow | None:
        with self.engine.connect() as conn:
            rows = self._rows(conn, change_requests.c.open_target == _open_key(target))
        return rows[0] if rows else None

    def open_requests(self) -> list[RequestRow]:
        with self.engine.connect() as conn:
            return self._rows(conn, change_requests.c.state.in_(OPEN_STATES))

    def in_state(self, *states: str, updated_before: datetime | None = None) -> list[RequestRow]:
        where: ColumnElement[bool] = change_requests.c.state.in_(states)
        if updated_before is not None:
            where = and_(where, change_requests.c.updated_at <= updated_before)
        with self.engine.connect() as conn:
            return self._rows(conn, where)

    def due_for_expiry(self, now: datetime) -> list[RequestRow]:
        with self.engine.connect() as conn:
            return self._rows(conn, (change_requests.c.state == "pending") & (change_requests.c.expires_at <= now))

    def transition(
        self,
        request_id: str,
        from_states: tuple[str, ...],
        to_state: str,
        *,
        unexpired_at: datetime | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: move to `to_state` only if now in `from_states` (and,
        with `unexpired_at`, not expired by then). Whether this call made the move.
        Ending a request frees its target and deletes its sealed secrets."""
        c = change_requests.c
        values: dict[str, Any] = {"state": to_state, "updated_at": utcnow(), "version": c.version + 1, **fields}
        if to_state in ENDED_STATES:
            values.update(open_target=None, sealed_patch=None)
        where = [c.id == request_id, c.state.in_(from_states)]
        if unexpired_at is not None:
            where.append(c.expires_at > unexpired_at)
        with self.engine.begin() as conn:
            done = conn.execute(update(change_requests).where(*where).values(**values))
        return done.rowcount == 1

    def set_cards(self, request_id: str, cards: list[CardRef]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(change_requests.c.id == request_id)
                .values(cards=json.dumps([[c.channel, c.ts] for c in cards]))
            )

    def add_approval(self, request_id: str, approver: str, *, now: datetime, required: int) -> Vote:
        """Count one approver's approval of a pending, unexpired request, and
        approve the request in the same transaction when it was the last one
        needed, so exactly one approval completes it whatever runs at once."""
        c = change_requests.c
        try:
            with self.engine.begin() as conn:
                # Locks the row (PostgreSQL) or the database (SQLite) until commit: approvals queue here.
                claimed = conn.execute(
                    update(change_requests)
                    .where(c.id == request_id, c.state == "pending", c.expires_at > now)
                    .values(version=c.version + 1, updated_at=utcnow())
                )
                if claimed.rowcount != 1:
                    return Vote.CLOSED
                conn.execute(insert(approvals).values(request_id=request_id, approver=approver, at=utcnow()))
                count = conn.execute(
                    select(func.count()).select_from(approvals).where(approvals.c.request_id == request_id)
                ).scalar_one()
                if count < required:
                    return Vote.COUNTED
                conn.execute(
                    update(change_requests).where(c.id == request_id).values(state="approved", decided_by=approver)
                )
                return Vote.COMPLETED
        except IntegrityError:  # the primary key (request, approver): a repeat; the whole transaction rolled back
            return Vote.REPEAT

    def _rows(self, conn: Connection, where: Any) -> list[RequestRow]:
        c = change_requests.c
        found = conn.execute(select(change_requests).where(where).order_by(c.created_at)).mappings().all()
        approved_by: dict[str, list[str]] = {}
        if found:
            for request_id, approver in conn.execute(
                select(approvals.c.request_id, approvals.c.approver)
                .where(approvals.c.request_id.in_([r["id"] for r in found]))
                .order_by(approvals.c.at)
            ):
                approved_by.setdefault(request_id, []).append(approver)
        return [_request_row(r, approved_by.get(r["id"], [])) for r in found]

    # audit trail: append only
    def audit(
        self,
        event_name: str,
        actor: str,
        target: Target,
        *,
        request_id: str | None = None,
        changes: list[FieldChange] | None = None,
        note: str | None = None,
    ) -> None:
        """Append one event; `changes` must already be safe (keys as fingerprints)."""
        detail: dict[str, Any] = {"changes": json.loads(_changes_json(changes or []))}
        if note:
            detail["note"] = note
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_events).values(
                    at=utcnow(),
                    event=event_name,
                    actor=actor,
                    app_id=target.app_id,
                    entry_point=target.entry_point,
                    region=target.region,
                    request_id=request_id,
                    detail=json.dumps(detail),
                )
            )

    def history(self, target: Target, limit: int = 20) -> list[AuditEvent]:
        """The latest `limit` events of a target, newest first."""
        a = audit_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_events)
                .where(a.app_id == target.app_id, a.entry_point == target.entry_point, a.region == target.region)
                .order_by(a.id.desc())
                .limit(limit)
            ).mappings()
            return [
                AuditEvent(_aware(r["at"]), r["event"], r["actor"], target, r["request_id"], json.loads(r["detail"]))
                for r in rows
            ]
