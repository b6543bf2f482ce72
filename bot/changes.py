"""Changing a configuration: what changed, the policy, and applying it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bot.agora import AgoraClient, AgoraError, AgoraUnavailable
from bot.models import FieldChange, FormatConfig, RecordingConfig, StorageConfig, Target, diff
from bot.probe import Prober
from bot.store.audit import AuditLog
from bot.store.values import ProbeNote, RequestRow, SwitchBusy
from bot.switch import SwitchBook, unrecorded

if TYPE_CHECKING:
    from bot.approvals import ApprovalService
    from bot.drift import DriftWatch

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
    if proposal.storage is not None and _storage_wire(live.storage_config) != _storage_wire(proposal.storage):
        patch.storage_config = proposal.storage
    return patch


def expected_after(live: RecordingConfig, patch: RecordingConfig) -> RecordingConfig:
    """The config Agora should hold once `patch` is applied to `live`."""
    return RecordingConfig(
        mp4_config=patch.mp4_config or live.mp4_config,
        hls_config=patch.hls_config or live.hls_config,
        storage_config=patch.storage_config or live.storage_config,
    )


def is_empty(patch: RecordingConfig) -> bool:
    return patch.mp4_config is None and patch.hls_config is None and patch.storage_config is None


def carries_secrets(patch: RecordingConfig) -> bool:
    return patch.storage_config is not None


def matches(expected: RecordingConfig, actual: RecordingConfig) -> bool:
    """Whether a read-back shows the change took effect."""
    return (
        expected.mp4 == actual.mp4
        and expected.hls == actual.hls
        and _storage_wire(expected.storage_config) == _storage_wire(actual.storage_config)
    )


def _storage_wire(storage: StorageConfig | None) -> object:
    return None if storage is None else RecordingConfig(storage_config=storage).wire_json()


OutcomeKind = Literal["applied", "no_change", "stale", "needs_approval", "refused", "failed", "storage_refused"]


@dataclass(frozen=True)
class Outcome:
    """How a submitted change ended, with a safe diff and words for the requester;
    `field` names the form field a storage refusal concerns."""

    kind: OutcomeKind
    message: str
    changes: list[FieldChange] = field(default_factory=list)
    request: RequestRow | None = None
    field: str | None = None


STALE_MESSAGE = (
    "The configuration changed since you opened the form, so nothing was applied. "
    "Reopen it with `/recording set` to start from the current values."
)


def apply_change(
    agora: AgoraClient,
    target: Target,
    live: RecordingConfig,
    patch: RecordingConfig,
    watch: DriftWatch,
    switches: SwitchBook | None = None,
    actor: str = "recbot",
) -> Outcome:
    """PATCH once (the client retries), read back, and report before -> after.
    The drift watch is told first what the change will leave, then what it left;
    on every other way out (a failure, an exception) it stops expecting it.
    `switches` records that setting a configuration switches recording on."""
    after = expected_after(live, patch)
    watch.expect(target, after)
    try:
        return _patch_and_read_back(agora, target, live, patch, after, watch, switches, actor)
    finally:
        # A no-op once the read-back was recorded; otherwise a lasting expectation would hide
        # an outside change to exactly `after` and keep a re-keyed baseline from being stored.
        watch.unexpect(target, after)


def _patch_and_read_back(
    agora: AgoraClient,
    target: Target,
    live: RecordingConfig,
    patch: RecordingConfig,
    after: RecordingConfig,
    watch: DriftWatch,
    switches: SwitchBook | None,
    actor: str,
) -> Outcome:
    changes = diff(live, after)
    acknowledged = "Agora accepted the change"
    try:
        with switches.configuring(target, actor) if switches else unrecorded() as switch:
            try:
                agora.set_config(target, patch)
            except AgoraUnavailable as exc:
                # A PATCH that timed out may still have landed: the read-back below decides.
                log.warning("PATCH to %s not acknowledged (%s); reading back", target.describe(), exc.upstream_message)
                acknowledged = "Agora did not answer the change, so it may or may not have landed"
            except AgoraError as exc:
                switch.refused()
                return Outcome("failed", f"The change was not applied. {exc.user_message()}", changes)
            else:
                switch.landed()
            try:
                confirmed = agora.get_config(target)
            except AgoraError as exc:
                return Outcome(
                    "failed",
                    f"{acknowledged}, and reading it back failed: {exc.user_message()} Check it with `/recording get`.",
                    changes,
                )
            if not matches(after, confirmed):
                return Outcome(
                    "failed",
                    "The change is not in effect: the configuration read back from Agora differs from it. "
                    "Check it with `/recording get` and try again.",
                    changes,
                )
            switch.landed()
    except SwitchBusy:
        return Outcome(
            "failed",
            "Another change of this entry point's recording switch is being sent right now, so nothing was sent. "
            "Try again in a minute.",
            changes,
        )
    watch.applied(target, confirmed)
    message = "Change applied and confirmed by reading it back."
    if switch.previous is not None and switch.previous.enabled is not True:
        was = "paused" if switch.previous.enabled is False else "unknown"
        message += (
            " Setting a configuration switches custom recording on for every stream of the entry point, "
            f"so it is on now (recbot knew it as {was})."
        )
    return Outcome("applied", message, changes)


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
    ) -> None:
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
        outcome = apply_change(self._agora, target, live, patch, self._watch, self._switches, requester)
        event = "direct_change" if outcome.kind == "applied" else "failed"
        self._audit.append(event, requester, target, changes=outcome.changes, note=outcome.message)
        log.info("direct change to %s by %s: %s", target.describe(), requester, outcome.kind)
        return outcome
