"""The deployment's one Agora budget in the shared database (PostgreSQL): its one
row, read and written back in one short transaction per lease, by the database's
clock, so every instance counts time alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from bot.ratelimit import Budget
from bot.store.schema import agora_budget

T = TypeVar("T")

# Built once: the budget is changed up to ten times a second per instance.
_LOCKED = (
    select(
        agora_budget.c.tokens,
        agora_budget.c.updated_at,
        agora_budget.c.paused_until,
        agora_budget.c.rate,
        func.clock_timestamp(),
    )
    .where(agora_budget.c.id == 1)
    .with_for_update()
)
_WRITE = update(agora_budget).where(agora_budget.c.id == 1)


@dataclass(frozen=True)
class LastWriter:
    """Who changed the budget before this transaction: its AGORA_RATE_LIMIT (None:
    nobody since revision 0011), and how many seconds ago, by the database's clock."""

    rate: float | None
    seconds_ago: float


def change_budget(
    engine: Engine, rate: float, capacity: float, change: Callable[[Budget, float], T]
) -> tuple[T, LastWriter]:
    """Run `change(budget, now)` on the shared budget, the row locked, and store
    what it left and `rate`; its result, and who wrote the row before. `now` is the
    database's clock, in seconds."""
    with engine.begin() as conn:
        tokens, updated_at, paused_until, last_rate, now = conn.execute(_LOCKED).one()
        last = LastWriter(last_rate, (now - updated_at).total_seconds())
        budget = Budget(
            rate,
            capacity,
            tokens=tokens,
            updated=updated_at.timestamp(),
            paused_until=paused_until.timestamp() if paused_until else -math.inf,
        )
        result = change(budget, now.timestamp())
        conn.execute(
            _WRITE.values(
                tokens=budget.tokens,
                updated_at=_moment(budget.updated),
                paused_until=_moment(budget.paused_until) if math.isfinite(budget.paused_until) else None,
                rate=rate,
            )
        )
    return result, last


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
