"""change_requests.probe.

change_requests.probe: what the storage probe found when the request was made, safe to show.

The hand-written schema version 3 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("change_requests", "probe"):
        op.add_column("change_requests", sa.Column("probe", sa.Text))
