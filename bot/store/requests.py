"""Change requests and their approvals: creating one (one open per target), reading
them, and every move of one as a compare-and-set UPDATE whose next state the life
cycle table gives (bot/lifecycle.py), so concurrent clicks and processes cannot
both win. Ending a request frees its target and deletes its sealed secrets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.lifecycle import ENDED_STATES, OPEN_STATES, next_state
from bot.models import EVERY_REGION, FieldChange, Target
from bot.store.engine import aware
from bot.store.kept import kept_reads
from bot.store.schema import approvals, change_requests, changes_json, open_key
from bot.store.values import REQUEST_KINDS, CardRef, ProbeNote, RequestRow, TargetBusy, Vote, utcnow


class RequestStore:
    """Change requests and who approved them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept = kept_reads(engine)

    def create(
        self,
        *,
        request_id: str,
        target: Target,
        requester: str,
        expires_at: datetime,
        base_digest: str,
        sealed_patch: bytes | None,
        changes: list[FieldChange],
        probe: ProbeNote | None = None,
        kind: str = "config",
        spec: dict[str, Any] | None = None,
        card_claim: str | None = None,
    ) -> RequestRow:
        """Insert a pending request, or raise TargetBusy naming the open one; `card_claim`
        (a token) holds the right to post its cards from the start (see AnnouncementStore)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(change_requests).values(
                        id=request_id,
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        open_target=open_key(target),
                        state="pending",
                        requester=requester,
                        created_at=now,
                        expires_at=expires_at,
                        updated_at=now,
                        base_digest=base_digest,
                        sealed_patch=sealed_patch,
                        changes=changes_json(changes),
                        cards="[]",
                        probe=json.dumps([probe.verdict, probe.summary]) if probe else None,
                        kind=kind,
                        spec=json.dumps(spec) if spec is not None else None,
                        announced_version=0,
                        announce_claimed_by=card_claim,
                        announce_claimed_at=now if card_claim else None,
                    )
                )
        except IntegrityError:
            holder = self._open_for(target)
            if holder is None:  # it ended in between; the caller may try again
                raise
            raise TargetBusy(holder) from None
        row = self.get(request_id)
        assert row is not None
        return row

    def get(self, request_id: str) -> RequestRow | None:
        with self.engine.connect() as conn:
            rows = read_requests(conn, change_requests.c.id == request_id)
        return rows[0] if rows else None

    def open_request_for(self, target: Target) -> RequestRow | None:
        """The open request of `target` (one at most), or None."""
        return self._kept.read(("open", open_key(target)), lambda: self._open_for(target))

    def _open_for(self, target: Target) -> RequestRow | None:
        with self.engine.connect() as conn:
            found = conn.execute(_OPEN_FOR, {"open_target": open_key(target)}).mappings().all()
            rows = with_approvers(conn, found)
        return rows[0] if rows else None

    def open_requests(self) -> list[RequestRow]:
        with self.engine.connect() as conn:
            return read_requests(conn, change_requests.c.state.in_(OPEN_STATES))

    def in_state(self, *states: str, updated_before: datetime | None = None) -> list[RequestRow]:
        where: ColumnElement[bool] = change_requests.c.state.in_(states)
        if updated_before is not None:
            where = and_(where, change_requests.c.updated_at <= updated_before)
        with self.engine.connect() as conn:
            return read_requests(conn, where)

    def due_for_expiry(self, now: datetime) -> list[RequestRow]:
        with self.engine.connect() as conn:
            return read_requests(conn, (change_requests.c.state == "pending") & (change_requests.c.expires_at <= now))

    def transition(
        self,
        request_id: str,
        state: str,
        event: str,
        *,
        unexpired_at: datetime | None = None,
        announcer: str | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: `event` moves the request on as the life cycle table says, only if
        it is still in `state` (and, with `unexpired_at`, not expired by then); LifecycleError
        if the table has no such move. Whether this call made the move. With `announcer` (a
        token), the UPDATE that ends a request also claims the announcement of its end for them."""
        to_state = next_state(state, event)
        c = change_requests.c
        values: dict[str, Any] = {"state": to_state, "updated_at": utcnow(), "version": c.version + 1, **fields}
        if to_state in ENDED_STATES:
            values.update(open_target=None, sealed_patch=None)
            if announcer is not None:
                values.update(announce_claimed_by=announcer, announce_claimed_at=utcnow())
        where = [c.id == request_id, c.state == state]
        if unexpired_at is not None:
            where.append(c.expires_at > unexpired_at)
        with self.engine.begin() as conn:
            done = conn.execute(update(change_requests).where(*where).values(**values))
        return done.rowcount == 1

    def set_cards(self, request_id: str, cards: list[CardRef]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(change_requests)
                .where(change_requests.c.id == request_id)
                .values(cards=json.dumps([[c.channel, c.ts] for c in cards]))
            )

    def add_approval(self, request_id: str, approver: str, *, now: datetime, required: int) -> Vote:
        """Count one approver's approval of a pending, unexpired request, and
        approve the request in the same transaction when it was the last one
        needed, so exactly one approval completes it whatever runs at once."""
        c = change_requests.c
        try:
            with self.engine.begin() as conn:
                # Locks the row (PostgreSQL) or the database (SQLite) until commit: approvals queue here.
                claimed = conn.execute(
                    update(change_requests)
                    .where(c.id == request_id, c.state == "pending", c.expires_at > now)
                    .values(version=c.version + 1, updated_at=utcnow())
                )
                if claimed.rowcount != 1:
                    return Vote.CLOSED
                conn.execute(insert(approvals).values(request_id=request_id, approver=approver, at=utcnow()))
                count = conn.execute(
                    select(func.count()).select_from(approvals).where(approvals.c.request_id == request_id)
                ).scalar_one()
                if count < required:
                    return Vote.COUNTED
                conn.execute(
                    update(change_requests)
                    .where(c.id == request_id)
                    .values(state=next_state("pending", "approve"), decided_by=approver)
                )
                return Vote.COMPLETED
        except IntegrityError:  # the primary key (request, approver): a repeat; the whole transaction rolled back
            return Vote.REPEAT


# Read on every `/recording get` (is a pause or resume waiting?): built once, as building
# a statement costs more than running it.
_OPEN_FOR = (
    select(change_requests)
    .where(change_requests.c.open_target == bindparam("open_target"))
    .order_by(change_requests.c.created_at)
)


def read_requests(conn: Connection, where: Any) -> list[RequestRow]:
    """The requests `where` selects, oldest first, each with its approvers in order."""
    c = change_requests.c
    found = conn.execute(select(change_requests).where(where).order_by(c.created_at)).mappings().all()
    return with_approvers(conn, found)


def with_approvers(conn: Connection, found: Sequence[Any]) -> list[RequestRow]:
    """Stored request rows as RequestRows, each with its approvers in order."""
    approved_by: dict[str, list[str]] = {}
    if found:
        for request_id, approver in conn.execute(
            select(approvals.c.request_id, approvals.c.approver)
            .where(approvals.c.request_id.in_([r["id"] for r in found]))
            .order_by(approvals.c.at)
        ):
            approved_by.setdefault(request_id, []).append(approver)
    return [_request_row(r, approved_by.get(r["id"], [])) for r in found]


def _request_row(r: Any, approvers: list[str]) -> RequestRow:
    """A stored row as a RequestRow. Fields that cannot be read (a damaged row,
    or one an older or newer recbot wrote) do not raise: the row says so in
    `problem`, so a sweep can end it and go on with the next."""
    problem = None
    try:
        if r["region"] == EVERY_REGION:
            target = Target.every_region(r["app_id"], r["entry_point"])
        else:
            target = Target(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes = [FieldChange(*c) for c in json.loads(r["changes"])]
    except (ValueError, TypeError) as exc:
        target = Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"])
        changes, problem = [], f"its stored target or changes could not be read ({type(exc).__name__})"
    kind, spec = r["kind"], None
    try:
        spec = json.loads(r["spec"]) if r["spec"] else None
    except ValueError:
        problem = problem or "its stored switch could not be read"
    if kind not in REQUEST_KINDS:
        problem = problem or f"its kind {str(kind)[:16]!r} is not one this recbot knows (a newer recbot wrote it?)"
    try:
        cards = [CardRef(*c) for c in json.loads(r["cards"])]
    except (ValueError, TypeError) as exc:
        cards, problem = [], problem or f"its stored card places could not be read ({type(exc).__name__})"
    try:
        probe = ProbeNote(*json.loads(r["probe"])) if r["probe"] else None
    except (ValueError, TypeError):
        probe = None  # only shown on the card; losing it loses nothing else
    return RequestRow(
        id=r["id"],
        target=target,
        state=r["state"],
        requester=r["requester"],
        created_at=aware(r["created_at"]),
        expires_at=aware(r["expires_at"]),
        updated_at=aware(r["updated_at"]),
        base_digest=r["base_digest"],
        sealed_patch=r["sealed_patch"],
        changes=changes,
        cards=cards,
        approvers=approvers,
        decided_by=r["decided_by"],
        reason=r["reason"],
        result=r["result"],
        version=r["version"],
        problem=problem,
        probe=probe,
        kind=kind,
        spec=spec if isinstance(spec, dict) else None,
    )
