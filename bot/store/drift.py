"""What the drift watch keeps: per target, what recbot last read or applied (the
baseline) and what a change it is applying will leave (expected); the alerts it
raises on changes made outside recbot, one open per target; and the watch lock,
so one watch pass runs at a time across every process."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.models import FieldChange, Target
from bot.observation import Observation
from bot.store.engine import WATCH_LOCK, SharedLocks, aware
from bot.store.schema import changes_json, drift_alerts, observed_configs, open_key, where_target
from bot.store.values import AlertRow, CardRef, utcnow

log = logging.getLogger(__name__)


class DriftStore:
    """Observations per target, drift alerts, and the one watch of every process."""

    def __init__(self, engine: Engine, locks: SharedLocks) -> None:
        self.engine = engine
        self._locks = locks

    # observations: what recbot last read or applied per target
    def observed(self, target: Target) -> tuple[Observation, Observation | None] | None:
        """The remembered baseline of `target` and what an apply in progress expects, or None."""
        with self.engine.connect() as conn:
            r = conn.execute(select(observed_configs).where(where_target(observed_configs, target))).mappings().first()
        if r is None:
            return None
        expected = Observation.from_json(r["expected"]) if r["expected"] else None
        return Observation.from_json(r["baseline"]), expected

    def observed_targets(self) -> list[Target]:
        c = observed_configs.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.app_id, c.entry_point, c.region).order_by(c.app_id, c.entry_point, c.region))
            return [Target.model_construct(app_id=a, entry_point=e, region=r) for a, e, r in rows]

    def remember(self, target: Target, observation: Observation) -> bool:
        """Start remembering `target` as `observation`, unless it already is remembered."""
        if self.observed(target) is not None:
            return False
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(observed_configs).values(
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        baseline=observation.to_json(),
                        seen_at=utcnow(),
                    )
                )
        except IntegrityError:  # remembered by another call in between
            return False
        return True

    def record(self, target: Target, observation: Observation) -> None:
        """`observation` is now what recbot last saw of `target`; nothing is expected any more."""
        values = {"baseline": observation.to_json(), "expected": None, "seen_at": utcnow()}
        with self.engine.begin() as conn:
            done = conn.execute(update(observed_configs).where(where_target(observed_configs, target)).values(**values))
        if done.rowcount == 0 and not self.remember(target, observation):
            self.record(target, observation)  # remembered by another call in between: overwrite it

    def expect(self, target: Target, observation: Observation) -> None:
        """A change recbot is about to apply will leave `observation` (targets not remembered need nothing)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(where_target(observed_configs, target))
                .values(expected=observation.to_json())
            )

    def unexpect(self, target: Target, observation: Observation) -> None:
        """Compare-and-set: nothing is expected of `target` any more, if `observation` still is."""
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(where_target(observed_configs, target), observed_configs.c.expected == observation.to_json())
                .values(expected=None)
            )

    def rebase(self, target: Target, old: Observation, new: Observation) -> None:
        """Compare-and-set: the baseline `old` becomes `new` (the same configuration, its keys
        digest made under the current key); what is expected stays as it is."""
        c = observed_configs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(observed_configs)
                .where(where_target(observed_configs, target), c.baseline == old.to_json())
                .values(baseline=new.to_json(), seen_at=utcnow())
            )

    def watch_lock(self) -> AbstractContextManager[bool]:
        """Whether this caller holds the one drift watch of every process on this database."""
        return self._locks.try_hold(WATCH_LOCK)

    # drift alerts
    def create_alert(
        self, alert_id: str, target: Target, before: Observation, after: Observation, changes: list[FieldChange]
    ) -> tuple[AlertRow, AlertRow | None] | None:
        """Open an alert for `target`, superseding an open one that saw something else;
        (the new alert, the superseded one), or None if one open for `after` exists."""
        c = drift_alerts.c
        now = utcnow()
        key = open_key(target)
        o = observed_configs.c
        try:
            with self.engine.begin() as conn:
                # In the transaction: an acknowledgement or a change recbot applied meanwhile explains it.
                seen = conn.execute(select(o.baseline, o.expected).where(where_target(observed_configs, target)))
                remembered = seen.first()
                if remembered is None or remembered.baseline != before.to_json():
                    return None
                if remembered.expected == after.to_json():
                    return None
                old = conn.execute(select(drift_alerts).where(c.open_target == key)).mappings().first()
                # An open alert that cannot be read cannot be acted on: a readable one replaces it.
                if old is not None and old["after"] == after.to_json() and _alert_row(old) is not None:
                    return None
                if old is not None:
                    conn.execute(
                        update(drift_alerts)
                        .where(c.id == old["id"], c.state == "open")
                        .values(
                            state="superseded",
                            open_target=None,
                            updated_at=now,
                            version=c.version + 1,
                            note="It changed again; see the newer alert.",
                        )
                    )
                conn.execute(
                    insert(drift_alerts).values(
                        id=alert_id,
                        app_id=target.app_id,
                        entry_point=target.entry_point,
                        region=target.region,
                        open_target=key,
                        state="open",
                        detected_at=now,
                        updated_at=now,
                        before=before.to_json(),
                        after=after.to_json(),
                        changes=changes_json(changes),
                        cards="[]",
                    )
                )
        except IntegrityError:  # another watcher opened one first
            return None
        created = self.alert(alert_id)
        assert created is not None
        return created, self.alert(old["id"]) if old is not None else None

    def alert(self, alert_id: str) -> AlertRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(drift_alerts).where(drift_alerts.c.id == alert_id)).mappings().first()
        return _alert_row(r) if r is not None else None

    def open_alerts(self) -> list[AlertRow]:
        c = drift_alerts.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(drift_alerts).where(c.state == "open").order_by(c.detected_at)).mappings()
            return [alert for alert in map(_alert_row, rows) if alert is not None]

    def open_alert_for(self, target: Target) -> AlertRow | None:
        with self.engine.connect() as conn:
            r = (
                conn.execute(select(drift_alerts).where(drift_alerts.c.open_target == open_key(target)))
                .mappings()
                .first()
            )
        return _alert_row(r) if r is not None else None

    def end_alert(self, alert_id: str, to_state: str, *, baseline: Observation | None = None, **fields: Any) -> bool:
        """Compare-and-set: end an open alert, and with `baseline` make it what recbot
        last saw of the target, in the same transaction; whether this call ended it."""
        c = drift_alerts.c
        values = {"state": to_state, "open_target": None, "updated_at": utcnow(), "version": c.version + 1, **fields}
        with self.engine.begin() as conn:
            done = conn.execute(update(drift_alerts).where(c.id == alert_id, c.state == "open").values(**values))
            if done.rowcount == 1 and baseline is not None:
                ended = conn.execute(select(c.app_id, c.entry_point, c.region).where(c.id == alert_id)).one()
                target = Target.model_construct(app_id=ended[0], entry_point=ended[1], region=ended[2])
                conn.execute(
                    update(observed_configs)
                    .where(where_target(observed_configs, target))
                    .values(baseline=baseline.to_json(), expected=None, seen_at=utcnow())
                )
        return done.rowcount == 1

    def set_alert_cards(self, alert_id: str, cards: list[CardRef]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(drift_alerts)
                .where(drift_alerts.c.id == alert_id)
                .values(cards=json.dumps([[c.channel, c.ts] for c in cards]))
            )


def _alert_row(r: Any) -> AlertRow | None:
    """A stored alert as an AlertRow, or None (logged) if a field cannot be read (a damaged
    row, or one an older or newer recbot wrote): one bad row must not break every list of alerts."""
    try:
        return _read_alert(r)
    except (ValueError, TypeError) as exc:
        log.error("drift alert %s cannot be read (%s); skipped", r["id"], type(exc).__name__)
        return None


def _read_alert(r: Any) -> AlertRow:
    return AlertRow(
        id=r["id"],
        target=Target.model_construct(app_id=r["app_id"], entry_point=r["entry_point"], region=r["region"]),
        state=r["state"],
        detected_at=aware(r["detected_at"]),
        updated_at=aware(r["updated_at"]),
        before=Observation.from_json(r["before"]),
        after=Observation.from_json(r["after"]),
        changes=[FieldChange(*c) for c in json.loads(r["changes"])],
        cards=[CardRef(*c) for c in json.loads(r["cards"])],
        decided_by=r["decided_by"],
        note=r["note"],
        version=r["version"],
    )
