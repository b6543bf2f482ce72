"""The `/recording set` modal: loading view, form, result view, and reading its state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bot.catalog import API_REGIONS, CATALOG, Vendor, vendor_info
from bot.changes import Proposal
from bot.models import (
    MAX_BUCKET_LENGTH,
    RecordingConfig,
    StorageConfig,
    Target,
    TypedStorageConfig,
    describe_storage,
    fingerprint,
    typed_problems,
)
from bot.naming import MAX_KEY_LENGTH
from bot.observation import Observation
from bot.outcome import Outcome
from bot.seal import Sealer
from handlers.blocks.messages import escape, escape_keeping_mentions
from handlers.blocks.summary import geography_warning

CALLBACK_EDIT = "recording_edit"
TITLE = "Recording settings"

BLOCK_CURRENT = "current_config"
BLOCK_FORMATS = "formats"
ACTION_FORMATS = "formats_checkboxes"
BLOCK_CHANGE_STORAGE = "change_storage"
ACTION_CHANGE_STORAGE = "change_storage_checkbox"
BLOCK_VENDOR = "storage_vendor"
ACTION_VENDOR = "vendor_select"
BLOCK_REGION = "storage_region"
ACTION_REGION = "region_select"
BLOCK_BUCKET = "storage_bucket"
ACTION_BUCKET = "bucket_input"
BLOCK_ACCESS_KEY = "storage_access_key"
ACTION_ACCESS_KEY = "access_key_input"
BLOCK_SECRET_KEY = "storage_secret_key"  # noqa: S105 - a block id, not a secret
ACTION_SECRET_KEY = "secret_key_input"  # noqa: S105 - an action id, not a secret

MP4, HLS, CHANGE = "mp4", "hls", "change"
WORKING = (
    ":hourglass_flowing_sand: Checking the live configuration, and for a storage change the bucket and keys "
    "(a small test object is written, read back and deleted)…"
)
# The form field a storage refusal concerns -> the block it is shown under.
FIELD_BLOCKS = {
    "bucket": BLOCK_BUCKET,
    "access_key": BLOCK_ACCESS_KEY,
    "secret_key": BLOCK_SECRET_KEY,
    "region": BLOCK_REGION,
}


@dataclass(frozen=True)
class FormMetadata:
    """All the modal remembers: the target and a keyed digest of the config
    the form was built from, tagged so it cannot be forged. No config values, no secrets."""

    target: Target
    digest: str

    def _fields(self) -> list[str]:
        return [self.target.app_id, self.target.entry_point, self.target.region, self.digest]

    def dump(self, sealer: Sealer) -> str:
        fields = self._fields()
        return json.dumps(
            dict(zip(("app", "ep", "region", "digest"), fields, strict=True)) | {"tag": sealer.tag(json.dumps(fields))}
        )

    @classmethod
    def load(cls, raw: Any, sealer: Sealer) -> FormMetadata:
        """Raise ValueError on anything that is not metadata this bot wrote."""
        try:
            data = json.loads(raw)
            metadata = cls(Target(app_id=data["app"], entry_point=data["ep"], region=data["region"]), data["digest"])
            genuine = sealer.verify(json.dumps(metadata._fields()), data["tag"])
        except (TypeError, KeyError, ValueError, ValidationError, AttributeError):
            genuine = False
        if not genuine:
            raise ValueError("the form's metadata is not valid")
        return metadata


@dataclass(frozen=True)
class FormValues:
    """What the form holds (as typed, unvalidated)."""

    mp4: bool = False
    hls: bool = False
    change_storage: bool = False
    vendor: int | None = None
    region: int | None = None
    bucket: str = ""
    access_key: str = ""
    secret_key: str = ""
    # A region was picked from another vendor's list: the form had not been redrawn for the
    # vendor chosen since (its views.update failed, or Submit came first). Its code means
    # another region in this vendor's list, so it is never read as one.
    region_of_another_vendor: bool = False

    @classmethod
    def from_config(cls, config: RecordingConfig) -> FormValues:
        storage = config.storage_config
        return cls(
            mp4=config.mp4,
            hls=config.hls,
            vendor=int(storage.vendor) if storage else None,
            region=storage.region if storage else None,
            bucket=storage.bucket if storage else "",
        )

    @classmethod
    def reverting_to(cls, previous: Observation, live: Observation) -> FormValues:
        """The form of a revert: the previous non-secret values, storage ticked when
        it differs (its keys must then be typed again); no previous storage, none changed."""
        storage_differs = previous.vendor is not None and (
            (previous.vendor, previous.storage_region, previous.bucket, previous.keys_digest)
            != (live.vendor, live.storage_region, live.bucket, live.keys_digest)
        )
        return cls(
            mp4=previous.mp4,
            hls=previous.hls,
            change_storage=storage_differs,
            vendor=previous.vendor,
            region=previous.storage_region,
            bucket=previous.bucket or "",
        )


def _text(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": _text(text[:75]), "value": value}


def _modal(blocks: list[dict[str, Any]], metadata: str = "", submit: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CALLBACK_EDIT,
        "title": _text(TITLE),
        "close": _text("Close"),
        "blocks": blocks,
        "private_metadata": metadata,
    }
    if submit:
        view["submit"] = _text("Review and apply")
    return view


def loading_view(target: Target) -> dict[str, Any]:
    """Opened at once, before any Agora call, while the trigger_id is fresh."""
    return _modal(
        [
            {
                "type": "section",
                "text": _text(
                    f":hourglass_flowing_sand: Reading the configuration of *{escape(target.describe())}*…", "mrkdwn"
                ),
            }
        ]
    )


def message_view(text: str) -> dict[str, Any]:
    """A modal that only says something (an error, a result); `text` is plain text, shown as written."""
    return _said(escape(text))


def _said(mrkdwn: str) -> dict[str, Any]:
    return _modal([{"type": "section", "text": _text(mrkdwn[:3000], "mrkdwn")}])


def current_block(target: Target, config: RecordingConfig, warning: str | None = None) -> dict[str, Any]:
    """The form's "now:" line, and `warning` (mrkdwn) under it: both shown again whenever the form is redrawn."""
    shown = describe_storage(config.storage_config)
    access = fingerprint(config.storage_config.access_key if config.storage_config else None)
    now = _text(
        f"*{escape(target.describe())}* now: MP4 {'on' if config.mp4 else 'off'}, "
        f"HLS {'on' if config.hls else 'off'}; {shown['vendor']}, {shown['region']}, "
        f"bucket {escape(shown['bucket'])}, access key {access}",
        "mrkdwn",
    )
    elements = [now] + ([_text(warning[:3000], "mrkdwn")] if warning else [])
    return {"type": "context", "block_id": BLOCK_CURRENT, "elements": elements}


def current_block_of(view: dict[str, Any]) -> dict[str, Any]:
    """The "now:" line of a form Slack sent back, to show it again unchanged."""
    blocks = view.get("blocks") or []
    found = next((b for b in blocks if isinstance(b, dict) and b.get("block_id") == BLOCK_CURRENT), None)
    return found or {
        "type": "context",
        "block_id": BLOCK_CURRENT,
        "elements": [_text("Current configuration: see `/recording get`.")],
    }


def form_view(
    metadata: FormMetadata,
    sealer: Sealer,
    values: FormValues,
    current: dict[str, Any],
    problems: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The edit form. Inputs keep stable block and action ids, so what the user
    typed survives each `views.update`; the typed keys are never sent back.
    `problems` (block id -> text) are shown under those blocks."""
    format_options = [_option("MP4 recording", MP4), _option("HLS recording", HLS)]
    chosen_formats = [
        o for o in format_options if (o["value"] == MP4 and values.mp4) or (o["value"] == HLS and values.hls)
    ]
    formats: dict[str, Any] = {"type": "checkboxes", "action_id": ACTION_FORMATS, "options": format_options}
    if chosen_formats:
        formats["initial_options"] = chosen_formats
    change_option = _option("Change storage (vendor, region, bucket, keys)", CHANGE)
    change: dict[str, Any] = {"type": "checkboxes", "action_id": ACTION_CHANGE_STORAGE, "options": [change_option]}
    if values.change_storage:
        change["initial_options"] = [change_option]

    vendor_options = [
        _option(f"{info.name} ({info.vendor.value})", str(info.vendor.value)) for info in CATALOG.values()
    ]
    vendor_select: dict[str, Any] = {"type": "static_select", "action_id": ACTION_VENDOR, "options": vendor_options}
    if values.vendor is not None and values.vendor in CATALOG:
        vendor_select["initial_option"] = vendor_options[list(CATALOG).index(Vendor(values.vendor))]

    hints = _field_hints(values.vendor)
    blocks: list[dict[str, Any]] = [
        current,
        {
            "type": "input",
            "block_id": BLOCK_FORMATS,
            "optional": True,
            "label": _text("Record these formats"),
            "element": formats,
        },
        {"type": "divider"},
        {
            "type": "input",
            "block_id": BLOCK_CHANGE_STORAGE,
            "optional": True,
            "label": _text("Storage"),
            "hint": _text("Leave unticked to keep storage exactly as it is; then no credentials are sent."),
            "element": change,
        },
        {
            "type": "input",
            "block_id": BLOCK_VENDOR,
            "optional": True,
            "dispatch_action": True,
            "label": _text("Vendor"),
            "element": vendor_select,
        },
        _region_block(values, metadata.target.region),
        # A bucket read from Agora longer than the field holds is not offered: Slack refuses such a form.
        _plain_input(
            BLOCK_BUCKET,
            ACTION_BUCKET,
            "Bucket",
            MAX_BUCKET_LENGTH,
            initial=values.bucket if len(values.bucket) <= MAX_BUCKET_LENGTH else "",
            hint=hints[0],
        ),
        # The keys never get an initial value: Slack keeps what was typed across
        # `views.update` (same block and action ids), so typed keys never travel back.
        _plain_input(BLOCK_ACCESS_KEY, ACTION_ACCESS_KEY, "Access key", MAX_KEY_LENGTH, hint=hints[1]),
        _plain_input(BLOCK_SECRET_KEY, ACTION_SECRET_KEY, "Secret key", MAX_KEY_LENGTH, hint=hints[2]),
    ]
    for block_id, text in (problems or {}).items():
        at = next(i for i, block in enumerate(blocks) if block.get("block_id") == block_id)
        note = {
            "type": "context",
            "block_id": f"{block_id}_problem",
            # Plain text: a vendor's rule names `<name>-<APPID>`, a refusal may quote the vendor.
            "elements": [_text(f":x: {escape(text)}"[:3000], "mrkdwn")],
        }
        blocks.insert(at + 1, note)
    return _modal(blocks, metadata.dump(sealer), submit=True)


def storage_refused_view(
    metadata: FormMetadata, sealer: Sealer, values: FormValues, current: dict[str, Any], outcome: Outcome
) -> dict[str, Any]:
    """The form again after the storage check refused it: what was typed, but the keys
    (never sent back to Slack), with the refusal under the field it concerns."""
    block_id = FIELD_BLOCKS.get(outcome.field or "", BLOCK_BUCKET)
    text = f"{outcome.message} Fix it and type both keys again."
    return form_view(metadata, sealer, values, current, {block_id: text})


ACCESS_HINT = "Agora suggests a write-only access key for the bucket."
UNMASKED_HINT = (
    "Slack cannot mask this field: type it where nobody reads over your shoulder, and use a "
    "write-only key. It is sent only after approval and never shown again."
)


def _field_hints(vendor: int | None) -> tuple[str | None, str, str]:
    """The bucket's and the keys' hints: what the chosen vendor accepts (the catalog's rules)."""
    if vendor is None or vendor not in CATALOG:
        return None, ACCESS_HINT, UNMASKED_HINT
    info = vendor_info(vendor)
    access, secret = info.access_key_rule.explain(info.name), info.secret_key_rule.explain(info.name)
    return info.bucket_rule.explain(info.name), f"{access} {ACCESS_HINT}", f"{secret} {UNMASKED_HINT}"


def region_action_id(vendor: int | None) -> str:
    """The region select's action id: it names the vendor whose list it shows."""
    return f"{ACTION_REGION}_{vendor}"


def _region_block(values: FormValues, api_region: str) -> dict[str, Any]:
    if values.vendor is None or values.vendor not in CATALOG:
        return {"type": "context", "block_id": BLOCK_REGION, "elements": [_text("Choose a vendor to see its regions.")]}
    info = vendor_info(values.vendor)
    if not info.has_regions:
        return {
            "type": "context",
            "block_id": BLOCK_REGION,
            "elements": [_text(f"Region does not apply to {info.name}; Agora ignores it.")],
        }
    options = [_option(f"{r.name} ({r.code})", str(r.code)) for r in info.regions]
    select: dict[str, Any] = {
        # The action id names the vendor, so a region picked for another vendor never carries over.
        "type": "static_select",
        "action_id": region_action_id(info.vendor.value),
        "options": options,
    }
    chosen = info.region(values.region) if values.region is not None else None
    if chosen is not None:
        select["initial_option"] = options[info.regions.index(chosen)]
    return {
        "type": "input",
        "block_id": BLOCK_REGION,
        "optional": True,
        "label": _text(f"{info.name} region"),
        # Where the storage region should be: a warning after submit when it is not, never a refusal.
        "hint": _text(f"Agora advises a region in {API_REGIONS[api_region]}, where this entry point records."),
        "element": select,
    }


def _plain_input(
    block_id: str, action_id: str, label: str, max_length: int, *, initial: str = "", hint: str | None = None
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": _text(label),
        "element": element,
    }
    if hint:
        block["hint"] = _text(hint)
    return block


def read_text(state: Any, block_id: str) -> str:
    """The stripped text of a block's one input, or '' if absent or malformed."""
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(block_id) if isinstance(values, dict) else None
    action = next(iter(block.values()), None) if isinstance(block, dict) else None
    value = action.get("value") if isinstance(action, dict) else None
    return value.strip() if isinstance(value, str) else ""


class MalformedForm(ValueError):
    """The submitted state is not one this form produces; nothing may be changed."""


UNREADABLE = ":x: This form could not be read, so nothing was changed. Reopen it with `/recording set`."


def read_values(state: Any) -> FormValues:
    """The form's values from `view.state.values`. Optional fields that are
    malformed read as empty (validation then names them); a missing or
    malformed formats or storage switch raises MalformedForm, because reading
    it as "off" would turn recording off."""
    values = state.get("values") if isinstance(state, dict) else None
    values = values if isinstance(values, dict) else {}

    def action(block_id: str) -> dict[str, Any]:
        block = values.get(block_id)
        if not isinstance(block, dict) or not block:
            return {}
        first = next(iter(block.values()))
        return first if isinstance(first, dict) else {}

    def action_id(block_id: str) -> str | None:
        block = values.get(block_id)
        return next(iter(block), None) if isinstance(block, dict) else None

    def checked(block_id: str) -> set[str]:
        options = action(block_id).get("selected_options")
        if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
            raise MalformedForm(block_id)
        return {o.get("value") for o in options}

    def selected_int(block_id: str) -> int | None:
        option = action(block_id).get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
        # ASCII digits only: "²" is a digit to str.isdigit, and int() refuses it.
        return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 4 else None

    formats = checked(BLOCK_FORMATS)
    vendor, region = selected_int(BLOCK_VENDOR), selected_int(BLOCK_REGION)
    picked_elsewhere = region is not None and action_id(BLOCK_REGION) != region_action_id(vendor)
    return FormValues(
        mp4=MP4 in formats,
        hls=HLS in formats,
        change_storage=CHANGE in checked(BLOCK_CHANGE_STORAGE),
        vendor=vendor,
        region=None if picked_elsewhere else region,
        region_of_another_vendor=picked_elsewhere,
        bucket=read_text(state, BLOCK_BUCKET),
        access_key=read_text(state, BLOCK_ACCESS_KEY),
        secret_key=read_text(state, BLOCK_SECRET_KEY),
    )


_FIELD_BLOCKS = {
    "vendor": BLOCK_VENDOR,
    "region": BLOCK_REGION,
    "bucket": BLOCK_BUCKET,
    "access_key": BLOCK_ACCESS_KEY,
    "secret_key": BLOCK_SECRET_KEY,
}
_REQUIRED = {
    BLOCK_VENDOR: "Choose a vendor.",
    BLOCK_BUCKET: "Enter the bucket name.",
    BLOCK_ACCESS_KEY: "Enter the access key.",
    BLOCK_SECRET_KEY: "Enter the secret key.",
}


def to_proposal(values: FormValues) -> tuple[Proposal | None, dict[str, str]]:
    """A Proposal, or errors keyed by block_id that say what is valid."""
    if not values.change_storage:
        return Proposal(mp4=values.mp4, hls=values.hls), {}
    errors = {}
    for block_id, raw in (
        (BLOCK_VENDOR, values.vendor),
        (BLOCK_BUCKET, values.bucket),
        (BLOCK_ACCESS_KEY, values.access_key),
        (BLOCK_SECRET_KEY, values.secret_key),
    ):
        if raw in (None, ""):
            errors[block_id] = _REQUIRED[block_id] + " All storage fields are required when changing storage."
    info = vendor_info(values.vendor) if values.vendor is not None and values.vendor in CATALOG else None
    if info and info.has_regions and values.region is None:
        errors[BLOCK_REGION] = f"Choose one of {info.name}'s regions."
        if values.region_of_another_vendor:
            errors[BLOCK_REGION] = f"The region was picked from another vendor's list: choose one of {info.name}'s."
    if values.access_key and values.access_key == values.secret_key:
        errors[BLOCK_SECRET_KEY] = "The access key and the secret key are the same: paste each in its own field."
    if errors:
        return None, errors
    try:
        storage = TypedStorageConfig.model_validate(
            {
                "vendor": values.vendor,
                "region": values.region or 0,
                "bucket": values.bucket,
                "access_key": values.access_key,
                "secret_key": values.secret_key,
            }
        )
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "region"
            block_id = _FIELD_BLOCKS.get(field, BLOCK_REGION)
            errors.setdefault(block_id, error["msg"].removeprefix("Value error, ")[:300])
        return None, errors
    # What the vendor accepts: typed text must never choose where recbot connects.
    problems = {_FIELD_BLOCKS[field]: text[:300] for field, text in typed_problems(storage).items()}
    if problems:
        return None, problems
    return Proposal(mp4=values.mp4, hls=values.hls, storage=storage), {}


def outcome_view(target: Target, outcome: Outcome, storage: StorageConfig | None = None) -> dict[str, Any]:
    """The modal after submit: what happened, and the change before -> after."""
    return _said(outcome_text(target, outcome, storage))


def outcome_text(target: Target, outcome: Outcome, storage: StorageConfig | None = None) -> str:
    """What happened, and the change before -> after, in mrkdwn: the modal's, or a message's;
    with the `storage` asked for, a warning when its region sits outside the entry point's."""
    icon = {"applied": ":white_check_mark:", "no_change": ":information_source:", "needs_approval": ":lock:"}.get(
        outcome.kind, ":x:"
    )
    # The message may quote Agora; it mentions only the people recbot's own words name.
    said = escape_keeping_mentions(outcome.message, outcome.mentions)
    lines = [f"{icon} *{escape(target.describe())}*: {said}"]
    lines += [f"• {escape(c.label)}: {escape(c.before)} → {escape(c.after)}" for c in outcome.changes]
    if outcome.request is not None and outcome.request.probe is not None:
        lines.append(f"Storage check: {escape(outcome.request.probe.summary)}")
    warning = geography_warning(target.region, storage.vendor, storage.region) if storage is not None else None
    if warning and outcome.kind in ("applied", "needs_approval"):
        lines.append(warning)
    return "\n".join(lines)
