"""`/recording list` tables in the database every instance shares, so a page, the CSV or a
row's Get and Change work on whichever instance Slack's click reaches. A table is kept
as its rows' JSON, which bot/fleet_rows.py makes with no key in it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from bot.store.engine import aware
from bot.store.schema import fleet_scans
from bot.store.values import utcnow

log = logging.getLogger(__name__)

# Expired tables deleted by one save, oldest first: bounded work on the request path, and
# more than the one table a save adds, so what expired is soon gone.
PRUNE_BATCH = 16


@dataclass(frozen=True)
class SavedScan:
    """A kept table: its regions and rows as the JSON values it was saved with."""

    id: str
    app_id: str
    regions: Any
    rows: Any
    age: timedelta  # since it was saved, when it was read


class FleetScans:
    """Kept tables, each read while younger than the age its reader allows."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._clock = clock

    def save(self, scan_id: str, app_id: str, regions: Sequence[str], rows: Any, keep_for: timedelta) -> None:
        """Keep a table (one INSERT, its rows one JSON), and delete up to PRUNE_BATCH tables older than `keep_for`."""
        now = self._clock()
        c = fleet_scans.c
        expired = (
            select(c.id)
            .where(c.created_at < now - keep_for)
            .order_by(c.created_at)
            .limit(PRUNE_BATCH)
            # Two instances saving at once each take other expired rows, never wait for the other's.
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(fleet_scans).values(
                    id=scan_id,
                    app_id=app_id,
                    regions=json.dumps(list(regions)),
                    rows=json.dumps(rows, separators=(",", ":")),
                    created_at=now,
                )
            )
            conn.execute(delete(fleet_scans).where(c.id.in_(expired)))

    def get(self, scan_id: str, max_age: timedelta) -> SavedScan | None:
        """The table saved as `scan_id` at most `max_age` ago; None if older, pruned, never saved,
        or its JSON is damaged (its reader lists again)."""
        now = self._clock()
        c = fleet_scans.c
        with self.engine.connect() as conn:
            found = (
                conn.execute(select(fleet_scans).where(c.id == scan_id, c.created_at >= now - max_age))
                .mappings()
                .first()
            )
        if found is None:
            return None
        try:
            regions, rows = json.loads(found["regions"]), json.loads(found["rows"])
        except ValueError:
            log.warning("kept fleet table %s cannot be read; treated as expired", scan_id)
            return None
        return SavedScan(scan_id, found["app_id"], regions, rows, now - aware(found["created_at"]))
