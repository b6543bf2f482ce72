"""How a change ended, for whoever asked for it: the words for the requester and a safe
diff. Shared by every service that changes something in Agora, and by the listeners."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from bot.models import FieldChange
from bot.store.values import RequestRow

# A new request's words say where it went; when no approval card could be posted, the second.
SENT_TO_APPROVERS = "It has been sent to the approvers"
NO_CARD_YET = (
    "It is open, but no approval card could be posted yet, so no approver has seen it (recbot tries again "
    "every sweep, and tells you once it is posted)"
)

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

    def without_cards(self) -> Outcome:
        """This new request's outcome when none of its approval cards could be posted: its words
        no longer say it was sent to the approvers."""
        return replace(self, message=self.message.replace(SENT_TO_APPROVERS, NO_CARD_YET))
