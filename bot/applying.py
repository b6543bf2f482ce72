"""Sending a change to Agora and checking it took effect: a configuration (PATCH, then read
back and compared with what it should leave), or the recording switch (recorded as Agora's
answer showed). Used by direct changes and by approved requests alike."""

from __future__ import annotations

import logging

from bot.agora import (
    INTERACTIVE_WAIT_SECONDS,
    AgoraClient,
    AgoraError,
    AgoraNotFound,
    AgoraRateLimited,
    AgoraUnavailable,
)
from bot.drift import DriftWatch
from bot.models import RecordingConfig, StorageConfig, Target, diff
from bot.outcome import Outcome
from bot.store.values import SwitchBusy
from bot.switch import SwitchBook, code, consequence, switch_change, unrecorded, verb

log = logging.getLogger(__name__)

BUSY = (
    "Another change of this entry point's recording switch is being sent right now, so nothing was sent. "
    "Try again in a minute."
)


def expected_after(live: RecordingConfig, patch: RecordingConfig) -> RecordingConfig:
    """The config Agora should hold once `patch` is applied to `live`."""
    return RecordingConfig(
        mp4_config=patch.mp4_config or live.mp4_config,
        hls_config=patch.hls_config or live.hls_config,
        storage_config=patch.storage_config or live.storage_config,
    )


def is_empty(patch: RecordingConfig) -> bool:
    """A patch that changes nothing: the target is already as asked."""
    return patch.mp4_config is None and patch.hls_config is None and patch.storage_config is None


def matches(expected: RecordingConfig, actual: RecordingConfig) -> bool:
    """Whether a read-back shows the change took effect."""
    return (
        expected.mp4 == actual.mp4
        and expected.hls == actual.hls
        and storage_wire(expected.storage_config) == storage_wire(actual.storage_config)
    )


def storage_wire(storage: StorageConfig | None) -> object:
    return None if storage is None else RecordingConfig(storage_config=storage).wire_json()


def apply_change(
    agora: AgoraClient,
    target: Target,
    live: RecordingConfig,
    patch: RecordingConfig,
    watch: DriftWatch,
    switches: SwitchBook | None = None,
    actor: str = "recbot",
    *,
    wait_limit: float | None = INTERACTIVE_WAIT_SECONDS,
) -> Outcome:
    """PATCH once (the client retries), read back, and report before -> after.
    The drift watch is told first what the change will leave, then what it left;
    on every other way out (a failure, an exception) it stops expecting it.
    `switches` records that setting a configuration switches recording on;
    `wait_limit` bounds each call's wait for the rate limiter (None: its turn)."""
    after = expected_after(live, patch)
    watch.expect(target, after)
    try:
        return _patch_and_read_back(agora, target, live, patch, after, watch, switches, actor, wait_limit)
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
    wait_limit: float | None,
) -> Outcome:
    changes = diff(live, after)
    unanswered: AgoraUnavailable | None = None
    try:
        with switches.configuring(target, actor) if switches else unrecorded() as switch:
            try:
                agora.set_config(target, patch, wait_limit=wait_limit)
            except AgoraUnavailable as exc:
                # A PATCH answered 5xx, or not at all, may still have landed: the read-back below decides.
                log.warning("PATCH to %s not acknowledged (%s); reading back", target.describe(), exc.upstream_message)
                unanswered = exc
            except AgoraError as exc:
                switch.refused()
                return Outcome("failed", f"The change was not applied. {exc.user_message()}", changes)
            else:
                switch.landed()
            try:
                confirmed = agora.get_config(target, wait_limit=wait_limit)
            except AgoraError as exc:
                return Outcome("failed", _unreadable(unanswered, exc), changes)
            if not matches(after, confirmed):
                return Outcome("failed", _not_in_effect(unanswered, matches(live, confirmed)), changes)
            switch.landed()
    except SwitchBusy:
        return Outcome("failed", BUSY, changes)
    watch.applied(target, confirmed)
    if unanswered is None:
        message = "Change applied and confirmed by reading it back."
    else:
        message = f"Change applied: {_unanswered(unanswered)}, but reading it back shows the change in effect."
    if switch.previous is not None and switch.previous.enabled is not True:
        was = "paused" if switch.previous.enabled is False else "unknown"
        message += (
            " Setting a configuration switches custom recording on for every stream of the entry point, "
            f"so it is on now (recbot knew it as {was})."
        )
    return Outcome("applied", message, changes)


def _unanswered(exc: AgoraUnavailable) -> str:
    """What Agora did with a PATCH it never acknowledged, after every retry."""
    if exc.status is not None:
        detail = f": {exc.upstream_message}" if exc.upstream_message else ""
        return f"Agora answered the change with a server error ({exc.status}{detail})"
    return f"Agora did not answer the change ({exc.upstream_message or 'no answer'})"


def _not_in_effect(unanswered: AgoraUnavailable | None, as_before: bool) -> str:
    """Why a change the read-back does not show failed, and whether it was applied."""
    if unanswered is None:
        return (
            "The change is not in effect: the configuration read back from Agora differs from it. "
            "Check it with `/recording get` and try again."
        )
    if as_before:
        return (
            f"The change was not applied: {_unanswered(unanswered)}, and reading it back shows the "
            f"configuration as it was: {unanswered.when_to_retry('try again later')}."
        )
    return (
        f"{_unanswered(unanswered)}, and the configuration read back is neither the change nor what it was "
        "before (changed elsewhere meanwhile?), so whether the change was applied is unknown. "
        "Check it with `/recording get`."
    )


def _unreadable(unanswered: AgoraUnavailable | None, exc: AgoraError) -> str:
    """A change whose read-back failed: in effect or not, nobody knows yet."""
    why = f"Agora is not answering properly ({exc.upstream_message or 'no detail'})"
    failed = why if isinstance(exc, AgoraUnavailable) else exc.user_message().rstrip(".")
    if unanswered is None:
        return (
            f"Agora accepted the change, but reading it back failed ({failed}), so whether it is in effect "
            "is unknown. Check it with `/recording get`."
        )
    return (
        f"{_unanswered(unanswered)}, and reading it back failed too ({failed}), so whether the change was "
        "applied is unknown. Check it with `/recording get`."
    )


def no_answer(exc: AgoraUnavailable) -> str:
    """What became of a call that may or may not have taken effect: a server error, no answer at
    all, or an answer recbot could not read."""
    detail = exc.upstream_message
    if exc.status:
        return f"Agora answered with a server error ({exc.status}{': ' + detail if detail else ''})"
    if detail in ("timed out", "connection failed"):
        return f"Agora did not answer ({detail})"
    return f"Agora's answer could not be read ({detail or 'no detail'})"


def refusal(lead: str, exc: AgoraError) -> str:
    """A refusal that changed nothing: `lead` says what was not done, Agora's answer why."""
    if isinstance(exc, AgoraRateLimited):  # its own words would say "Nothing was changed" a second time
        return f"{lead} Agora is rate-limiting recbot right now; {exc.when_to_retry('try again in a minute')}."
    return f"{lead} {exc.user_message()}"


def send_switch(
    agora: AgoraClient,
    book: SwitchBook,
    target: Target,
    enabled: bool,
    actor: str,
    request_id: str | None = None,
    app_named: str | None = None,
    wait_limit: float | None = INTERACTIVE_WAIT_SECONDS,
) -> tuple[Outcome, bool]:
    """One pause or resume sent and recorded (the answer names `app_named`, if given); and whether
    Agora's answer was lost, so that it may or may not have taken effect."""
    app_id, entry_point = target.app_id, target.entry_point
    changes = [switch_change(book.known(app_id, entry_point), enabled)]
    ep, app = code(entry_point) + (f" (app {code(app_named)})" if app_named else ""), code(app_id)
    try:
        with book.changing(app_id, entry_point, enabled, "switch", actor, request_id) as change:
            try:
                agora.set_switch(app_id, entry_point, enabled, wait_limit=wait_limit)
            except AgoraUnavailable as exc:
                log.warning("switch of %s not answered (%s)", target.describe(), exc.upstream_message)
                state = "on" if enabled else "paused"
                was = change.previous
                if was is not None and was.enabled is enabled and was.status == "set":
                    message = (  # sent again to what recbot knew it was: either way it is as it was
                        f"{no_answer(exc)} to the {verb(enabled)}, but it could not have changed anything: "
                        f"custom recording of {ep} was {state} already, and is {state} whether or not it took effect."
                    )
                else:
                    message = (
                        f"{no_answer(exc)} to the {verb(enabled)}, so it may or may not have taken effect: whether "
                        f"custom recording of {ep} is {state} is unknown now, and recbot "
                        "shows it as unknown. Send it again to be sure: it is safe to repeat."
                    )
                return Outcome("failed", message, changes), True
            except AgoraNotFound:
                change.refused()
                message = (
                    f"Nothing was changed: Agora has no entry point {code(entry_point)} in App ID {app}. "
                    "Check the name (case-sensitive) and `--app`."
                )
                return Outcome("failed", message, changes), False
            except AgoraError as exc:
                change.refused()
                return Outcome("failed", refusal("Nothing was changed.", exc), changes), False
            change.landed()
    except SwitchBusy:
        return Outcome("failed", BUSY, changes), False
    done = "Resumed" if enabled else "Paused"
    return Outcome("applied", f"{done}: {consequence(enabled, entry_point, app_named)}", changes), False


def apply_switch(
    agora: AgoraClient,
    book: SwitchBook,
    target: Target,
    enabled: bool,
    actor: str,
    request_id: str | None = None,
    *,
    wait_limit: float | None = INTERACTIVE_WAIT_SECONDS,
) -> Outcome:
    """Send one pause or resume (`target` is the entry point as a whole) and record what Agora's answer showed;
    `wait_limit` bounds the wait for the rate limiter (None: its turn)."""
    return send_switch(agora, book, target, enabled, actor, request_id, wait_limit=wait_limit)[0]
