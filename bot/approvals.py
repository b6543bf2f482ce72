"""Change requests: the two-person rule, sealed secrets, exactly-once apply.

Every move is an event of the life cycle table (bot/lifecycle.py), made as a
compare-and-set in the store, so double clicks, Slack retries and several bot
processes cannot apply a change twice.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.agora import AgoraClient, AgoraError
from bot.applying import apply_change, apply_switch, expected_after, matches
from bot.drift import DriftWatch
from bot.lifecycle import START, next_state
from bot.metrics import Metrics
from bot.models import FieldChange, RecordingConfig, Target, diff
from bot.outcome import SENT_TO_APPROVERS, Outcome
from bot.probe import Prober
from bot.redaction import hide
from bot.seal import Sealer, SealError
from bot.store.audit import AuditLog
from bot.store.requests import RequestStore
from bot.store.values import CardRef, ProbeNote, RequestRow, SwitchBusy, TargetBusy, Vote, utcnow
from bot.switch import SwitchBook, consequence, verb

log = logging.getLogger(__name__)


EXPIRED = "Expired before it was approved."
# The table has no event for a request's birth: its creation is counted as this event, into START.
CREATE = "create"
DECISIONS = ("approve", "reject")  # the moves whose wait since the request's creation is observed


class Refused(Exception):
    """An action is not allowed, or another click or process made it first;
    the message is for the person who tried, alone. `mentions`: the people its words
    name (`<@U…>`), shown as mentions where everything else in it is escaped."""

    def __init__(self, message: str, mentions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.mentions = mentions


class Unreadable(Exception):
    """A request's stored change cannot be read; it can only be ended as failed."""


def already(row: RequestRow) -> str:
    """Why a request can no longer be decided, for whoever clicked too late."""
    by = f" by <@{row.decided_by}>" if row.decided_by else ""
    if row.state in ("approved", "applying"):
        return f"Request `{row.id}` was already approved{by} and is being applied."
    if row.state == "applied":
        return f"Request `{row.id}` was already applied (approved{by})."
    if row.state == "rejected":
        return f"Request `{row.id}` was already rejected{by}."
    if row.state == "cancelled":
        return f"Request `{row.id}` was already cancelled by the requester."
    if row.state == "expired":
        return f"Request `{row.id}` has already expired."
    return f"Request `{row.id}` has already ended ({row.state})."


class ApprovalService:
    """Every move returns the request as this call left it, or None (or
    Refused, for a person's click) when another click or process made it first:
    only the caller that made a move tells people about it."""

    def __init__(
        self,
        *,
        requests: RequestStore,
        audit: AuditLog,
        sealer: Sealer,
        agora: AgoraClient,
        digest_key: bytes,
        ttl_seconds: int,
        required_approvals: int,
        prober: Prober,
        watch: DriftWatch,
        clock: Callable[[], datetime] = utcnow,
        switches: SwitchBook,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._watch = watch
        self._switches = switches
        self._requests = requests
        self._audit = audit
        self._sealer = sealer
        self._agora = agora
        self._digest_key = digest_key
        self._ttl = timedelta(seconds=ttl_seconds)
        self.required_approvals = required_approvals
        self._prober = prober
        self._clock = clock

    def open(
        self, target: Target, live: RecordingConfig, patch: RecordingConfig, requester: str, probe: ProbeNote | None
    ) -> Outcome:
        """Open a pending request; its keys are sealed, its diff and probe note are safe to show.
        The request handed back carries the claim on posting its cards (`announce_token`)."""
        safe_diff = diff(live, expected_after(live, patch))
        storage = patch.storage_config
        claim = secrets.token_hex(8)
        try:
            row = self._requests.create(
                request_id=secrets.token_hex(8),
                target=target,
                requester=requester,
                expires_at=self._clock() + self._ttl,
                base_digest=live.digest(self._digest_key),
                sealed_patch=self._sealer.seal(json.dumps(patch.wire_json())),
                changes=safe_diff,
                probe=probe,
                spec={"storage": {"vendor": storage.vendor, "region": storage.region}} if storage else None,
                card_claim=claim,
            )
        except TargetBusy as busy:
            return Outcome("refused", _busy(busy.holder), safe_diff, mentions=(busy.holder.requester,))
        self._created()
        self._audit.append("requested", requester, target, request_id=row.id, changes=safe_diff)
        log.info("change request %s opened for %s by %s", row.id, target.describe(), requester)
        return Outcome(
            "needs_approval",
            f"This change needs a second person's approval. {SENT_TO_APPROVERS}; "
            "you will be told the outcome. Nothing was sent to Agora yet.",
            safe_diff,
            replace(row, announce_token=claim),
        )

    def open_switch(
        self, target: Target, enabled: bool, requester: str, changes: list[FieldChange], app_named: str | None = None
    ) -> Outcome:
        """Open a pending request to pause or resume every stream of an entry point
        (`target` is the entry point as a whole); it carries no secret. As `open`, the request
        handed back carries the claim on posting its cards. The answer names `app_named`, if given."""
        claim = secrets.token_hex(8)
        try:
            row = self._requests.create(
                request_id=secrets.token_hex(8),
                target=target,
                requester=requester,
                expires_at=self._clock() + self._ttl,
                base_digest="",  # Agora has no read of the switch: nothing to go stale against
                sealed_patch=None,
                changes=changes,
                kind="switch",
                spec={"enabled": enabled},
                card_claim=claim,
            )
        except TargetBusy as busy:
            return Outcome("refused", _busy(busy.holder), changes, mentions=(busy.holder.requester,))
        self._created()
        self._audit.append("requested", requester, target, request_id=row.id, changes=changes)
        log.info("switch request %s opened for %s by %s", row.id, target.describe(), requester)
        return Outcome(
            "needs_approval",
            f"This {verb(enabled)} needs a second person's approval (RECBOT_APPROVAL_FOR=all). {SENT_TO_APPROVERS}; "
            f"once approved, {consequence(enabled, target.entry_point, app_named)} "
            "Nothing was sent to Agora yet.",
            changes,
            replace(row, announce_token=claim),
        )

    def attach_cards(self, request_id: str, cards: list[CardRef]) -> None:
        """Remember where the approval cards are, to update them in place."""
        self._requests.set_cards(request_id, cards)

    def open_requests(self) -> list[RequestRow]:
        return self._requests.open_requests()

    def get(self, request_id: str) -> RequestRow:
        row = self._requests.get(request_id)
        if row is None:
            raise Refused("That change request does not exist.")
        return row

    def pending_request(self, request_id: str) -> RequestRow:
        """The request if it can still be decided; otherwise Refused, saying why."""
        row = self.get(request_id)
        if row.state != "pending":
            raise Refused(already(row))
        if self._clock() >= row.expires_at:
            # The sweep marks it expired and tells everyone; refusing is enough here.
            raise Refused("That request has expired and can no longer be decided.")
        return row

    def approve(self, request_id: str, user: str, *, is_approver: bool) -> RequestRow:
        """Count one approval; the last one needed applies the change, once.
        The request as this click left it; Refused if it changed nothing."""
        row = self.pending_request(request_id)
        if user == row.requester:
            raise Refused("You cannot approve your own request; another approver must.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can approve changes.")
        vote = self._requests.add_approval(row.id, user, now=self._clock(), required=self.required_approvals)
        if vote is Vote.CLOSED:
            now = self.get(row.id)
            raise Refused(already(now) if now.state != "pending" else "That request has expired.")
        if vote is Vote.REPEAT:
            raise Refused(f"You have already approved request `{row.id}`; it needs another approver.")
        if vote is Vote.COMPLETED:
            self._moved("pending", "approve", row.created_at)
        self._audit.append("approved", user, row.target, request_id=row.id, changes=row.changes)
        if vote is Vote.COUNTED:
            return self.get(row.id)
        return self.apply(row.id) or self.get(row.id)

    def apply(self, request_id: str) -> RequestRow | None:
        """Claim an approved request and apply it: stale check, PATCH, read back.
        None if another process claimed it first."""
        if not self._requests.transition(request_id, "approved", "claim"):
            return None
        self._moved("approved", "claim")
        row = self.get(request_id)
        if row.kind == "switch":
            return self._apply_switch(row)
        try:
            patch = self._patch(row)
        except Unreadable as exc:
            return self._end(row, "fail", "recbot", f"Not applied: {exc} Nothing was sent to Agora.")
        if patch.storage_config is not None and self._prober.enabled:
            # Keys can be revoked or a bucket deleted while a request waits: check again, last thing before the PATCH.
            probe = self._prober.probe(patch.storage_config)
            if probe.verdict == "refused" and self._prober.blocks:
                return self._end(
                    row,
                    "fail",
                    "recbot",
                    f"Not applied: the storage check just before applying failed ({probe.summary()}). "
                    "Nothing was sent to Agora.",
                )
        # An approved change runs after the ack, and nobody can ask for it again: every call
        # waits its turn at the rate limiter, where a person's own call would be refused as busy.
        try:
            live = self._agora.get_config(row.target, wait_limit=None)
        except AgoraError as exc:
            return self._end(row, "fail", "recbot", f"Not applied: {exc.user_message()}")
        if live.digest(self._digest_key) != row.base_digest:
            return self._end(
                row,
                "find_stale",
                "recbot",
                "The live configuration changed after the request was made, so nothing was sent. "
                "Make a new request from the current configuration.",
            )
        outcome = apply_change(
            self._agora, row.target, live, patch, self._watch, self._switches, row.requester, wait_limit=None
        )
        event = "confirm" if outcome.kind == "applied" else "fail"
        return self._end(row, event, row.decided_by or "recbot", outcome.message)

    def _apply_switch(self, row: RequestRow) -> RequestRow | None:
        """Send a claimed pause or resume once; there is no live state to go stale against."""
        enabled = (row.spec or {}).get("enabled")
        if row.problem or not isinstance(enabled, bool):
            why = row.problem or "its switch is not one this recbot can read"
            return self._end(row, "fail", "recbot", f"Not applied: {why}. Nothing was sent to Agora.")
        outcome = apply_switch(self._agora, self._switches, row.target, enabled, row.requester, row.id, wait_limit=None)
        event = "confirm" if outcome.kind == "applied" else "fail"
        return self._end(row, event, row.decided_by or "recbot", outcome.message)

    def rejectable(self, request_id: str, user: str, *, is_approver: bool) -> RequestRow:
        """The pending request `user` may reject; Refused, saying why, if they may not (asked
        before the reason is, so that nobody types one for nothing)."""
        row = self.pending_request(request_id)
        if user == row.requester:
            raise Refused("To withdraw your own request, use Cancel.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can reject changes.")
        return row

    def reject(self, request_id: str, user: str, reason: str, *, is_approver: bool) -> RequestRow:
        row = self.rejectable(request_id, user, is_approver=is_approver)
        reason = hide(reason, self._keys_of(row))  # "wrong key: <the key>" would show it on the card and DM
        return self._decide(row, "reject", user, reason, reason=reason)

    def _keys_of(self, row: RequestRow) -> list[str]:
        """The storage keys a request carries (none when it carries none, or cannot be opened)."""
        try:
            storage = self._patch(row).storage_config if row.sealed_patch is not None else None
        except Unreadable:
            return []
        keys = (storage.access_key, storage.secret_key) if storage is not None else ()
        return [key.get_secret_value() for key in keys if key is not None]

    def cancel(self, request_id: str, user: str) -> RequestRow:
        row = self.pending_request(request_id)
        if user != row.requester:
            raise Refused("Only the requester can cancel a request.")
        return self._decide(row, "cancel", user, "Cancelled by the requester.")

    def _decide(self, row: RequestRow, event: str, user: str, note: str, **fields: object) -> RequestRow:
        """End a pending, unexpired request by a person's decision; Refused if it was too late."""
        ended = self._end(row, event, user, note, unexpired_at=self._clock(), decided_by=user, **fields)
        if ended is None:
            now = self.get(row.id)
            raise Refused(already(now) if now.state != "pending" else "That request has expired.")
        return ended

    def expire_due(self) -> list[RequestRow]:
        """The periodic sweep: end every pending request past its expiry; the
        ones this call ended. A row that fails is logged and skipped."""
        ended = []
        for row in self._requests.due_for_expiry(self._clock()):
            with _each_row(row):
                if expired := self._end(row, "expire", "recbot", EXPIRED):
                    ended.append(expired)
        return ended

    def recover(self, untouched_for: timedelta) -> list[RequestRow]:
        """Finish approved requests and reconcile ones left applying against the
        live config, never sending them again; the ones this call ended. Only
        rows untouched for `untouched_for` count as orphaned: with a shared
        database another process may be applying them right now."""
        before = self._clock() - untouched_for
        ended = []
        for row in self._requests.in_state("approved", "applying", updated_before=before):
            with _each_row(row):
                done = self.apply(row.id) if row.state == "approved" else self._reconcile(row)
                if done is not None and not done.is_open:
                    ended.append(done)
        return ended

    def _reconcile(self, row: RequestRow) -> RequestRow | None:
        if row.kind == "switch":
            return self._reconcile_switch(row)
        try:
            patch = self._patch(row)
        except Unreadable as exc:
            message = f"Interrupted while applying, and {exc} So whether it is in effect is unknown"
            return self._end(row, "fail", "recbot", message + ": check it with `/recording get`.")
        try:
            live = self._agora.get_config(row.target, wait_limit=None)  # the sweep's: it waits its turn
        except AgoraError as exc:
            message = f"Interrupted while applying; the live state could not be read ({exc.user_message()})."
            return self._end(row, "fail", "recbot", message + " Check it with `/recording get`.")
        if _contains(live, patch):
            self._watch.applied(row.target, live)
            self._configured(row)
            return self._end(row, "confirm", "recbot", "Applied (confirmed after a restart).")
        return self._end(row, "fail", "recbot", "Interrupted while applying and not in effect; not sent again.")

    def _configured(self, row: RequestRow) -> None:
        """A configuration found in effect after a restart switched recording on."""
        try:
            with self._switches.configuring(row.target, row.requester) as change:
                change.landed()
        except SwitchBusy:
            log.warning("could not record that request %s switched recording on; the switch is busy", row.id)

    def _reconcile_switch(self, row: RequestRow) -> RequestRow | None:
        """Agora has no read of the switch: an interrupted pause or resume is failed as unknown, never resent."""
        enabled = (row.spec or {}).get("enabled")
        if isinstance(enabled, bool):
            try:
                self._switches.interrupted(row.target.app_id, row.target.entry_point, enabled, row.requester, row.id)
            except SwitchBusy:
                log.warning("could not mark the switch of request %s unknown; it is busy", row.id)
        ask = f"Send the {verb(enabled)} again to be sure" if isinstance(enabled, bool) else "Check it in Agora Console"
        return self._end(
            row,
            "fail",
            "recbot",
            "Interrupted while applying; Agora has no read of the recording switch, so whether it took effect "
            f"is unknown (recbot shows it as unknown). Not sent again. {ask}.",
        )

    def _patch(self, row: RequestRow) -> RecordingConfig:
        """The sealed change, opened in memory only; Unreadable says why not."""
        if row.problem:
            raise Unreadable(f"the request could not be read: {row.problem}.")
        if row.sealed_patch is None:
            raise Unreadable("its sealed keys are missing.")
        try:
            opened = self._sealer.unseal(row.sealed_patch)
        except SealError:
            raise Unreadable(
                "its keys were sealed with another RECBOT_SEAL_KEY than this recbot has (was the key changed?)."
            ) from None
        try:
            return RecordingConfig.model_validate(json.loads(opened))
        except ValueError:  # ValidationError included; neither message is kept, both could quote a key
            raise Unreadable("its sealed change is not a configuration this recbot can read.") from None

    def _end(self, row: RequestRow, event: str, actor: str, note: str, **fields: Any) -> RequestRow | None:
        """End a request by `event` from the state it was read in (secrets purged by the store)
        and record it: the row as it now is, carrying the claim on announcing the end (only the
        caller that ended it gets it), or None if another click or process moved it first."""
        state = next_state(row.state, event)
        token = secrets.token_hex(8)
        if not self._requests.transition(row.id, row.state, event, result=note, announcer=token, **fields):
            return None
        self._moved(row.state, event, row.created_at)
        self._audit.append(state, actor, row.target, request_id=row.id, changes=row.changes, note=note)
        log.info("change request %s %s", row.id, state)
        return replace(self.get(row.id), announce_token=token)

    def _created(self) -> None:
        """Count a request this process created (the table's START, by CREATE)."""
        self._metrics.request_transitions.labels(event=CREATE, state=START).inc()

    def _moved(self, state: str, event: str, created_at: datetime | None = None) -> None:
        """Count a move this process made (its compare-and-set won): the transition; the end of
        an apply (a move out of applying), by how it ended; a decision's wait since creation."""
        to_state = next_state(state, event)
        self._metrics.request_transitions.labels(event=event, state=to_state).inc()
        if state == "applying":
            self._metrics.applies.labels(outcome=to_state).inc()
        if event in DECISIONS and created_at is not None:
            waited = (utcnow() - created_at).total_seconds()  # both read on the store's clock
            self._metrics.decision_seconds.labels(decision=to_state).observe(max(0.0, waited))


def _busy(holder: RequestRow) -> str:
    """Why a second request for the same target is refused: whose, of what kind, and its ID."""
    enabled = (holder.spec or {}).get("enabled") if holder.kind == "switch" else None
    kind = verb(enabled) if isinstance(enabled, bool) else "configuration change"
    where = "" if holder.target.is_every_region else f" in {holder.target.region}"
    return (
        f"<@{holder.requester}> already has an open {kind} request `{holder.id}` for this entry point{where} "
        f"(since {holder.created_at:%Y-%m-%d %H:%M} UTC). It must be approved, rejected, "
        "cancelled or expire first. Nothing was sent."
    )


@contextmanager
def _each_row(row: RequestRow) -> Iterator[None]:
    """One row of a sweep: its failure is logged, and the sweep goes on with the next."""
    try:
        yield
    except Exception:
        log.exception("the sweep could not handle request %s; going on with the next", row.id)


def _contains(live: RecordingConfig, patch: RecordingConfig) -> bool:
    """Whether every part `patch` sets already holds in `live`."""
    return matches(expected_after(live, patch), live)
