"""Sending a change to Agora and checking it took effect: a configuration (PATCH, then read
back and compared with what it should leave), or the recording switch (recorded as Agora's
answer showed). Used by direct changes and by approved requests alike."""

from __future__ import annotations

import logging

from bot.agora import AgoraClient, AgoraError, AgoraNotFound, AgoraUnavailable
from bot.drift import DriftWatch
from bot.models import RecordingConfig, StorageConfig, Target, diff
from bot.outcome import Outcome
from bot.store.values import SwitchBusy
from bot.switch import SwitchBook, consequence, inert, switch_change, unrecorded, verb

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


def apply_switch(
    agora: AgoraClient,
    book: SwitchBook,
    target: Target,
    enabled: bool,
    actor: str,
    request_id: str | None = None,
) -> Outcome:
    """Send one pause or resume (`target` is the entry point as a whole) and record what Agora's answer showed."""
    app_id, entry_point = target.app_id, target.entry_point
    changes = [switch_change(book.known(app_id, entry_point), enabled)]
    ep, app = inert(entry_point), inert(app_id)
    try:
        with book.changing(app_id, entry_point, enabled, "switch", actor, request_id) as change:
            try:
                agora.set_switch(app_id, entry_point, enabled)
            except AgoraUnavailable as exc:
                log.warning("switch of %s not answered (%s)", target.describe(), exc.upstream_message)
                why = inert(exc.upstream_message or "no detail")
                return Outcome(
                    "failed",
                    f"Agora did not answer the {verb(enabled)} ({why}), so whether "
                    f"custom recording of `{ep}` is {'on' if enabled else 'paused'} is unknown now; recbot "
                    "shows it as unknown. Send it again to be sure: it is safe to repeat.",
                    changes,
                )
            except AgoraNotFound:
                change.refused()
                return Outcome(
                    "failed",
                    f"Nothing was changed: Agora has no entry point `{ep}` in App ID `{app}`. "
                    "Check the name (case-sensitive) and `--app`.",
                    changes,
                )
            except AgoraError as exc:
                change.refused()
                return Outcome("failed", f"Nothing was changed. {inert(exc.user_message())}", changes)
            change.landed()
    except SwitchBusy:
        return Outcome("failed", BUSY, changes)
    done = "Resumed" if enabled else "Paused"
    return Outcome("applied", f"{done}: {consequence(enabled, ep)}", changes)
