"""Pausing and resuming custom recording of an entry point, and recording single
streams: who may, when it needs approval, the documented order (the switch off
before a stream task), and Agora's answers in words a person can act on.

Every message here is plain text with names as typed or as Agora holds them: it is
escaped once, where it is shown (an answer, a card, the App Home, history)."""

from __future__ import annotations

import logging

from bot.agora import (
    AgoraBadRequest,
    AgoraClient,
    AgoraError,
    AgoraNotFound,
    AgoraUnavailable,
    AgoraUnknownApp,
    sending,
)
from bot.applying import BUSY, no_answer, refusal, send_switch
from bot.approvals import ApprovalService
from bot.metrics import Metrics
from bot.models import FieldChange, Target
from bot.outcome import Outcome
from bot.store.audit import AuditLog
from bot.store.switches import SwitchStore
from bot.store.values import SwitchRow
from bot.switch import SwitchBook, code, switch_change, verb

log = logging.getLogger(__name__)

# The audit event of a pause, resume or stream task Agora gave no usable answer to: it may or may not have
# taken effect ("failed" is for what Agora refused, which changed nothing).
UNANSWERED = "unanswered"


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
        metrics: Metrics | None = None,
    ) -> None:
        self._agora = agora
        self._audit = audit
        self._streams = streams
        self.book = book
        self._approvals = approvals
        self._default_app = default_app
        self._approval_for = approval_for
        self._metrics = metrics or Metrics()

    @property
    def needs_approval(self) -> bool:
        """A switch carries no secret: it waits for approval only when every change does."""
        return self._approval_for == "all"

    def command(self, *words: str, app_id: str) -> str:
        """The command a person would type, `--app` only when it is not the default."""
        app = f" --app {app_id}" if app_id != self._default_app else ""
        return code(f"/recording {' '.join(words)}{app}")

    def _other_app(self, app_id: str) -> str | None:
        """The App ID when it is not the default one: the answers then name it."""
        return app_id if app_id != self._default_app else None

    def named(self, app_id: str, entry_point: str, region: str | None = None) -> str:
        """An entry point as the answers name it: with its region, and its App ID when not the default."""
        other = self._other_app(app_id)
        where = [region] if region else []
        if other:
            where.append(f"app {code(other)}")
        return code(entry_point) + (f" ({', '.join(where)})" if where else "")

    def switch(self, app_id: str, entry_point: str, enabled: bool, requester: str) -> Outcome:
        """Pause (`enabled` False) or resume every stream of an entry point: at once, or as a change request."""
        target = Target.every_region(app_id, entry_point)
        known = self.book.known(app_id, entry_point)
        if self.needs_approval:
            changes = [switch_change(known, enabled)]
            unlisted = self._unlisted(app_id, entry_point)
            if unlisted:
                return Outcome("refused", unlisted, changes)
            return self._approvals.open_switch(target, enabled, requester, changes, self._other_app(app_id))
        (outcome, unanswered), sent = sending(
            lambda: send_switch(self._agora, self.book, target, enabled, requester, app_named=self._other_app(app_id))
        )
        if sent:  # a switch held by another change, or refused by the rate limiter, sent nothing
            self._metrics.applies.labels(outcome="applied" if outcome.kind == "applied" else "failed").inc()
        if outcome.kind == "applied":
            self._audit.append("resumed" if enabled else "paused", requester, target, changes=outcome.changes)
            other = self.command("pause" if enabled else "resume", entry_point, app_id=app_id)
            outcome = Outcome("applied", f"{outcome.message} To {verb(not enabled)} it: {other}.", outcome.changes)
        elif outcome.message != BUSY:
            event = UNANSWERED if unanswered else "failed"
            self._audit.append(event, requester, target, changes=outcome.changes, note=outcome.message)
        log.info("%s of %s by %s: %s", verb(enabled), target.describe(), requester, outcome.kind)
        return outcome

    def _unlisted(self, app_id: str, entry_point: str) -> str | None:
        """Why no request may be opened for an entry point Agora does not list (or cannot list now), or None."""
        lead = "No request was opened:"
        try:
            names = self._agora.list_entry_points(app_id)
        except AgoraUnknownApp:
            return (
                f"{lead} Agora has no project with App ID {code(app_id)}. Check `--app` (or AGORA_APP_ID) against "
                "Agora Console -> Projects; App IDs are case-sensitive."
            )
        except AgoraUnavailable as exc:
            return f"{lead} recbot could not check the entry point with Agora ({no_answer(exc)}). Try again later."
        except AgoraError as exc:
            return refusal(f"{lead} recbot could not check the entry point with Agora.", exc)
        if entry_point not in names:
            return (
                f"{lead} Agora has no entry point {code(entry_point)} in App ID {code(app_id)}. "
                "Check the name (case-sensitive) and `--app`."
            )
        return None

    def stream(self, target: Target, stream: str, on: bool, user: str) -> Outcome:
        """Record one stream (Agora wants the switch off first) or stop recording it."""
        return self._start(target, stream, user) if on else self._stop(target, stream, user)

    def _start(self, target: Target, stream: str, user: str) -> Outcome:
        known = self.book.known(target.app_id, target.entry_point)
        ep, name = self.named(target.app_id, target.entry_point), code(stream)
        if known is not None and known.enabled:
            pause = self.command("pause", target.entry_point, app_id=target.app_id)
            return Outcome(
                "refused",
                f"Nothing was sent: custom recording of {ep} is on for every stream, as far as recbot knows. "
                f"Agora records a single stream only while that is off. Pause it first with {pause}, "
                "then run this again.",
            )
        change = [FieldChange(f"Stream {stream}", "not recorded by a task", "recorded by a task")]
        stop = self.command("stream", target.entry_point, target.region, stream, "off", app_id=target.app_id)
        try:
            self._agora.start_stream(target, stream)
        except AgoraUnavailable as exc:
            # The task may exist: listed as unknown, so it can be seen and stopped.
            self._streams.add_stream_task(target, stream, user, answered=False)
            message = (
                f"{no_answer(exc)}, so it may or may not have taken effect: whether Agora records stream {name} is "
                f"unknown. recbot lists it as unknown (with Stop on the App Home); run the command again to know, "
                f"or stop it with {stop}. Both are safe to repeat."
            )
            self._audit.append(UNANSWERED, user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        except AgoraError as exc:
            message = self._start_failed(exc, target, stream, known)
            self._audit.append("failed", user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        self._streams.add_stream_task(target, stream, user)
        self._audit.append("stream_on", user, target, changes=change)
        where = self.named(target.app_id, target.entry_point, target.region)
        message = (
            f"Agora accepted: it records stream {name} of {where} while it is pushed, now or "
            f"within the next 24 hours, and stops when the push ends. To stop it: {stop}."
        )
        if known is None or known.enabled is None:
            message += f" (recbot does not know whether custom recording of {ep} is off; Agora took the task.)"
        return Outcome("applied", message, change)

    def _start_failed(self, exc: AgoraError, target: Target, stream: str, known: SwitchRow | None) -> str:
        """Agora's refusal of a stream task, in words a person can act on."""
        ep, name, why = self.named(target.app_id, target.entry_point), code(stream), exc.upstream_message
        pause = self.command("pause", target.entry_point, app_id=target.app_id)
        if isinstance(exc, AgoraNotFound):
            return (
                f"Nothing was recorded: Agora has no entry point {code(target.entry_point)} configured in region "
                f"`{target.region}` of App ID {code(target.app_id)}. Check the name (case-sensitive), the region "
                "and `--app`."
            )
        if isinstance(exc, AgoraBadRequest):
            if known is not None and known.enabled is False:
                hint = (
                    f" recbot knows custom recording of {ep} as paused, but that view may be out of date: if "
                    "Agora's words say custom recording is on, it was switched on outside recbot (in Agora "
                    f"Console, or by a configuration set there). Pause it again with {pause}, then run this again."
                )
            else:
                hint = (
                    f" recbot does not know whether custom recording of {ep} is off (it was never set through "
                    f"recbot, or its last change got no answer); if it is on, pause it first with {pause}."
                )
            return (
                f"Agora refused to record stream {name}: {why or 'no detail given'}. Agora records a single stream "
                "only while the entry point's custom recording is off, and only a stream pushed now or within the "
                "next 24 hours." + hint
            )
        return refusal("Nothing was recorded.", exc)

    def _stop(self, target: Target, stream: str, user: str) -> Outcome:
        name, where = code(stream), self.named(target.app_id, target.entry_point, target.region)
        change = [FieldChange(f"Stream {stream}", "recorded by a task", "not recorded by a task")]
        try:
            self._agora.stop_stream(target, stream)
        except AgoraNotFound:
            listed = self._streams.remove_stream_task(target, stream)
            return Outcome(
                "no_change",
                f"Agora has no recording task for stream {name} of {where}: it ended with the "
                "push, was stopped elsewhere, or the entry point or stream name is not that. "
                + ("recbot no longer lists it." if listed else "Check the names, the region and `--app`."),
            )
        except AgoraUnavailable as exc:
            message = (
                f"{no_answer(exc)}, so it may or may not have taken effect: whether Agora still records "
                f"stream {name} is unknown. Run the command again: it is safe to repeat."
            )
            self._audit.append(UNANSWERED, user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        except AgoraError as exc:
            message = refusal("Nothing was stopped.", exc)
            self._audit.append("failed", user, target, changes=change, note=message)
            return Outcome("failed", message, change)
        self._streams.remove_stream_task(target, stream)
        self._audit.append("stream_off", user, target, changes=change)
        return Outcome("applied", f"Stopped: Agora no longer records stream {name} of {where} by a task.", change)
