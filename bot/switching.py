"""Pausing and resuming custom recording of an entry point, and recording single
streams: who may, when it needs approval, the documented order (the switch off
before a stream task), and Agora's answers in words a person can act on."""

from __future__ import annotations

import logging

from bot.agora import AgoraBadRequest, AgoraClient, AgoraError, AgoraNotFound, AgoraUnavailable
from bot.applying import BUSY, apply_switch
from bot.approvals import ApprovalService
from bot.models import FieldChange, Target
from bot.outcome import Outcome
from bot.store.audit import AuditLog
from bot.store.switches import SwitchStore
from bot.switch import SwitchBook, inert, switch_change, verb

log = logging.getLogger(__name__)


class SwitchService:
    """Pause, resume and single streams, for the people in RECBOT_REQUESTERS (the listeners check who)."""

    def __init__(
        self,
        agora: AgoraClient,
        audit: AuditLog,
        streams: SwitchStore,
        book: SwitchBook,
        approvals: ApprovalService,
        *,
        default_app: str,
        approval_for: str = "secrets",
    ) -> None:
        self._agora = agora
        self._audit = audit
        self._streams = streams
        self.book = book
        self._approvals = approvals
        self._default_app = default_app
        self._approval_for = approval_for

    @property
    def needs_approval(self) -> bool:
        """A switch carries no secret: it waits for approval only when every change does."""
        return self._approval_for == "all"

    def command(self, *words: str, app_id: str) -> str:
        """The command a person would type, `--app` only when it is not the default."""
        app = f" --app {app_id}" if app_id != self._default_app else ""
        return inert(f"`/recording {' '.join(words)}{app}`")

    def switch(self, app_id: str, entry_point: str, enabled: bool, requester: str) -> Outcome:
        """Pause (`enabled` False) or resume every stream of an entry point: at once, or as a change request."""
        target = Target.every_region(app_id, entry_point)
        known = self.book.known(app_id, entry_point)
        if self.needs_approval:
            return self._approvals.open_switch(target, enabled, requester, [switch_change(known, enabled)])
        outcome = apply_switch(self._agora, self.book, target, enabled, requester)
        if outcome.kind == "applied":
            self._audit.append("resumed" if enabled else "paused", requester, target, changes=outcome.changes)
            other = self.command("pause" if enabled else "resume", entry_point, app_id=app_id)
            message = f"{outcome.message} To {verb(not enabled)} it: {other}."
            outcome = Outcome("applied", message, outcome.changes)
        elif outcome.message != BUSY:
            self._audit.append("failed", requester, target, changes=outcome.changes, note=outcome.message)
        log.info("%s of %s by %s: %s", verb(enabled), target.describe(), requester, outcome.kind)
        return outcome

    def stream(self, target: Target, stream: str, on: bool, user: str) -> Outcome:
        """Record one stream (Agora wants the switch off first) or stop recording it."""
        return self._start(target, stream, user) if on else self._stop(target, stream, user)

    def _start(self, target: Target, stream: str, user: str) -> Outcome:
        known = self.book.known(target.app_id, target.entry_point)
        ep, name = inert(target.entry_point), inert(stream)
        if known is not None and known.enabled:
            pause = self.command("pause", target.entry_point, app_id=target.app_id)
            return Outcome(
                "refused",
                f"Nothing was sent: custom recording of `{ep}` is on for every stream, as far as recbot knows. "
                f"Agora records a single stream only while that is off. Pause it first with {pause}, "
                "then run this again.",
            )
        change = [FieldChange(f"Stream {stream}", "not recorded by a task", "recorded by a task")]
        try:
            self._agora.start_stream(target, stream)
        except AgoraError as exc:
            message = self._start_failed(exc, target, stream, known is None or known.enabled is None)
            self._audit.append("failed", user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        self._streams.add_stream_task(target, stream, user)
        self._audit.append("stream_on", user, target, changes=change)
        stop = self.command("stream", target.entry_point, target.region, stream, "off", app_id=target.app_id)
        message = (
            f"Agora accepted: it records stream `{name}` of `{ep}` ({target.region}) while it is pushed, now or "
            f"within the next 24 hours, and stops when the push ends. To stop it: {stop}."
        )
        if known is None or known.enabled is None:
            message += f" (recbot does not know whether custom recording of `{ep}` is off; Agora took the task.)"
        return Outcome("applied", message, change)

    def _start_failed(self, exc: AgoraError, target: Target, stream: str, unknown: bool) -> str:
        """Agora's refusal of a stream task, in words a person can act on."""
        ep, name, why = inert(target.entry_point), inert(stream), inert(exc.upstream_message or "no detail given")
        if isinstance(exc, AgoraNotFound):
            return (
                f"Nothing was recorded: Agora has no entry point `{ep}` configured in region `{target.region}` of "
                f"App ID `{inert(target.app_id)}`. Check the name (case-sensitive), the region and `--app`."
            )
        if isinstance(exc, AgoraBadRequest):
            pause = self.command("pause", target.entry_point, app_id=target.app_id)
            hint = (
                f" recbot does not know whether custom recording of `{ep}` is off (it was never set through "
                f"recbot, or its last change got no answer); if it is on, pause it first with {pause}."
                if unknown
                else ""
            )
            return (
                f"Agora refused to record stream `{name}`: {why}. Agora records a single stream only while the "
                "entry point's custom recording is off, and only a stream pushed now or within the next 24 hours."
                + hint
            )
        if isinstance(exc, AgoraUnavailable):
            return (
                f"Agora did not answer ({why}), so whether it records stream `{name}` is unknown. "
                "Run the command again: it is safe to repeat."
            )
        return f"Nothing was recorded. {inert(exc.user_message())}"

    def _stop(self, target: Target, stream: str, user: str) -> Outcome:
        ep, name = inert(target.entry_point), inert(stream)
        change = [FieldChange(f"Stream {stream}", "recorded by a task", "not recorded by a task")]
        try:
            self._agora.stop_stream(target, stream)
        except AgoraNotFound:
            listed = self._streams.remove_stream_task(target, stream)
            return Outcome(
                "no_change",
                f"Agora has no recording task for stream `{name}` of `{ep}` ({target.region}): it ended with the "
                "push, was stopped elsewhere, or the entry point or stream name is not that. "
                + ("recbot no longer lists it." if listed else "Check the names, the region and `--app`."),
            )
        except AgoraUnavailable as exc:
            message = (
                f"Agora did not answer ({inert(exc.upstream_message or 'no detail')}), so whether it still records "
                f"stream `{name}` is unknown. Run the command again: it is safe to repeat."
            )
            self._audit.append("failed", user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        except AgoraError as exc:
            message = f"Nothing was stopped. {inert(exc.user_message())}"
            self._audit.append("failed", user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        self._streams.remove_stream_task(target, stream)
        self._audit.append("stream_off", user, target, changes=change)
        return Outcome("applied", f"Stopped: Agora no longer records stream `{name}` of `{ep}` by a task.", change)
