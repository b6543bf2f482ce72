"""The embedded SQLite store keeps a connection for every thread that reads at once: under
load, a read must not open and close a connection of its own (a file and its pragmas each time)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, text

from bot.store.engine import make_engine

READERS_AT_ONCE = 12  # a burst of commands: more than SQLAlchemy's default of five kept


def test_connections_used_at_once_are_kept_for_the_next_burst(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.db'}")
    opened: list[object] = []
    event.listen(engine, "connect", lambda dbapi_connection, record: opened.append(dbapi_connection))
    try:
        for burst in range(3):
            held = [engine.connect() for _ in range(READERS_AT_ONCE)]  # as many readers at once
            assert [c.execute(text("select 1")).scalar() for c in held] == [1] * READERS_AT_ONCE
            for connection in held:
                connection.close()
            assert len(opened) == READERS_AT_ONCE, f"burst {burst} opened connections again"
    finally:
        engine.dispose()


def test_postgresql_connections_are_still_checked_before_use(tmp_path: Path) -> None:
    """A server restart drops kept connections; only a local SQLite file is trusted unchecked."""
    engine = make_engine("postgresql://recbot@127.0.0.1:1/none")
    assert engine.pool._pre_ping  # what the engine was built with
    assert not make_engine(f"sqlite:///{tmp_path / 'file.db'}").pool._pre_ping
