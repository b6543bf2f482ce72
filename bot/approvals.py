"""Change requests: the two-person rule, sealed secrets, exactly-once apply.

States: pending -> approved -> applying -> applied | failed | stale;
pending -> rejected | expired | cancelled. Every move is a compare-and-set in
the store, so double clicks, Slack retries and several bot processes cannot
apply a change twice.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.agora import AgoraClient, AgoraError
from bot.changes import Outcome, apply_change, expected_after, matches
from bot.models import RecordingConfig, Target, diff
from bot.seal import Sealer
from bot.store import CardRef, RequestRow, Store, TargetBusy, utcnow

log = logging.getLogger(__name__)


EXPIRED = "Expired before it was approved."


class Refused(Exception):
    """An action is not allowed; the message is for the person who tried, alone."""


class ApprovalService:
    def __init__(
        self,
        *,
        store: Store,
        sealer: Sealer,
        agora: AgoraClient,
        digest_key: bytes,
        ttl_seconds: int,
        required_approvals: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._agora = agora
        self._digest_key = digest_key
        self._ttl = timedelta(seconds=ttl_seconds)
        self.required_approvals = required_approvals
        self._clock = clock

    def open(self, target: Target, live: RecordingConfig, patch: RecordingConfig, requester: str) -> Outcome:
        """Open a pending request; its keys are sealed, its diff is safe to show."""
        safe_diff = diff(live, expected_after(live, patch))
        try:
            row = self._store.create_request(
                request_id=secrets.token_hex(8),
                target=target,
                requester=requester,
                expires_at=self._clock() + self._ttl,
                base_digest=live.digest(self._digest_key),
                sealed_patch=self._sealer.seal(json.dumps(patch.wire_json())),
                changes=safe_diff,
            )
        except TargetBusy as busy:
            holder = busy.holder
            return Outcome(
                "refused",
                f"<@{holder.requester}> already has an open request for this entry point "
                f"(since {holder.created_at:%Y-%m-%d %H:%M} UTC). It must be approved, rejected, "
                "cancelled or expire first. Nothing was sent.",
                safe_diff,
            )
        self._store.audit("requested", requester, target, request_id=row.id, changes=safe_diff)
        log.info("change request %s opened for %s by %s", row.id, target.describe(), requester)
        return Outcome(
            "needs_approval",
            "This change needs a second person's approval. It has been sent to the approvers; "
            "you will be told the outcome. Nothing was sent to Agora yet.",
            safe_diff,
            row,
        )

    def attach_cards(self, request_id: str, cards: list[CardRef]) -> None:
        """Remember where the approval cards are, to update them in place."""
        self._store.set_cards(request_id, cards)

    def open_requests(self) -> list[RequestRow]:
        return self._store.open_requests()

    def get(self, request_id: str) -> RequestRow:
        row = self._store.get(request_id)
        if row is None:
            raise Refused("That change request does not exist.")
        return row

    def pending_request(self, request_id: str) -> RequestRow:
        """The request if it can still be decided; otherwise Refused, saying why."""
        row = self.get(request_id)
        if row.state != "pending":
            raise Refused(f"That request is already {row.state}.")
        if self._clock() >= row.expires_at:
            # The sweep marks it expired and tells everyone; refusing is enough here.
            raise Refused("That request has expired and can no longer be decided.")
        return row

    def approve(self, request_id: str, user: str, *, is_approver: bool) -> RequestRow:
        """Count one approval; the last one needed applies the change, once."""
        row = self.pending_request(request_id)
        if user == row.requester:
            raise Refused("You cannot approve your own request; another approver must.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can approve changes.")
        added, count = self._store.add_approval(row.id, user)
        if added:
            self._store.audit("approved", user, row.target, request_id=row.id, changes=row.changes)
        if count < self.required_approvals:
            return self.get(row.id)
        if not self._store.transition(row.id, ("pending",), "approved", decided_by=user):
            return self.get(row.id)  # another click or process got there first
        return self.apply(row.id)

    def apply(self, request_id: str) -> RequestRow:
        """Claim an approved request and apply it: stale check, PATCH, read back."""
        if not self._store.transition(request_id, ("approved",), "applying"):
            return self.get(request_id)
        row = self.get(request_id)
        assert row.sealed_patch is not None
        patch = RecordingConfig.model_validate(json.loads(self._sealer.unseal(row.sealed_patch)))
        try:
            live = self._agora.get_config(row.target)
        except AgoraError as exc:
            return self._end(row, "failed", ("applying",), "recbot", f"Not applied: {exc.user_message()}")
        if live.digest(self._digest_key) != row.base_digest:
            return self._end(
                row,
                "stale",
                ("applying",),
                "recbot",
                "The live configuration changed after the request was made, so nothing was sent. "
                "Make a new request from the current configuration.",
            )
        outcome = apply_change(self._agora, row.target, live, patch)
        state = "applied" if outcome.kind == "applied" else "failed"
        return self._end(row, state, ("applying",), row.decided_by or "recbot", outcome.message)

    def reject(self, request_id: str, user: str, reason: str, *, is_approver: bool) -> RequestRow:
        row = self.pending_request(request_id)
        if user == row.requester:
            raise Refused("To withdraw your own request, use Cancel.")
        if not is_approver:
            raise Refused("Only the approvers named in RECBOT_APPROVERS can reject changes.")
        return self._end(row, "rejected", ("pending",), user, reason, decided_by=user, reason=reason)

    def cancel(self, request_id: str, user: str) -> RequestRow:
        row = self.pending_request(request_id)
        if user != row.requester:
            raise Refused("Only the requester can cancel a request.")
        return self._end(row, "cancelled", ("pending",), user, "Cancelled by the requester.", decided_by=user)

    def expire_due(self) -> list[RequestRow]:
        """The periodic sweep: end every pending request past its expiry."""
        ended = []
        for row in self._store.due_for_expiry(self._clock()):
            if self._try_end(row, "expired", ("pending",), "recbot", EXPIRED):
                ended.append(self.get(row.id))  # only the process that expired it tells people
        return ended

    def recover(self, untouched_for: timedelta) -> list[RequestRow]:
        """Finish approved requests and reconcile ones left applying against the
        live config, never sending them again. Only rows untouched for
        `untouched_for` count as orphaned: with a shared database another
        process may be applying them right now."""
        before = self._clock() - untouched_for
        ended = [self.apply(row.id) for row in self._store.in_state("approved", updated_before=before)]
        for row in self._store.in_state("applying", updated_before=before):
            ended.append(self._reconcile(row))
        return [row for row in ended if not row.is_open]

    def _reconcile(self, row: RequestRow) -> RequestRow:
        assert row.sealed_patch is not None
        patch = RecordingConfig.model_validate(json.loads(self._sealer.unseal(row.sealed_patch)))
        try:
            live = self._agora.get_config(row.target)
        except AgoraError as exc:
            message = f"Interrupted while applying; the live state could not be read ({exc.user_message()})."
            return self._end(row, "failed", ("applying",), "recbot", message + " Check it with `/recording get`.")
        if _contains(live, patch):
            return self._end(row, "applied", ("applying",), "recbot", "Applied (confirmed after a restart).")
        return self._end(
            row, "failed", ("applying",), "recbot", "Interrupted while applying and not in effect; not sent again."
        )

    def _end(
        self, row: RequestRow, state: str, from_states: tuple[str, ...], actor: str, note: str, **fields: object
    ) -> RequestRow:
        """End a request (secrets purged by the store) and record it, once; the row as it now is."""
        self._try_end(row, state, from_states, actor, note, **fields)
        return self.get(row.id)

    def _try_end(
        self, row: RequestRow, state: str, from_states: tuple[str, ...], actor: str, note: str, **fields: object
    ) -> bool:
        """Whether this call ended the request (another click or process may have first)."""
        if not self._store.transition(row.id, from_states, state, result=note, **fields):
            return False
        self._store.audit(state, actor, row.target, request_id=row.id, changes=row.changes, note=note)
        log.info("change request %s %s", row.id, state)
        return True


def _contains(live: RecordingConfig, patch: RecordingConfig) -> bool:
    """Whether every part `patch` sets already holds in `live`."""
    return matches(expected_after(live, patch), live)
