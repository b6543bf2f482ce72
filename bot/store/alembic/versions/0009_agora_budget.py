"""agora_budget.

The deployment's one Agora budget, shared by every instance on PostgreSQL
(bot/store/budget.py): one row, an empty bucket that fills from the upgrade on.
On the embedded SQLite it is made too, and unused: one process keeps its bucket."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    budget = op.create_table(
        "agora_budget",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
    )
    op.execute(budget.insert().values(id=1, tokens=0.0, updated_at=sa.func.now()))
