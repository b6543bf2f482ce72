"""The deployment's one Agora budget in the shared database (PostgreSQL): its one
row, read and written back in one short transaction per lease, by the database's
clock, so every instance counts time alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from bot.ratelimit import Budget
from bot.store.schema import agora_budget

T = TypeVar("T")

# Built once: the budget is changed up to ten times a second per instance.
_LOCKED = (
    select(agora_budget.c.tokens, agora_budget.c.updated_at, agora_budget.c.paused_until, func.clock_timestamp())
    .where(agora_budget.c.id == 1)
    .with_for_update()
)
_WRITE = update(agora_budget).where(agora_budget.c.id == 1)


def change_budget(engine: Engine, rate: float, capacity: float, change: Callable[[Budget, float], T]) -> T:
    """Run `change(budget, now)` on the shared budget, the row locked, and store
    what it left; its result. `now` is the database's clock, in seconds."""
    with engine.begin() as conn:
        tokens, updated_at, paused_until, now = conn.execute(_LOCKED).one()
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
            )
        )
    return result


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
