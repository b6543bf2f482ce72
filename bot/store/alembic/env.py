"""Alembic's environment for recbot, run by bot/store/migrations.py (there is no
alembic.ini): online on the connection it hands over, inside its transaction and
lock; offline, printing the SQL for the dialect it names. recbot only upgrades:
going back is restoring the backup taken before the upgrade."""

from __future__ import annotations

from alembic import context

from bot.store.schema import metadata

config = context.config
if context.is_offline_mode():
    context.configure(dialect_name=config.attributes["dialect"], target_metadata=metadata, literal_binds=True)
else:
    context.configure(connection=config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
