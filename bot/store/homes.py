"""Who has opened recbot's App Home, so a change refreshes only the homes someone looks at."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.store.schema import home_viewers
from bot.store.values import utcnow


class HomeViewers:
    """The users whose App Home recbot keeps current."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, user: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(home_viewers).where(home_viewers.c.user_id == user).values(opened_at=utcnow()))
            if done.rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(home_viewers).values(user_id=user, opened_at=utcnow()))
                except IntegrityError:
                    pass  # added by another process in between; either way it is there

    def all(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(home_viewers.c.user_id).order_by(home_viewers.c.user_id))]
