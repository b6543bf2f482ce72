"""Change requests, approvals and the audit trail.

Change requests, their approvals and the audit trail, as recbot's first release made them.

The hand-written schema version 1 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("change_requests"):
        op.create_table(
            "change_requests",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("app_id", sa.String(128), nullable=False),
            sa.Column("entry_point", sa.String(128), nullable=False),
            sa.Column("region", sa.String(2), nullable=False),
            sa.Column("open_target", sa.String(300), unique=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("requester", sa.String(32), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("base_digest", sa.String(64), nullable=False),
            sa.Column("sealed_patch", sa.LargeBinary),
            sa.Column("changes", sa.Text, nullable=False),
            sa.Column("cards", sa.Text, nullable=False),
            sa.Column("decided_by", sa.String(32)),
            sa.Column("reason", sa.Text),
            sa.Column("result", sa.Text),
        )
    if lacks("approvals"):
        op.create_table(
            "approvals",
            sa.Column("request_id", sa.String(32), sa.ForeignKey("change_requests.id"), primary_key=True),
            sa.Column("approver", sa.String(32), primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        )
    if lacks("audit_events"):
        op.create_table(
            "audit_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("event", sa.String(32), nullable=False),
            sa.Column("actor", sa.String(32), nullable=False),
            sa.Column("app_id", sa.String(128), nullable=False),
            sa.Column("entry_point", sa.String(128), nullable=False),
            sa.Column("region", sa.String(2), nullable=False),
            sa.Column("request_id", sa.String(32)),
            sa.Column("detail", sa.Text, nullable=False),
        )
