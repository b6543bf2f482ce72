"""Drop schema_version.

Drop schema_version, the hand-written migrations' counter: Alembic's alembic_version
says where the database stands from here on (a database made before Alembic was
stamped with the matching revision before this one ran)."""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schema_version")
