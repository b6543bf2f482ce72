"""What recbot knows of each entry point's custom recording switch.

Agora documents no read of the switch (`PATCH .../custom/auto`), so recbot can
only know what it sent and what Agora answered. Every change of it, by the
switch itself or by a configuration (setting one switches recording on), is
written ahead as unknown, sent under the entry point's lock, and then recorded
as Agora's answer showed: set, back as it was (refused), or still unknown (no
answer, or recbot stopped meanwhile). recbot never claims more than that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Literal

from bot.models import FieldChange, Target
from bot.store.switches import SwitchStore
from bot.store.values import SwitchRow, utcnow

log = logging.getLogger(__name__)

SWITCH_LABEL = "Custom recording, every stream"
Cause = Literal["switch", "config"]


class SwitchChange:
    """One change of a switch in flight; the sender says how Agora answered.
    Saying nothing leaves the switch unknown."""

    def __init__(self, previous: SwitchRow | None) -> None:
        self.previous = previous
        self.answer: Literal["landed", "refused"] | None = None

    def landed(self) -> None:
        """Agora accepted it (or a read-back showed it took effect)."""
        self.answer = "landed"

    def refused(self) -> None:
        """Agora refused it: nothing changed."""
        self.answer = "refused"


@contextmanager
def unrecorded() -> Iterator[SwitchChange]:
    """A change nobody records (a caller given no book)."""
    yield SwitchChange(None)


class SwitchBook:
    """Reads and records what recbot knows of the switches, one change per entry point at a time."""

    def __init__(self, switches: SwitchStore) -> None:
        self._switches = switches
        self._on_pause_lifted: Callable[[SwitchRow, SwitchRow], None] | None = None

    def when_pause_lifted(self, tell: Callable[[SwitchRow, SwitchRow], None]) -> None:
        """Call `tell(pause, now)` whenever a configuration recbot applied switched recording on over a
        pause recbot sent (Agora switches it on with every configuration), so that whoever paused is told."""
        self._on_pause_lifted = tell

    def known(self, app_id: str, entry_point: str) -> SwitchRow | None:
        """None: never set through recbot."""
        return self._switches.state(app_id, entry_point)

    def known_of_app(self, app_id: str) -> dict[str, SwitchRow]:
        return {row.entry_point: row for row in self._switches.states(app_id)}

    def paused_or_unknown(self) -> list[SwitchRow]:
        """Entry points recbot paused, and those whose switch it does not know after sending a change."""
        return [row for row in self._switches.states() if row.wanted is False or row.status != "set"]

    @contextmanager
    def changing(
        self,
        app_id: str,
        entry_point: str,
        enabled: bool,
        cause: Cause,
        actor: str,
        request_id: str | None = None,
    ) -> Iterator[SwitchChange]:
        """Around sending one change of the switch (SwitchBusy if another is being
        sent). A change that could leave it other than recbot knew is written ahead
        as unknown, so a crash mid-call leaves "unknown", not a claim."""
        lifted: tuple[SwitchRow, SwitchRow] | None = None
        with self._switches.lock(app_id, entry_point):
            previous = self._switches.state(app_id, entry_point, kept=False)
            change = SwitchChange(previous)
            ahead = previous is None or previous.enabled is not enabled

            def row(status: str) -> SwitchRow:
                return SwitchRow(app_id, entry_point, enabled, cause, status, actor, utcnow(), request_id)

            if ahead:
                self._switches.put(row("sending"))
            try:
                yield change
            finally:
                if change.answer == "landed":
                    self._switches.put(now := row("set"))
                    if cause == "config" and previous is not None and previous.wanted is False:
                        lifted = (previous, now)
                elif ahead and change.answer == "refused":
                    if previous is None:
                        self._switches.forget(app_id, entry_point)
                    else:
                        self._switches.put(previous)
                elif ahead:
                    self._switches.put(row("unanswered"))
        if lifted is not None and self._on_pause_lifted is not None:
            try:
                self._on_pause_lifted(*lifted)
            except Exception:  # telling is a courtesy: the change itself is done and recorded
                log.exception("could not tell that a configuration of %s lifted a pause", entry_point)

    def configuring(self, target: Target, actor: str) -> AbstractContextManager[SwitchChange]:
        """Around sending a configuration of `target`: it switches recording on for the whole entry point."""
        return self.changing(target.app_id, target.entry_point, True, "config", actor)

    def interrupted(self, app_id: str, entry_point: str, wanted: bool, actor: str, request_id: str) -> None:
        """A change found half-done after a stop: unknown, unless it could not have changed anything."""
        with self._switches.lock(app_id, entry_point):
            previous = self._switches.state(app_id, entry_point, kept=False)
            if previous is not None and previous.enabled is wanted:
                return
            self._switches.put(
                SwitchRow(app_id, entry_point, wanted, "switch", "interrupted", actor, utcnow(), request_id)
            )


def code(name: str) -> str:
    """A name as a code span of recbot's answers (plain text, escaped once where it is shown).
    Slack has no way to write a backtick inside a code span, so one in a name (an entry point
    as Agora holds it) is shown as a look-alike (U+02CB) rather than end the span early."""
    return "`" + name.replace("`", "\u02cb") + "`"


def verb(enabled: bool) -> str:
    return "resume" if enabled else "pause"


def consequence(enabled: bool, entry_point: str, app_id: str | None = None) -> str:
    """What a pause or a resume does, said plainly (plain text); `app_id` named when given."""
    name = code(entry_point) + (f" (app {code(app_id)})" if app_id else "")
    if enabled:
        return f"custom recording of every stream of {name} starts again, with its configuration as it was."
    return f"custom recording for all streams of {name} stops until resumed; the configuration is kept."


def describe(
    state: SwitchRow | None,
    who: Callable[[str], str] = lambda user: user,
    when: Callable[[datetime], str] = lambda moment: f"{moment:%Y-%m-%d %H:%M} UTC",
) -> str:
    """What recbot knows of a switch, in words that claim no more than that."""
    if state is None:
        return "unknown (never set through recbot)"
    by, on = who(state.actor), when(state.at)
    if state.status == "set":
        if state.cause == "config":
            return f"on (since a configuration was set by {by} on {on})"
        return (
            f"on: resumed by {by} on {on} (as set by recbot)"
            if state.wanted
            else (f"paused by {by} on {on} (as set by recbot)")
        )
    what = "a configuration (which switches it on)" if state.cause == "config" else f"a {verb(state.wanted)}"
    if state.status == "sending":
        return f"unknown: {what} by {by} was being sent to Agora on {on}, and no answer is recorded yet"
    if state.status == "interrupted":
        return f"unknown: {what} by {by} on {on} was interrupted (recbot stopped while sending it)"
    return (
        f"unknown: Agora gave no usable answer to {what} by {by} on {on} (a server error, or none at all), "
        "so whether it took effect is unknown"
    )


def switch_change(known: SwitchRow | None, enabled: bool) -> FieldChange:
    """The diff line of a pause or resume, from what recbot knows to what is asked."""
    before = {True: "on", False: "paused", None: "unknown"}[known.enabled if known else None]
    return FieldChange(SWITCH_LABEL, before, "on" if enabled else "paused")
