"""stream_tasks.status.

NULL: Agora accepted the stream task; "unanswered": no usable answer came, so it may
or may not record. Tasks listed before are ones Agora accepted (NULL).

The hand-written schema version 7 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("stream_tasks", "status"):
        op.add_column("stream_tasks", sa.Column("status", sa.String(16)))
