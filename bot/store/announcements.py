"""Announcing a request once across every process: posting the approval cards of a pending
one that has none, and its end (its cards updated, the requester told). What is not
announced yet, and the claim on announcing it, taken by one caller at a time, released
when it failed, finished when it was made."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import Engine

from bot.lifecycle import ENDED_STATES
from bot.store.requests import read_requests
from bot.store.schema import change_requests
from bot.store.values import RequestRow, utcnow


class AnnouncementStore:
    """Who announces which end; a row's `announced_version` below its `version` is not announced."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def unannounced_ends(self) -> list[RequestRow]:
        """Ended requests whose end was not announced: its announcement failed, or is being made."""
        c = change_requests.c
        with self.engine.connect() as conn:
            return read_requests(conn, c.state.in_(ENDED_STATES) & (c.announced_version < c.version))

    def claim(self, request_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Compare-and-set: the right to announce the end of `request_id`, if it is not announced
        and nobody holds that right (or, with `stale_before`, the holder claimed it before then
        and stopped: its process went away). The claim's token, or None."""
        c = change_requests.c
        free: ColumnElement[bool] = c.announce_claimed_at.is_(None)
        if stale_before is not None:
            free = free | (c.announce_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.state.in_(ENDED_STATES), c.announced_version < c.version, free)
                .values(announce_claimed_by=token, announce_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

    def cardless_requests(self) -> list[RequestRow]:
        """Pending requests without an approval card: every post of them failed, or one is being made."""
        c = change_requests.c
        with self.engine.connect() as conn:
            return read_requests(conn, (c.state == "pending") & (c.cards == "[]"))

    def claim_cards(self, request_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Compare-and-set: the right to post the cards of `request_id` while it is pending with
        none, if nobody holds that right (or, with `stale_before`, the holder claimed it before
        then and stopped). The claim's token, or None; `release` gives it back."""
        c = change_requests.c
        free: ColumnElement[bool] = c.announce_claimed_at.is_(None)
        if stale_before is not None:
            free = free | (c.announce_claimed_at <= stale_before)
        token = secrets.token_hex(8)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.state == "pending", c.cards == "[]", free)
                .values(announce_claimed_by=token, announce_claimed_at=utcnow())
            )
        return token if done.rowcount == 1 else None

    def finish(self, request_id: str, token: str) -> None:
        """The end of `request_id` has been announced by the holder of `token`: never again."""
        c = change_requests.c
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.announce_claimed_by == token)
                .values(announced_version=c.version, announce_claimed_by=None, announce_claimed_at=None)
            )

    def release(self, request_id: str, token: str) -> None:
        """The announcement by the holder of `token` failed: the next sweep claims it again."""
        c = change_requests.c
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(c.id == request_id, c.announce_claimed_by == token)
                .values(announce_claimed_by=None, announce_claimed_at=None)
            )
