"""jobs and job_targets.

A fleet-wide change applied as a durable job: its row (the change with no secret, the
keys sealed, the state, the plan's counts) and one row per target, which workers of
any instance claim (bot/store/jobs.py). New tables only: every row already stored stays."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("requester", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("sealed_secrets", sa.LargeBinary),
        sa.Column("target_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unreadable_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "job_targets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("entry_point", sa.String(128), nullable=False),
        sa.Column("seen", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("job_id", "app_id", "region", "entry_point", name="job_targets_once"),
    )
    op.create_index("job_targets_by_state", "job_targets", ["job_id", "state", "id"])
