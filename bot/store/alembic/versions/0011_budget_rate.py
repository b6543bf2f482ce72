"""agora_budget.rate.

The AGORA_RATE_LIMIT of the instance that wrote the shared budget last
(bot/store/budget.py): instances refill the one bucket at their own rate, so
one that finds another's there says the two disagree. NULL until an instance
writes it; the row and its tokens stay."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agora_budget", sa.Column("rate", sa.Float))
