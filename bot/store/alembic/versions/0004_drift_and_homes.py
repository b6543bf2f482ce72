"""Drift watch and App Home tables.

observed_configs, drift_alerts and home_viewers: what the drift watch remembers and
raises, and who has opened the App Home.

The hand-written schema version 4 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("observed_configs"):
        op.create_table(
            "observed_configs",
            sa.Column("app_id", sa.String(128), primary_key=True),
            sa.Column("entry_point", sa.String(128), primary_key=True),
            sa.Column("region", sa.String(2), primary_key=True),
            sa.Column("baseline", sa.Text, nullable=False),
            sa.Column("expected", sa.Text),
            sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        )
    if lacks("drift_alerts"):
        op.create_table(
            "drift_alerts",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("app_id", sa.String(128), nullable=False),
            sa.Column("entry_point", sa.String(128), nullable=False),
            sa.Column("region", sa.String(2), nullable=False),
            sa.Column("open_target", sa.String(300), unique=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("before", sa.Text, nullable=False),
            sa.Column("after", sa.Text, nullable=False),
            sa.Column("changes", sa.Text, nullable=False),
            sa.Column("cards", sa.Text, nullable=False),
            sa.Column("decided_by", sa.String(32)),
            sa.Column("note", sa.Text),
            sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        )
    if lacks("home_viewers"):
        op.create_table(
            "home_viewers",
            sa.Column("user_id", sa.String(32), primary_key=True),
            sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        )
