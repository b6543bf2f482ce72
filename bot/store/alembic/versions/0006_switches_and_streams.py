"""The recording switch and stream tasks.

change_requests.kind and .spec (a request changes a configuration, or the recording
switch, whose spec is plain JSON); recording_switches, what recbot knows of each entry
point's switch; stream_tasks, the single streams recbot asked Agora to record.

The hand-written schema version 6 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("change_requests", "kind"):
        op.add_column("change_requests", sa.Column("kind", sa.String(16), nullable=False, server_default="config"))
    if lacks("change_requests", "spec"):
        op.add_column("change_requests", sa.Column("spec", sa.Text))
    if lacks("recording_switches"):
        op.create_table(
            "recording_switches",
            sa.Column("app_id", sa.String(128), primary_key=True),
            sa.Column("entry_point", sa.String(128), primary_key=True),
            sa.Column("wanted", sa.Boolean, nullable=False),
            sa.Column("cause", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("actor", sa.String(32), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("request_id", sa.String(32)),
        )
    if lacks("stream_tasks"):
        op.create_table(
            "stream_tasks",
            sa.Column("app_id", sa.String(128), primary_key=True),
            sa.Column("entry_point", sa.String(128), primary_key=True),
            sa.Column("region", sa.String(2), primary_key=True),
            sa.Column("stream", sa.String(128), primary_key=True),
            sa.Column("started_by", sa.String(32), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        )
