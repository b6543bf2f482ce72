"""What recbot knows of each entry point's custom recording switch (which Agora cannot
be asked about), the lock that lets one change of a switch be sent at a time across
every process, and the single streams recbot asked Agora to record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.models import Target
from bot.store.engine import SWITCH_LOCK, SharedLocks, aware
from bot.store.kept import kept_reads
from bot.store.schema import recording_switches, stream_tasks, where_target
from bot.store.values import StreamTaskRow, SwitchBusy, SwitchRow, utcnow

# Read on every `/recording get`: built once, because building the statement cost twice
# what running it does (bench.ack_latency's profile).
_STATE = select(recording_switches).where(
    recording_switches.c.app_id == bindparam("app_id"), recording_switches.c.entry_point == bindparam("entry_point")
)
_TASKS_OF = (
    select(stream_tasks)
    .where(
        stream_tasks.c.app_id == bindparam("app_id"),
        stream_tasks.c.entry_point == bindparam("entry_point"),
        stream_tasks.c.region == bindparam("region"),
    )
    .order_by(stream_tasks.c.started_at.desc())
)


class SwitchStore:
    """Switch states, the switch lock, and stream tasks."""

    def __init__(self, engine: Engine, locks: SharedLocks) -> None:
        self.engine = engine
        self._locks = locks
        self._kept = kept_reads(engine)

    def state(self, app_id: str, entry_point: str, *, kept: bool = True) -> SwitchRow | None:
        """What recbot knows of the entry point's switch; None: never set through recbot.
        `kept=False` reads the database whatever is kept: what a change is decided on."""
        if not kept:
            return self._state(app_id, entry_point)
        return self._kept.read(("state", app_id, entry_point), lambda: self._state(app_id, entry_point))

    def _state(self, app_id: str, entry_point: str) -> SwitchRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(_STATE, {"app_id": app_id, "entry_point": entry_point}).mappings().first()
        return _switch_row(r) if r is not None else None

    def states(self, app_id: str | None = None) -> list[SwitchRow]:
        """Every switch recbot knows of (of one app), by entry point."""
        c = recording_switches.c
        query = select(recording_switches).order_by(c.app_id, c.entry_point)
        if app_id is not None:
            query = query.where(c.app_id == app_id)
        with self.engine.connect() as conn:
            return [_switch_row(r) for r in conn.execute(query).mappings()]

    def put(self, state: SwitchRow) -> None:
        """Record `state` as what recbot knows (call it holding `lock`)."""
        c = recording_switches.c
        values = {
            "wanted": state.wanted,
            "cause": state.cause,
            "status": state.status,
            "actor": state.actor,
            "at": state.at,
            "request_id": state.request_id,
        }
        where = (c.app_id == state.app_id, c.entry_point == state.entry_point)
        with self.engine.begin() as conn:
            if conn.execute(update(recording_switches).where(*where).values(**values)).rowcount == 1:
                return
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(recording_switches).values(app_id=state.app_id, entry_point=state.entry_point, **values)
                    )
            except IntegrityError:  # inserted in between (a writer without the lock): overwrite it
                conn.execute(update(recording_switches).where(*where).values(**values))

    def forget(self, app_id: str, entry_point: str) -> None:
        """Back to "never set through recbot" (undoing a write-ahead that sent nothing)."""
        c = recording_switches.c
        with self.engine.begin() as conn:
            conn.execute(delete(recording_switches).where(c.app_id == app_id, c.entry_point == entry_point))

    @contextmanager
    def lock(self, app_id: str, entry_point: str, timeout: float = 60.0) -> Iterator[None]:
        """Hold the entry point's switch for one change: what recbot records then follows
        the order in which Agora got the changes. SwitchBusy if it is not free within
        `timeout` seconds."""
        key = json.dumps([app_id, entry_point])
        with self._locks.hold(SWITCH_LOCK, key, timeout, busy=lambda: SwitchBusy(key)):
            yield

    # single streams recbot asked Agora to record
    def add_stream_task(self, target: Target, stream: str, user: str, answered: bool = True) -> None:
        """List a stream task Agora accepted, or (`answered` False) one whose answer was lost."""
        where = (where_target(stream_tasks, target), stream_tasks.c.stream == stream)
        values = {"started_by": user, "started_at": utcnow(), "status": None if answered else "unanswered"}
        with self.engine.begin() as conn:
            if conn.execute(update(stream_tasks).where(*where).values(**values)).rowcount == 1:
                return
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(stream_tasks).values(
                            app_id=target.app_id,
                            entry_point=target.entry_point,
                            region=target.region,
                            stream=stream,
                            **values,
                        )
                    )
            except IntegrityError:
                pass  # started again by another process in between; either way it is listed

    def remove_stream_task(self, target: Target, stream: str) -> bool:
        """Whether recbot listed it."""
        where = (where_target(stream_tasks, target), stream_tasks.c.stream == stream)
        with self.engine.begin() as conn:
            done = conn.execute(delete(stream_tasks).where(*where))
        return done.rowcount == 1

    def stream_tasks(self) -> list[StreamTaskRow]:
        c = stream_tasks.c
        with self.engine.connect() as conn:
            return [_stream_task(r) for r in conn.execute(select(stream_tasks).order_by(c.started_at)).mappings()]

    def stream_tasks_of(self, target: Target) -> list[StreamTaskRow]:
        """The stream tasks recbot lists for one entry point in one region, newest first."""
        return list(
            self._kept.read(("tasks", target.app_id, target.entry_point, target.region), lambda: self._tasks_of(target))
        )

    def _tasks_of(self, target: Target) -> tuple[StreamTaskRow, ...]:
        where = {"app_id": target.app_id, "entry_point": target.entry_point, "region": target.region}
        with self.engine.connect() as conn:
            return tuple(_stream_task(r) for r in conn.execute(_TASKS_OF, where).mappings())


def _stream_task(r: Any) -> StreamTaskRow:
    return StreamTaskRow(
        Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
        r["stream"],
        r["started_by"],
        aware(r["started_at"]),
        answered=r["status"] is None,
    )


def _switch_row(r: Any) -> SwitchRow:
    return SwitchRow(
        app_id=r["app_id"],
        entry_point=r["entry_point"],
        wanted=bool(r["wanted"]),
        cause=r["cause"],
        status=r["status"],
        actor=r["actor"],
        at=aware(r["at"]),
        request_id=r["request_id"],
    )
