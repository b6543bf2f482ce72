"""The rows the store hands out and the exceptions it raises: plain values, no SQL,
so services and listeners can use them without reaching into the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from bot.job_lifecycle import OPEN_JOB_STATES
from bot.lifecycle import OPEN_STATES
from bot.models import FieldChange, Target
from bot.observation import Observation

REQUEST_KINDS = ("config", "switch")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CardRef:
    channel: str
    ts: str


@dataclass(frozen=True)
class ProbeNote:
    """The storage probe's verdict (ok, refused, unreachable) and its summary, as stored."""

    verdict: str
    summary: str


@dataclass(frozen=True)
class RequestRow:
    """A change request as stored; `sealed_patch` is ciphertext, or None once ended.
    `version` grows with every change of what its card shows; `problem` says why
    a row's stored fields could not be read (it can then only be failed)."""

    id: str
    target: Target
    state: str
    requester: str
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    base_digest: str
    sealed_patch: bytes | None
    changes: list[FieldChange]
    cards: list[CardRef]
    approvers: list[str]
    decided_by: str | None
    reason: str | None
    result: str | None
    version: int = 0
    problem: str | None = None
    probe: ProbeNote | None = None
    kind: str = "config"
    # A switch's {"enabled": bool}; a configuration's patch is sealed instead, and its spec is
    # only where its new storage is, {"storage": {"vendor": int, "region": int}}, if it sets one.
    spec: dict[str, Any] | None = None
    # Only on the row handed to whoever opened or ended the request: their claim on announcing
    # it (posting its cards; announcing its end).
    announce_token: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def storage_at(self) -> tuple[int, int] | None:
        """The vendor and region of the storage a configuration request sets (None: it sets none)."""
        storage = (self.spec or {}).get("storage") if self.kind == "config" else None
        if not isinstance(storage, dict):
            return None
        vendor, region = storage.get("vendor"), storage.get("region")
        return (vendor, region) if type(vendor) is int and type(region) is int else None


class Vote(Enum):
    """What one approval did."""

    CLOSED = "the request is no longer pending, or has expired"
    REPEAT = "this approver had already approved"
    COUNTED = "counted; more approvals are needed"
    COMPLETED = "counted, and it was the last one needed: the request is now approved"


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    event: str
    actor: str
    target: Target
    request_id: str | None
    detail: dict[str, Any]
    job_id: str | None = None  # a fleet-wide job's target (revision 0012)


@dataclass(frozen=True)
class AlertRow:
    """A change seen outside recbot: what recbot last saw (`before`), what is
    live (`after`), the safe diff, and where its cards are."""

    id: str
    target: Target
    state: str
    detected_at: datetime
    updated_at: datetime
    before: Observation
    after: Observation
    changes: list[FieldChange]
    cards: list[CardRef]
    decided_by: str | None
    note: str | None
    version: int

    @property
    def is_open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class SwitchRow:
    """What recbot knows of an entry point's custom recording switch: the value it
    last sent (`wanted`), by the switch itself or by a configuration (`cause`
    "switch" or "config": setting one switches recording on), and whether Agora's
    answer showed it took effect (`status` "set"), or that is unknown ("sending",
    "unanswered", "interrupted")."""

    app_id: str
    entry_point: str
    wanted: bool
    cause: str
    status: str
    actor: str
    at: datetime
    request_id: str | None = None

    @property
    def enabled(self) -> bool | None:
        """On or off as recbot set it; None: unknown."""
        return self.wanted if self.status == "set" else None


@dataclass(frozen=True)
class StreamTaskRow:
    """A single stream recbot asked Agora to record, and has not stopped; `answered` False when
    Agora's answer was lost, so that it may or may not record."""

    target: Target
    stream: str
    started_by: str
    started_at: datetime
    answered: bool = True


@dataclass(frozen=True)
class PlannedTarget:
    """One target as the plan read it: `seen` is what the plan saw, with no secret (a digest,
    fingerprints), to tell at apply time whether it changed since; `unchanged`: already as asked."""

    target: Target
    seen: dict[str, Any]
    unchanged: bool = False


@dataclass(frozen=True)
class JobRow:
    """A fleet-wide job as stored; `sealed_secrets` is ciphertext, or None once ended. `version`
    grows with every move; `problem` says why its stored change could not be read."""

    id: str
    requester: str
    state: str
    change: dict[str, Any]
    sealed_secrets: bytes | None
    target_count: int
    unreadable_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    reason: str | None
    version: int
    problem: str | None = None
    # Seen in Slack (revision 0012): its approval cards and approvers (in order), who decided
    # last, the filter and the plan's masked summary lines, when it started, its progress
    # message and when that was last edited, and the version whose end was announced.
    cards: list[CardRef] = field(default_factory=list)
    approvers: list[str] = field(default_factory=list)
    decided_by: str | None = None
    filter: dict[str, Any] | None = None
    summary: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    progress_ref: CardRef | None = None
    progress_at: datetime | None = None
    announced_version: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_JOB_STATES


@dataclass(frozen=True)
class JobTarget:
    """One target row of a job: what the plan saw, its state, and who holds it while in flight."""

    id: int
    job_id: str
    target: Target
    seen: dict[str, Any]
    state: str
    attempts: int
    claimed_by: str | None
    claimed_at: datetime | None
    detail: str | None
    updated_at: datetime


class SwitchBusy(Exception):
    """Another change of the same entry point's switch is being sent; try again shortly."""


class TargetBusy(Exception):
    """Another request for the same target is open."""

    def __init__(self, holder: RequestRow) -> None:
        self.holder = holder
        super().__init__(f"request {holder.id} is open for {holder.target.describe()}")
