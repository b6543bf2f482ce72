"""Announcing ends once.

change_requests.announced_version and the claim on announcing an end
(announce_claimed_by, announce_claimed_at). Open requests are tracked from now on;
ended ones stay untracked (NULL), never announced again.

The hand-written schema version 5 before Alembic."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.migrations import lacks

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if lacks("change_requests", "announced_version"):
        op.add_column("change_requests", sa.Column("announced_version", sa.Integer))
        op.execute(
            "UPDATE change_requests SET announced_version = version WHERE state IN ('pending', 'approved', 'applying')"
        )
    if lacks("change_requests", "announce_claimed_by"):
        op.add_column("change_requests", sa.Column("announce_claimed_by", sa.String(32)))
    if lacks("change_requests", "announce_claimed_at"):
        op.add_column("change_requests", sa.Column("announce_claimed_at", sa.DateTime(timezone=True)))
