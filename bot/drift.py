"""The drift watch: configurations changed outside recbot (Agora Console, a
script) bypass the two-person rule, so recbot reads what it remembers again
and raises an alert when the live configuration differs and recbot did not
make the change. One watch runs at a time across every process."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import ValidationError

from bot.agora import AgoraClient, AgoraError, AgoraNotFound
from bot.catalog import API_REGIONS
from bot.metrics import Metrics
from bot.models import RecordingConfig, Target
from bot.observation import Observation, changes_between, observe, under_key_of
from bot.store.audit import AuditLog
from bot.store.drift import DriftStore
from bot.store.requests import RequestStore
from bot.store.values import AlertRow, utcnow

log = logging.getLogger(__name__)

# Reads in flight at once; the shared rate limiter sets the pace, as for the fleet.
WATCH_WORKERS = 8
# An open alert still without a card this long after it was seen: its posting failed (Slack
# refused, or was down), not under way in the process that ran its pass; a pass posts it again.
UNPOSTED_AFTER = timedelta(minutes=2)
OUTSIDE = "outside"  # the audit actor of a change nobody in recbot made


class AlertClosed(Exception):
    """The alert was already acknowledged or resolved; the message says by whom or how."""


@dataclass(frozen=True)
class AlertMove:
    """Something one watch pass did to an alert, for whoever announces it ("opened": post its
    cards, also for an alert whose cards could not be posted before)."""

    kind: Literal["opened", "ended"]
    alert: AlertRow


def already_closed(alert: AlertRow) -> str:
    if alert.state == "acknowledged":
        return f"That change was already acknowledged by <@{alert.decided_by}>."
    if alert.state == "superseded":
        return "That alert was replaced by a newer one: the configuration changed again."
    return f"That alert is closed: {alert.note or alert.state}."


class DriftWatch:
    """Remembers what recbot read or applied, and compares the live state with it."""

    def __init__(
        self,
        store: DriftStore,
        audit: AuditLog,
        requests: RequestStore,
        agora: AgoraClient,
        digest_key: bytes,
        *,
        app_id: str,
        watch_all: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._audit = audit
        self._requests = requests
        self._agora = agora
        self._key = digest_key
        self._app_id = app_id
        self._watch_all = watch_all
        self._passes = 0
        self._passes_lock = threading.Condition()
        # Targets known to be remembered: rows are never deleted, so a `get` of one needs no query.
        self._remembered: set[Target] = set()
        self._stopping = threading.Event()

    def observe(self, config: RecordingConfig) -> Observation:
        return observe(config, self._key)

    def saw(self, target: Target, config: RecordingConfig) -> None:
        """A read by recbot: remember the target if it is new. A known target keeps
        its baseline, so a read does not hide a change made outside recbot."""
        if target not in self._remembered:
            self._store.remember(target, self.observe(config))
            self._remembered.add(target)

    def expect(self, target: Target, config: RecordingConfig) -> None:
        """recbot is about to PATCH `target` towards `config`: that is no drift."""
        self._store.expect(target, self.observe(config))

    def unexpect(self, target: Target, config: RecordingConfig) -> None:
        """recbot's change towards `config` is over, whatever became of it: stop expecting it
        (unless another change expects something else by now)."""
        self._store.unexpect(target, self.observe(config))

    def applied(self, target: Target, config: RecordingConfig) -> None:
        """What recbot read back after its own change is the new baseline."""
        self._store.record(target, self.observe(config))

    def acknowledge(self, alert_id: str, user: str) -> AlertRow:
        """Accept the outside change: it becomes the baseline. AlertClosed if it was too late."""
        alert = self._alert(alert_id)
        note = "Acknowledged: the change stays, and is now what recbot compares with."
        if not self._store.end_alert(alert_id, "acknowledged", baseline=alert.after, decided_by=user, note=note):
            raise AlertClosed(already_closed(self._alert(alert_id)))
        self._audit.append("drift_acknowledged", user, alert.target, changes=alert.changes)
        log.info("drift alert %s acknowledged by %s", alert_id, user)
        return self._alert(alert_id)

    def open_alert(self, alert_id: str) -> AlertRow:
        """An alert that can still be acted on, or AlertClosed."""
        alert = self._alert(alert_id)
        if not alert.is_open:
            raise AlertClosed(already_closed(alert))
        return alert

    def _alert(self, alert_id: str) -> AlertRow:
        alert = self._store.alert(alert_id)
        if alert is None:
            raise AlertClosed("That alert does not exist.")
        return alert

    @property
    def passes(self) -> int:
        """How many watch passes this process has completed (tests wait on it)."""
        with self._passes_lock:
            return self._passes

    def wait_passes(self, count: int, timeout: float = 30.0) -> bool:
        with self._passes_lock:
            return self._passes_lock.wait_for(lambda: self._passes >= count, timeout)

    def run(self, announce: Callable[[AlertMove], None] | None = None) -> list[AlertMove]:
        """One watch pass, if no other process is running one; the alert moves it made, each
        given to `announce` while the pass still holds the watch lock (so an alert whose cards
        are being posted again is not also posted by another process's pass). Counted when this
        process ran it (done) or could not (failed: the lock or the list of targets could not be
        had); a pass left to the process holding the lock is not."""
        moves: list[AlertMove] = []
        started = time.monotonic()
        try:
            with self._store.watch_lock() as held:
                if held:
                    targets = self._targets()
                    with ThreadPoolExecutor(WATCH_WORKERS, thread_name_prefix="drift") as pool:
                        for found in pool.map(self._check, targets):
                            moves += found
                    moves += self._unposted()
                    if announce is not None:
                        for move in moves:
                            announce(move)
        except Exception:
            self._ran("failed", started)
            raise
        if held:
            self._ran("done", started)
        with self._passes_lock:
            self._passes += 1
            self._passes_lock.notify_all()
        return moves

    def _unposted(self) -> list[AlertMove]:
        """Open alerts whose cards could not be posted: announced again, as if opened now (only
        the process holding the watch lock asks, so each is posted by one process)."""
        seen_before = utcnow() - UNPOSTED_AFTER
        cardless = [a for a in self._store.open_alerts() if not a.cards and a.detected_at < seen_before]
        return [AlertMove("opened", alert) for alert in cardless]

    def _ran(self, outcome: str, started: float) -> None:
        self._metrics.drift_passes.labels(outcome=outcome).inc()
        self._metrics.drift_pass_seconds.observe(time.monotonic() - started)

    def stop(self) -> None:
        """Shutting down: a pass under way ends after the reads in flight, before the store closes under it."""
        self._stopping.set()

    def _targets(self) -> list[Target]:
        targets = self._store.observed_targets()
        if self._watch_all:
            try:
                names = self._agora.list_entry_points(self._app_id, wait_limit=None)
            except AgoraError as exc:
                log.warning("the drift watch could not list entry points (%s); watching the remembered ones", exc)
                names = []
            targets += _addressable(self._app_id, names)
        return list(dict.fromkeys(targets))

    def _check(self, target: Target) -> list[AlertMove]:
        if self._stopping.is_set():
            return []
        try:
            return self._compare(target)
        except Exception:  # one target's failure must not end the pass
            log.exception("the drift watch could not check %s", target.describe())
            return []

    def _compare(self, target: Target) -> list[AlertMove]:
        remembered = self._store.observed(target)
        try:
            live = self.observe(self._agora.get_config(target, wait_limit=None))  # background: waits its turn
        except AgoraNotFound:
            return []  # nothing configured there (or it was deleted): nothing to compare
        except AgoraError as exc:
            # A failed read says nothing about the configuration: not drift.
            log.warning("the drift watch could not read %s: %s", target.describe(), exc.user_message())
            return []
        if remembered is None:
            self._store.remember(target, live)
            return []
        baseline, expected = remembered
        rekeyed = under_key_of(baseline, live)
        if rekeyed != baseline:
            # Kept under the current key from now on, whatever is expected: an alert is
            # opened only against the stored baseline.
            self._store.rebase(target, baseline, rekeyed)
            baseline = rekeyed
        if live == baseline or live == expected:
            if live == expected:
                self._store.record(target, live)  # recbot's own change, read before it recorded it
            return self._resolve(target)
        if any(r.target == target and r.state in ("approved", "applying") for r in self._requests.open_requests()):
            return []  # recbot is applying a change right now; the next pass sees how it ended
        found = self._store.open_alert_for(target)
        if found is not None and found.after == live:
            return []
        made = self._store.create_alert(secrets.token_hex(8), target, baseline, live, changes_between(baseline, live))
        if made is None:
            return []
        alert, superseded = made
        self._audit.append(
            "changed_outside", OUTSIDE, target, changes=alert.changes, note="Changed outside recbot (drift watch)."
        )
        log.warning("%s was changed outside recbot (alert %s)", target.describe(), alert.id)
        moves = [AlertMove("opened", alert)]
        return moves + ([AlertMove("ended", superseded)] if superseded else [])

    def _resolve(self, target: Target) -> list[AlertMove]:
        """The live configuration is what recbot last saw again: an open alert is over."""
        found = self._store.open_alert_for(target)
        note = "Resolved: the live configuration matches what recbot last saw or applied again."
        if found is None or not self._store.end_alert(found.id, "resolved", note=note):
            return []
        self._audit.append("drift_resolved", "recbot", target, changes=found.changes, note=note)
        ended = self._store.alert(found.id)
        return [AlertMove("ended", ended)] if ended else []


def _addressable(app_id: str, names: Iterable[str]) -> list[Target]:
    """Every (entry point, API region) of the list that recbot can address."""
    targets = []
    for name in names:
        for region in API_REGIONS:
            try:
                targets.append(Target(app_id=app_id, entry_point=name, region=region))
            except ValidationError:
                break  # a name that is not one path segment: not addressable in any region
    return targets
