"""change_requests.version.

change_requests.version: bumped by every change a person could see on the card.

The hand-written schema version 2 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("change_requests", "version"):
        op.add_column("change_requests", sa.Column("version", sa.Integer, nullable=False, server_default="0"))
