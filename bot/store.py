"""The store (SQLite by default, PostgreSQL through the same URL): schema,
migrations, change requests with compare-and-set transitions, and the audit log."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    Boolean,
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
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.models import EVERY_REGION, FieldChange, Target
from bot.observation import Observation

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
    # What the request changes: a configuration (its patch sealed) or the recording switch,
    # whose secret-free spec is plain JSON (schema version 6; the switch's region is EVERY_REGION).
    Column("kind", String(16), nullable=False, server_default="config"),
    Column("spec", Text),
    # The version whose end has been announced (cards updated, requester told); an ended row
    # below its version was not, and a sweep announces it. NULL: not tracked (rows that had
    # ended before schema version 5). While someone announces it (its end; or, while it is
    # pending, its approval cards): who (a token) and since when.
    Column("announced_version", Integer),
    Column("announce_claimed_by", String(32)),
    Column("announce_claimed_at", DateTime(timezone=True)),
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


# What recbot last read or applied per target, to see changes made outside it (schema version 4).
observed_configs = Table(
    "observed_configs",
    metadata,
    Column("app_id", String(128), primary_key=True),
    Column("entry_point", String(128), primary_key=True),
    Column("region", String(2), primary_key=True),
    Column("baseline", Text, nullable=False),
    # What a change recbot is applying right now will leave, so the watch does not call it drift.
    Column("expected", Text),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

drift_alerts = Table(
    "drift_alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", String(128), nullable=False),
    Column("entry_point", String(128), nullable=False),
    Column("region", String(2), nullable=False),
    # Set while the alert is open, NULL once it ends: one open alert per target.
    Column("open_target", String(300), unique=True),
    Column("state", String(16), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("cards", Text, nullable=False, default="[]"),
    Column("decided_by", String(32)),
    Column("note", Text),
    Column("version", Integer, nullable=False, server_default="0"),
)

# Who has opened recbot's App Home, so a change refreshes only homes someone looks at.
home_viewers = Table(
    "home_viewers",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("opened_at", DateTime(timezone=True), nullable=False),
)


# What recbot knows of each entry point's custom recording switch, which Agora cannot be asked
# about: the value recbot last sent, and whether Agora's answer showed it took effect (schema version 6).
recording_switches = Table(
    "recording_switches",
    metadata,
    Column("app_id", String(128), primary_key=True),
    Column("entry_point", String(128), primary_key=True),
    Column("wanted", Boolean, nullable=False),
    Column("cause", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("actor", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(32)),
)

# Read on every `/recording get`: built once, because building the statement cost twice
# what running it does (bench.ack_latency's profile).
_SWITCH_STATE = select(recording_switches).where(
    recording_switches.c.app_id == bindparam("app_id"), recording_switches.c.entry_point == bindparam("entry_point")
)

# The single streams recbot asked Agora to record and has not stopped (schema version 6).
stream_tasks = Table(
    "stream_tasks",
    metadata,
    Column("app_id", String(128), primary_key=True),
    Column("entry_point", String(128), primary_key=True),
    Column("region", String(2), primary_key=True),
    Column("stream", String(128), primary_key=True),
    Column("started_by", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    # NULL: Agora accepted it; "unanswered": no usable answer came, so it may or may not record (version 7).
    Column("status", String(16)),
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


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[observed_configs, drift_alerts, home_viewers])


def _v5(conn: Connection) -> None:
    present = {c["name"] for c in inspect(conn).get_columns("change_requests")}
    if "announced_version" not in present:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN announced_version INTEGER"))
        # Open requests are tracked from now on; ended ones stay untracked (NULL), never announced again.
        c = change_requests.c
        conn.execute(update(change_requests).where(c.state.in_(OPEN_STATES)).values(announced_version=c.version))
    if "announce_claimed_by" not in present:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN announce_claimed_by VARCHAR(32)"))
    if "announce_claimed_at" not in present:
        moment = DateTime(timezone=True).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE change_requests ADD COLUMN announce_claimed_at {moment}"))


def _v6(conn: Connection) -> None:
    columns = {c["name"] for c in inspect(conn).get_columns("change_requests")}
    if "kind" not in columns:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'config'"))
    if "spec" not in columns:
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN spec TEXT"))
    metadata.create_all(conn, tables=[recording_switches, stream_tasks])


def _v7(conn: Connection) -> None:
    # _v6 creates stream_tasks from the current definition, so a database made since has the column already.
    if "status" not in {c["name"] for c in inspect(conn).get_columns("stream_tasks")}:
        conn.execute(text("ALTER TABLE stream_tasks ADD COLUMN status VARCHAR(16)"))


def _v8(conn: Connection) -> None:
    from bot.budget_store import create_budget  # its own module, which builds on this one's metadata

    create_budget(conn)


# Append only: each entry moves the schema one version up; never edit a released one.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]


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
    kind: str = "config"
    spec: dict[str, Any] | None = None  # a switch's {"enabled": bool}; a config's patch is sealed instead
    # Only on the row handed to whoever opened or ended the request: their claim on announcing
    # it (posting its cards; announcing its end).
    announce_token: str | None = None

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


ALERT_STATES = ("open", "acknowledged", "resolved", "superseded")


@dataclass(frozen=True)
class AlertRow:
    """A change seen outside recbot: what recbot last saw (`before`), what is
    live (`after`), the safe diff, and where its cards are."""

    id: str
    target: Target
    state: str
    detected_at: datetime
    updated_at: datetime
    before: Observation
    after: Observation
    changes: list[FieldChange]
    cards: list[CardRef]
    decided_by: str | None
    note: str | None
    version: int

    @property
    def is_open(self) -> bool:
        return self.state == "open"


REQUEST_KINDS = ("config", "switch")


SWITCH_STATUSES = ("set", "sending", "unanswered", "interrupted")


@dataclass(frozen=True)
class SwitchRow:
    """What recbot knows of an entry point's custom recording switch: the value it
    last sent (`wanted`), by the switch itself or by a configuration (`cause`
    "switch" or "config": setting one switches recording on), and whether Agora's
    answer showed it took effect (`status` "set"), or that is unknown ("sending",
    "unanswered", "interrupted")."""

    app_id: str
    entry_point: str
    wanted: bool
    cause: str
    status: str
    actor: str
    at: datetime
    request_id: str | None = None

    @property
    def enabled(self) -> bool | None:
        """On or off as recbot set it; None: unknown."""
        return self.wanted if self.status == "set" else None


@dataclass(frozen=True)
class StreamTaskRow:
    """A single stream recbot asked Agora to record, and has not stopped; `answered` False when
    Agora's answer was lost, so that it may or may not record."""

    target: Target
    stream: str
    started_by: str
    started_at: datetime
    answered: bool = True


class SwitchBusy(Exception):
    """Another change of the same entry point's switch is being sent; try again shortly."""


class TargetBusy(Exception):
    """Another request for the same target is open."""

    def __init__(self, holder: RequestRow) -> None:
        self.holder = holder
        super().__init__(f"request {holder.id} is open for {holder.target.describe()}")


def _open_key(target: Target) -> str:
    return json.dumps([target.app_id, target.entry_point, target.region])


def _changes_json(changes: Iterable[FieldChange]) -> str:
    return json.dumps([[c.label, c.before, c.after] for c in changes])


def _where_target(table: Table, target: Target) -> ColumnElement[bool]:
    c = table.c
    return and_(c.app_id == target.app_id, c.entry_point == target.entry_point, c.region == target.region)


def _alert_row(r: Any) -> AlertRow | None:
    """A stored alert as an AlertRow, or None (logged) if a field cannot be read (a damaged
    row, or one an older or newer recbot wrote): one bad row must not break every list of alerts."""
    try:
        return _read_alert(r)
    except (ValueError, TypeError) as exc:
        log.error("drift alert %s cannot be read (%s); skipped", r["id"], type(exc).__name__)
        return None


def _read_alert(r: Any) -> AlertRow:
    return AlertRow(
        id=r["id"],
        target=Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
        state=r["state"],
        detected_at=_aware(r["detected_at"]),
        updated_at=_aware(r["updated_at"]),
        before=Observation.from_json(r["before"]),
        after=Observation.from_json(r["after"]),
        changes=[FieldChange(*c) for c in json.loads(r["changes"])],
        cards=[CardRef(*c) for c in json.loads(r["cards"])],
        decided_by=r["decided_by"],
        note=r["note"],
        version=r["version"],
    )


def _request_row(r: Any, approvers: list[str]) -> RequestRow:
    """A stored row as a RequestRow. Fields that cannot be read (a damaged row,
    or one an older or newer recbot wrote) do not raise: the row says so in
    `problem`, so a sweep can end it and go on with the next."""
    problem = None
    try:
        if r["region"] == EVERY_REGION:
            target = Target.every_region(r["app_id"], r["entry_point"])
        else:
            target = Target(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes = [FieldChange(*c) for c in json.loads(r["changes"])]
    except (ValueError, TypeError) as exc:
        target = Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes, problem = [], f"its stored target or changes could not be read ({type(exc).__name__})"
    kind, spec = r["kind"], None
    try:
        spec = json.loads(r["spec"]) if r["spec"] else None
    except ValueError:
        problem = problem or "its stored switch could not be read"
    if kind not in REQUEST_KINDS:
        problem = problem or f"its kind {str(kind)[:16]!r} is not one this recbot knows (a newer recbot wrote it?)"
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
        kind=kind,
        spec=spec if isinstance(spec, dict) else None,
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
        self._watch_lock = threading.Lock()  # the watch lock of the embedded SQLite's one process
        self._switch_locks: dict[str, threading.Lock] = {}  # the switch locks of the embedded SQLite
        self._switch_locks_guard = threading.Lock()

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
        sealed_patch: bytes | None,
        changes: list[FieldChange],
        probe: ProbeNote | None = None,
        kind: str = "config",
        spec: dict[str, Any] | None = None,
        card_claim: str | None = None,
    ) -> RequestRow:
        """Insert a pending request, or raise TargetBusy naming the open one; `card_claim`
        (a token) holds the right to post its cards from the start (see claim_cards)."""
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
                        kind=kind,
                        spec=json.dumps(spec) if spec is not None else None,
                        announced_version=0,
                        announce_claimed_by=card_claim,
                        announce_claimed_at=now if card_claim else None,
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

    def open_request_for(self, target: Target) -> RequestRow | None:
        """The open request of `target` (one at most), or None."""
        return self._open_for(target)

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
        announcer: str | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: move to `to_state` only if now in `from_states` (and,
        with `unexpired_at`, not expired by then). Whether this call made the move.
        Ending a request frees its target and deletes its sealed secrets; with
        `announcer` (a token), the same UPDATE claims the announcement of the end for them."""
        c = change_requests.c
        values: dict[str, Any] = {"state": to_state, "updated_at": utcnow(), "version": c.version + 1, **fields}
        if to_state in ENDED_STATES:
            values.update(open_target=None, sealed_patch=None)
            if announcer is not None:
                values.update(announce_claimed_by=announcer, announce_claimed_at=utcnow())
        where = [c.id == request_id, c.state.in_(from_states)]
        if unexpired_at is not None:
            where.append(c.expires_at > unexpired_at)
        with self.engine.begin() as conn:
            done = conn.execute(update(change_requests).where(*where).values(**values))
        return done.rowcount == 1

    # announcing an end: claimed by one caller at a time, done once
    def unannounced_ends(self) -> list[RequestRow]:
        """Ended requests whose end was not announced: its announcement failed, or is being made."""
        c = change_requests.c
        with self.engine.connect() as conn:
            return self._rows(conn, c.state.in_(ENDED_STATES) & (c.announced_version < c.version))

    def claim_announcement(self, request_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Compare-and-set: the right to announce the end of `request_id`, if it is not announced
        and nobody holds that right (or, with `stale_before`, the holder claimed it before then
        and stopped: its process went away). The claim's token, or None."""
        c = change_requests.c
        free: ColumnElement[bool] = c.announce_claimed_at.is_(None)
        if stale_before is not None:
            free = free | (c.announce_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.state.in_(ENDED_STATES), c.announced_version < c.version, free)
                .values(announce_claimed_by=token, announce_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

    def finish_announcement(self, request_id: str, token: str) -> None:
        """The end of `request_id` has been announced by the holder of `token`: never again."""
        c = change_requests.c
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.announce_claimed_by == token)
                .values(announced_version=c.version, announce_claimed_by=None, announce_claimed_at=None)
            )

    def release_announcement(self, request_id: str, token: str) -> None:
        """The announcement by the holder of `token` failed: the next sweep claims it again."""
        c = change_requests.c
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.announce_claimed_by == token)
                .values(announce_claimed_by=None, announce_claimed_at=None)
            )

    def set_cards(self, request_id: str, cards: list[CardRef]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(change_requests.c.id == request_id)
                .values(cards=json.dumps([[c.channel, c.ts] for c in cards]))
            )

    # posting the cards of a pending request that has none: claimed by one caller at a time
    def cardless_requests(self) -> list[RequestRow]:
        """Pending requests without an approval card: every post of them failed, or one is being made."""
        c = change_requests.c
        with self.engine.connect() as conn:
            return self._rows(conn, (c.state == "pending") & (c.cards == "[]"))

    def claim_cards(self, request_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Compare-and-set: the right to post the cards of `request_id` while it is pending with
        none, if nobody holds that right (or, with `stale_before`, the holder claimed it before
        then and stopped). The claim's token, or None; release_announcement gives it back."""
        c = change_requests.c
        free: ColumnElement[bool] = c.announce_claimed_at.is_(None)
        if stale_before is not None:
            free = free | (c.announce_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.state == "pending", c.cards == "[]", free)
                .values(announce_claimed_by=token, announce_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

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
        """The latest `limit` events of a target and of its entry point as a whole
        (its recording switch), newest first."""
        a = audit_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_events)
                .where(
                    a.app_id == target.app_id,
                    a.entry_point == target.entry_point,
                    a.region.in_((target.region, EVERY_REGION)),
                )
                .order_by(a.id.desc())
                .limit(limit)
            ).mappings()
            return [
                AuditEvent(
                    _aware(r["at"]),
                    r["event"],
                    r["actor"],
                    target if r["region"] == target.region else Target.every_region(target.app_id, target.entry_point),
                    r["request_id"],
                    json.loads(r["detail"]),
                )
                for r in rows
            ]

    def latest_events(self, limit: int = 10) -> list[AuditEvent]:
        """The latest `limit` events of every target, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)).mappings()
            return [
                AuditEvent(
                    _aware(r["at"]),
                    r["event"],
                    r["actor"],
                    Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
                    r["request_id"],
                    json.loads(r["detail"]),
                )
                for r in rows
            ]

    # observations: what recbot last read or applied per target
    def observed(self, target: Target) -> tuple[Observation, Observation | None] | None:
        """The remembered baseline of `target` and what an apply in progress expects, or None."""
        with self.engine.connect() as conn:
            r = conn.execute(select(observed_configs).where(_where_target(observed_configs, target))).mappings().first()
        if r is None:
            return None
        expected = Observation.from_json(r["expected"]) if r["expected"] else None
        return Observation.from_json(r["baseline"]), expected

    def observed_targets(self) -> list[Target]:
        c = observed_configs.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.app_id, c.entry_point, c.region).order_by(c.app_id, c.entry_point, c.region))
            return [Target.model_construct(app_id=a, entry_point=e, region=r) for a, e, r in rows]

    def remember(self, target: Target, observation: Observation) -> bool:
        """Start remembering `target` as `observation`, unless it already is remembered."""
        if self.observed(target) is not None:
            return False
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(observed_configs).values(
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        baseline=observation.to_json(),
                        seen_at=utcnow(),
                    )
                )
        except IntegrityError:  # remembered by another call in between
            return False
        return True

    def record(self, target: Target, observation: Observation) -> None:
        """`observation` is now what recbot last saw of `target`; nothing is expected any more."""
        values = {"baseline": observation.to_json(), "expected": None, "seen_at": utcnow()}
        with self.engine.begin() as conn:
            done = conn.execute(
                update(observed_configs).where(_where_target(observed_configs, target)).values(**values)
            )
        if done.rowcount == 0 and not self.remember(target, observation):
            self.record(target, observation)  # remembered by another call in between: overwrite it

    def expect(self, target: Target, observation: Observation) -> None:
        """A change recbot is about to apply will leave `observation` (targets not remembered need nothing)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(_where_target(observed_configs, target))
                .values(expected=observation.to_json())
            )

    def unexpect(self, target: Target, observation: Observation) -> None:
        """Compare-and-set: nothing is expected of `target` any more, if `observation` still is."""
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(_where_target(observed_configs, target), observed_configs.c.expected == observation.to_json())
                .values(expected=None)
            )

    def rebase(self, target: Target, old: Observation, new: Observation) -> None:
        """Compare-and-set: the baseline `old` becomes `new` (the same configuration, its keys
        digest made under the current key); what is expected stays as it is."""
        c = observed_configs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(_where_target(observed_configs, target), c.baseline == old.to_json())
                .values(baseline=new.to_json(), seen_at=utcnow())
            )

    @contextmanager
    def watch_lock(self) -> Iterator[bool]:
        """Whether this caller holds the one drift watch of every process on this
        database: a PostgreSQL advisory lock held on its own connection for the
        run, or on the embedded SQLite (one process) a lock of this process."""
        if self.engine.dialect.name != "postgresql":
            held = self._watch_lock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    self._watch_lock.release()
            return
        with self.engine.connect() as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(4242002)")).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(4242002)"))
                    conn.commit()

    # drift alerts
    def create_alert(
        self, alert_id: str, target: Target, before: Observation, after: Observation, changes: list[FieldChange]
    ) -> tuple[AlertRow, AlertRow | None] | None:
        """Open an alert for `target`, superseding an open one that saw something else;
        (the new alert, the superseded one), or None if one open for `after` exists."""
        c = drift_alerts.c
        now = utcnow()
        key = _open_key(target)
        o = observed_configs.c
        try:
            with self.engine.begin() as conn:
                # In the transaction: an acknowledgement or a change recbot applied meanwhile explains it.
                seen = conn.execute(select(o.baseline, o.expected).where(_where_target(observed_configs, target)))
                remembered = seen.first()
                if remembered is None or remembered.baseline != before.to_json():
                    return None
                if remembered.expected == after.to_json():
                    return None
                old = conn.execute(select(drift_alerts).where(c.open_target == key)).mappings().first()
                # An open alert that cannot be read cannot be acted on: a readable one replaces it.
                if old is not None and old["after"] == after.to_json() and _alert_row(old) is not None:
                    return None
                if old is not None:
                    conn.execute(
                        update(drift_alerts)
                        .where(c.id == old["id"], c.state == "open")
                        .values(
                            state="superseded",
                            open_target=None,
                            updated_at=now,
                            version=c.version + 1,
                            note="It changed again; see the newer alert.",
                        )
                    )
                conn.execute(
                    insert(drift_alerts).values(
                        id=alert_id,
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        open_target=key,
                        state="open",
                        detected_at=now,
                        updated_at=now,
                        before=before.to_json(),
                        after=after.to_json(),
                        changes=_changes_json(changes),
                        cards="[]",
                    )
                )
        except IntegrityError:  # another watcher opened one first
            return None
        created = self.alert(alert_id)
        assert created is not None
        return created, self.alert(old["id"]) if old is not None else None

    def alert(self, alert_id: str) -> AlertRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(drift_alerts).where(drift_alerts.c.id == alert_id)).mappings().first()
        return _alert_row(r) if r is not None else None

    def open_alerts(self) -> list[AlertRow]:
        c = drift_alerts.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(drift_alerts).where(c.state == "open").order_by(c.detected_at)).mappings()
            return [alert for alert in map(_alert_row, rows) if alert is not None]

    def open_alert_for(self, target: Target) -> AlertRow | None:
        with self.engine.connect() as conn:
            r = (
                conn.execute(select(drift_alerts).where(drift_alerts.c.open_target == _open_key(target)))
                .mappings()
                .first()
            )
        return _alert_row(r) if r is not None else None

    def end_alert(self, alert_id: str, to_state: str, *, baseline: Observation | None = None, **fields: Any) -> bool:
        """Compare-and-set: end an open alert, and with `baseline` make it what recbot
        last saw of the target, in the same transaction; whether this call ended it."""
        c = drift_alerts.c
        values = {"state": to_state, "open_target": None, "updated_at": utcnow(), "version": c.version + 1, **fields}
        with self.engine.begin() as conn:
            done = conn.execute(update(drift_alerts).where(c.id == alert_id, c.state == "open").values(**values))
            if done.rowcount == 1 and baseline is not None:
                ended = conn.execute(select(c.app_id, c.entry_point, c.region).where(c.id == alert_id)).one()
                target = Target.model_construct(app_id=ended[0], entry_point=ended[1], region=ended[2])
                conn.execute(
                    update(observed_configs)
                    .where(_where_target(observed_configs, target))
                    .values(baseline=baseline.to_json(), expected=None, seen_at=utcnow())
                )
        return done.rowcount == 1

    def set_alert_cards(self, alert_id: str, cards: list[CardRef]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(drift_alerts)
                .where(drift_alerts.c.id == alert_id)
                .values(cards=json.dumps([[c.channel, c.ts] for c in cards]))
            )

    # App Home
    def add_home_viewer(self, user: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(home_viewers).where(home_viewers.c.user_id == user).values(opened_at=utcnow()))
            if done.rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(home_viewers).values(user_id=user, opened_at=utcnow()))
                except IntegrityError:
                    pass  # added by another process in between; either way it is there

    def home_viewers(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(home_viewers.c.user_id).order_by(home_viewers.c.user_id))]

    # the recording switch: what recbot knows of it, and one change of it at a time
    def switch_state(self, app_id: str, entry_point: str) -> SwitchRow | None:
        """What recbot knows of the entry point's switch; None: never set through recbot."""
        with self.engine.connect() as conn:
            r = conn.execute(_SWITCH_STATE, {"app_id": app_id, "entry_point": entry_point}).mappings().first()
        return _switch_row(r) if r is not None else None

    def switch_states(self, app_id: str | None = None) -> list[SwitchRow]:
        """Every switch recbot knows of (of one app), by entry point."""
        c = recording_switches.c
        query = select(recording_switches).order_by(c.app_id, c.entry_point)
        if app_id is not None:
            query = query.where(c.app_id == app_id)
        with self.engine.connect() as conn:
            return [_switch_row(r) for r in conn.execute(query).mappings()]

    def put_switch(self, state: SwitchRow) -> None:
        """Record `state` as what recbot knows (call it holding `switch_lock`)."""
        c = recording_switches.c
        values = {
            "wanted": state.wanted,
            "cause": state.cause,
            "status": state.status,
            "actor": state.actor,
            "at": state.at,
            "request_id": state.request_id,
        }
        where = (c.app_id == state.app_id, c.entry_point == state.entry_point)
        with self.engine.begin() as conn:
            if conn.execute(update(recording_switches).where(*where).values(**values)).rowcount == 1:
                return
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(recording_switches).values(app_id=state.app_id, entry_point=state.entry_point, **values)
                    )
            except IntegrityError:  # inserted in between (a writer without the lock): overwrite it
                conn.execute(update(recording_switches).where(*where).values(**values))

    def forget_switch(self, app_id: str, entry_point: str) -> None:
        """Back to "never set through recbot" (undoing a write-ahead that sent nothing)."""
        c = recording_switches.c
        with self.engine.begin() as conn:
            conn.execute(delete(recording_switches).where(c.app_id == app_id, c.entry_point == entry_point))

    @contextmanager
    def switch_lock(self, app_id: str, entry_point: str, timeout: float = 60.0) -> Iterator[None]:
        """Hold the entry point's switch for one change: what recbot records then follows
        the order in which Agora got the changes. A PostgreSQL advisory lock on its own
        connection, or on the embedded SQLite (one process) a lock of this process.
        SwitchBusy if it is not free within `timeout` seconds."""
        key = json.dumps([app_id, entry_point])
        if self.engine.dialect.name != "postgresql":
            with self._switch_locks_guard:
                lock = self._switch_locks.setdefault(key, threading.Lock())
            if not lock.acquire(timeout=timeout):
                raise SwitchBusy(key)
            try:
                yield
            finally:
                lock.release()
            return
        with self.engine.connect() as conn:
            # Local to this transaction; the advisory lock itself outlives the commit.
            conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{int(timeout * 1000)}ms"})
            try:
                conn.execute(text("SELECT pg_advisory_lock(4242003, hashtext(:k))"), {"k": key})
            except OperationalError:
                raise SwitchBusy(key) from None
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(4242003, hashtext(:k))"), {"k": key})
                conn.commit()

    # single streams recbot asked Agora to record
    def add_stream_task(self, target: Target, stream: str, user: str, answered: bool = True) -> None:
        """List a stream task Agora accepted, or (`answered` False) one whose answer was lost."""
        where = (_where_target(stream_tasks, target), stream_tasks.c.stream == stream)
        values = {"started_by": user, "started_at": utcnow(), "status": None if answered else "unanswered"}
        with self.engine.begin() as conn:
            if conn.execute(update(stream_tasks).where(*where).values(**values)).rowcount == 1:
                return
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(stream_tasks).values(
                            app_id=target.app_id,
                            entry_point=target.entry_point,
                            region=target.region,
                            stream=stream,
                            **values,
                        )
                    )
            except IntegrityError:
                pass  # started again by another process in between; either way it is listed

    def remove_stream_task(self, target: Target, stream: str) -> bool:
        """Whether recbot listed it."""
        where = (_where_target(stream_tasks, target), stream_tasks.c.stream == stream)
        with self.engine.begin() as conn:
            done = conn.execute(delete(stream_tasks).where(*where))
        return done.rowcount == 1

    def stream_tasks(self) -> list[StreamTaskRow]:
        c = stream_tasks.c
        with self.engine.connect() as conn:
            return [_stream_task(r) for r in conn.execute(select(stream_tasks).order_by(c.started_at)).mappings()]

    def stream_tasks_of(self, target: Target) -> list[StreamTaskRow]:
        """The stream tasks recbot lists for one entry point in one region, newest first."""
        query = (
            select(stream_tasks).where(_where_target(stream_tasks, target)).order_by(stream_tasks.c.started_at.desc())
        )
        with self.engine.connect() as conn:
            return [_stream_task(r) for r in conn.execute(query).mappings()]


def _stream_task(r: Any) -> StreamTaskRow:
    return StreamTaskRow(
        Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
        r["stream"],
        r["started_by"],
        _aware(r["started_at"]),
        answered=r["status"] is None,
    )


def _switch_row(r: Any) -> SwitchRow:
    return SwitchRow(
        app_id=r["app_id"],
        entry_point=r["entry_point"],
        wanted=bool(r["wanted"]),
        cause=r["cause"],
        status=r["status"],
        actor=r["actor"],
        at=_aware(r["at"]),
        request_id=r["request_id"],
    )
