"""Fleet-wide jobs seen in Slack, and fleet scans shared by every instance.

jobs: where its approval cards are and who approved it (job_approvals), who decided last,
the filter and the plan's masked summary the cards show, its one progress message (posted
once: a claim; edited at most every 2 s: progress_at), when it started, and whether its end
was announced (as change_requests.announced_version). audit_events.job_id: a target's row
names its job. fleet_scans: a `/recording list` table kept in the database, so its pages,
CSV and "Change these" work from any instance. New columns are NULL or defaulted, new
tables empty: every row already stored stays."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("cards", sa.Text, nullable=False, server_default="[]"))
    op.add_column("jobs", sa.Column("decided_by", sa.String(32)))
    op.add_column("jobs", sa.Column("filter", sa.Text))
    op.add_column("jobs", sa.Column("summary", sa.Text))
    op.add_column("jobs", sa.Column("started_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("progress_ref", sa.Text))
    op.add_column("jobs", sa.Column("progress_claimed_by", sa.String(32)))
    op.add_column("jobs", sa.Column("progress_claimed_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("progress_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("announced_version", sa.Integer))
    op.add_column("jobs", sa.Column("announce_claimed_by", sa.String(32)))
    op.add_column("jobs", sa.Column("announce_claimed_at", sa.DateTime(timezone=True)))
    op.create_table(
        "job_approvals",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("approver", sa.String(32), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("audit_events", sa.Column("job_id", sa.String(32)))
    op.create_table(
        "fleet_scans",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("regions", sa.Text, nullable=False),
        sa.Column("rows", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("fleet_scans_by_age", "fleet_scans", ["created_at"])
