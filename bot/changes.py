"""Changing a configuration: what the form asks for, the policy (direct, or a request
for approval), and for a direct change, sending it (bot/applying.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.agora import AgoraClient, AgoraError, sending
from bot.applying import apply_change, is_empty, storage_wire
from bot.approvals import ApprovalService
from bot.drift import DriftWatch
from bot.metrics import Metrics
from bot.models import FormatConfig, RecordingConfig, StorageConfig, Target
from bot.outcome import Outcome
from bot.probe import Prober
from bot.store.audit import AuditLog
from bot.store.values import ProbeNote
from bot.switch import SwitchBook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proposal:
    """What the form asks for; `storage` None leaves storage as it is."""

    mp4: bool
    hls: bool
    storage: StorageConfig | None = None


def build_patch(live: RecordingConfig, proposal: Proposal) -> RecordingConfig:
    """Only what differs from `live`: a formats-only change has no storageConfig."""
    patch = RecordingConfig()
    if proposal.mp4 != live.mp4:
        patch.mp4_config = FormatConfig(enabled=proposal.mp4)
    if proposal.hls != live.hls:
        patch.hls_config = FormatConfig(enabled=proposal.hls)
    if proposal.storage is not None and storage_wire(live.storage_config) != storage_wire(proposal.storage):
        patch.storage_config = proposal.storage
    return patch


def carries_secrets(patch: RecordingConfig) -> bool:
    return patch.storage_config is not None


STALE_MESSAGE = (
    "The configuration changed since you opened the form, so nothing was applied. "
    "Reopen it with `/recording set` to start from the current values."
)


class ChangeService:
    """Applies secret-free changes directly; sends the rest to approval."""

    def __init__(
        self,
        agora: AgoraClient,
        audit: AuditLog,
        approvals: ApprovalService,
        digest_key: bytes,
        prober: Prober,
        watch: DriftWatch,
        approval_for: str = "secrets",
        switches: SwitchBook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._watch = watch
        self._switches = switches
        self._agora = agora
        self._audit = audit
        self._approvals = approvals
        self._digest_key = digest_key
        self._prober = prober
        self._approval_for = approval_for

    def digest(self, config: RecordingConfig) -> str:
        return config.digest(self._digest_key)

    def needs_approval(self, patch: RecordingConfig) -> bool:
        return self._approval_for == "all" or carries_secrets(patch)

    def submit(self, target: Target, form_digest: str, proposal: Proposal, requester: str) -> Outcome:
        """Check the form is not stale, then apply directly or open a request."""
        try:
            live = self._agora.get_config(target)
        except AgoraError as exc:
            return Outcome("failed", exc.user_message())
        if self.digest(live) != form_digest:
            return Outcome("stale", STALE_MESSAGE)
        patch = build_patch(live, proposal)
        if is_empty(patch):
            return Outcome("no_change", "Nothing differs from the current configuration; nothing was sent.")
        probe = None
        if patch.storage_config is not None and self._prober.enabled:
            result = self._prober.probe(patch.storage_config)
            if result.verdict == "refused" and self._prober.blocks:
                return Outcome(
                    "storage_refused",
                    f"The storage check failed, so nothing was stored or sent: {result.summary()}.",
                    field=result.field,
                )
            probe = ProbeNote(result.verdict, result.summary())
        if self.needs_approval(patch):
            return self._approvals.open(target, live, patch, requester, probe)
        outcome, sent = sending(
            lambda: apply_change(self._agora, target, live, patch, self._watch, self._switches, requester)
        )
        # A direct change has no request to go stale: it applied, or failed (a form found stale above,
        # or a PATCH the rate limiter refused, sent nothing and is not counted; an approved request's
        # staleness is, as its apply's end).
        if sent:
            self._metrics.applies.labels(outcome="applied" if outcome.kind == "applied" else "failed").inc()
        event = "direct_change" if outcome.kind == "applied" else "failed"
        self._audit.append(event, requester, target, changes=outcome.changes, note=outcome.message)
        log.info("direct change to %s by %s: %s", target.describe(), requester, outcome.kind)
        return outcome
