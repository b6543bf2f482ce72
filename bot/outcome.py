"""How a change ended, for whoever asked for it: the words for the requester and a safe
diff. Shared by every service that changes something in Agora, and by the listeners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.models import FieldChange
from bot.store.values import RequestRow

OutcomeKind = Literal["applied", "no_change", "stale", "needs_approval", "refused", "failed", "storage_refused"]


@dataclass(frozen=True)
class Outcome:
    """How a submitted change ended, with a safe diff and words for the requester;
    `field` names the form field a storage refusal concerns. `mentions` are the people
    recbot's own words in `message` name (`<@U…>`): nothing else in it may mention anyone,
    as it may quote Agora."""

    kind: OutcomeKind
    message: str
    changes: list[FieldChange] = field(default_factory=list)
    request: RequestRow | None = None
    field: str | None = None
    mentions: tuple[str, ...] = ()
