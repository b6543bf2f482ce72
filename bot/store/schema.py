"""The tables, as SQLAlchemy Table definitions: what the code reads and writes, and the
models Alembic compares the database with (`alembic check` must find nothing to
generate). A change here comes with a new revision in alembic/versions/."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
)

from bot.models import FieldChange, Target

metadata = MetaData()

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
    # Bumped by every change a person could see on the card (revision 0002).
    Column("version", Integer, nullable=False, server_default="0"),
    # What the storage probe found when the request was made, safe to show (revision 0003).
    Column("probe", Text),
    # What the request changes: a configuration (its patch sealed) or the recording switch,
    # whose secret-free spec is plain JSON (revision 0006; the switch's region is EVERY_REGION).
    Column("kind", String(16), nullable=False, server_default="config"),
    Column("spec", Text),
    # The version whose end has been announced (cards updated, requester told); an ended row
    # below its version was not, and a sweep announces it. NULL: not tracked (rows that had
    # ended before revision 0005). While someone announces it (its end; or, while it is
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
    Column("job_id", String(32)),  # a fleet-wide job's target (revision 0012)
)


# What recbot last read or applied per target, to see changes made outside it (revision 0004).
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
# about: the value recbot last sent, and whether Agora's answer showed it took effect (revision 0006).
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

# The single streams recbot asked Agora to record and has not stopped (revision 0006).
stream_tasks = Table(
    "stream_tasks",
    metadata,
    Column("app_id", String(128), primary_key=True),
    Column("entry_point", String(128), primary_key=True),
    Column("region", String(2), primary_key=True),
    Column("stream", String(128), primary_key=True),
    Column("started_by", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    # NULL: Agora accepted it; "unanswered": no usable answer came, so it may or may not record (revision 0007).
    Column("status", String(16)),
)

# The deployment's one Agora budget, shared by every instance on PostgreSQL: one row, id 1 (revision 0009).
agora_budget = Table(
    "agora_budget",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tokens", Float, nullable=False),  # at updated_at; negative: owed to reserved calls
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("paused_until", DateTime(timezone=True)),  # a 429's Retry-After, for every instance
    # The AGORA_RATE_LIMIT of the instance that wrote it last: another's there means they disagree (revision 0011).
    Column("rate", Float),
)

# A fleet-wide change, one approval for many targets, applied as a durable job (revision 0010).
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("requester", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    # What it changes, as plain JSON with no secret; its keys Fernet-sealed, NULL once the job ends.
    Column("change", Text, nullable=False),
    Column("sealed_secrets", LargeBinary),
    # The plan's counts: target rows, and targets matched that could not be read (not rows).
    Column("target_count", Integer, nullable=False, server_default="0"),
    Column("unreadable_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # For approval while pending, to be resumed while paused; past it, it expires.
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text),
    Column("version", Integer, nullable=False, server_default="0"),  # bumped by every move
    # Seen in Slack (revision 0012): where its approval cards are, who decided last, the filter
    # (JSON) and the plan's masked summary (JSON list of lines) the cards show, and when it started.
    Column("cards", Text, nullable=False, server_default="[]"),
    Column("decided_by", String(32)),
    Column("filter", Text),
    Column("summary", Text),
    Column("started_at", DateTime(timezone=True)),
    # Its one progress message ([channel, ts]), posted once across instances (the claim), and
    # when it was last edited: Slack's chat.update takes about one edit a second, recbot makes one per 2 s.
    Column("progress_ref", Text),
    Column("progress_claimed_by", String(32)),
    Column("progress_claimed_at", DateTime(timezone=True)),
    Column("progress_at", DateTime(timezone=True)),
    # The version whose end was announced, and the claim on announcing it (as change_requests').
    Column("announced_version", Integer),
    Column("announce_claimed_by", String(32)),
    Column("announce_claimed_at", DateTime(timezone=True)),
)

# Who approved a job, as `approvals` for a request (revision 0012).
job_approvals = Table(
    "job_approvals",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id"), primary_key=True),
    Column("approver", String(32), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# One row per target of a job: what the plan saw, and how applying it went.
job_targets = Table(
    "job_targets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False),
    Column("app_id", String(128), nullable=False),
    Column("region", String(2), nullable=False),
    Column("entry_point", String(128), nullable=False),
    Column("seen", Text, nullable=False),  # what the plan read, JSON with no secret (a digest, fingerprints)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),  # times handed to a worker
    Column("claimed_by", String(64)),
    Column("claimed_at", DateTime(timezone=True)),
    Column("detail", Text),  # how it ended, safe to show
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("job_id", "app_id", "region", "entry_point", name="job_targets_once"),
    # Claims read a job's planned rows in id order.
    Index("job_targets_by_state", "job_id", "state", "id"),
)


# A `/recording list` table, kept so its pages, CSV and "Change these" work from any instance (revision 0012).
fleet_scans = Table(
    "fleet_scans",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("app_id", String(128), nullable=False),
    Column("regions", Text, nullable=False),  # JSON list
    Column("rows", Text, nullable=False),  # JSON, no secret (keys as fingerprints)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("fleet_scans_by_age", "created_at"),
)


def open_key(target: Target) -> str:
    """What `open_target` holds while a request or alert of `target` is open."""
    return json.dumps([target.app_id, target.entry_point, target.region])


def changes_json(changes: Iterable[FieldChange]) -> str:
    return json.dumps([[c.label, c.before, c.after] for c in changes])


def where_target(table: Table, target: Target) -> ColumnElement[bool]:
    c = table.c
    return and_(c.app_id == target.app_id, c.entry_point == target.entry_point, c.region == target.region)
