"""The `/recording bulk` modal (which targets, what they have now, the change), reading it into
a BulkRequest or errors keyed by block that say what is valid, and the fleet table's "Change
these" button that opens it filled from the table's App ID and regions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from bot.bulk_change import BulkRequest, Change, NewKeys, key_problems
from bot.bulk_targets import PATTERN_RULE, REGION_RULE, TargetFilter
from bot.catalog import API_REGIONS, CATALOG, Vendor
from bot.fleet import Scan
from bot.models import MAX_BUCKET_LENGTH, MAX_NAME_LENGTH, TypedStorageConfig, typed_problems
from bot.naming import MAX_KEY_LENGTH
from bot.seal import Sealer
from handlers.blocks.messages import escape

CALLBACK_BULK = "bulk_form"
BLOCK_INTRO = "bulk_intro"
BLOCK_APP, ACTION_APP = "bulk_app", "bulk_app_input"
BLOCK_REGIONS, ACTION_REGIONS = "bulk_regions", "bulk_regions_checkboxes"
BLOCK_ENTRY_KIND, ACTION_ENTRY_KIND = "bulk_entry_kind", "bulk_entry_kind_radio"
BLOCK_ENTRY_TEXT, ACTION_ENTRY_TEXT = "bulk_entry_text", "bulk_entry_text_input"
BLOCK_NOW_VENDOR, ACTION_NOW_VENDOR = "bulk_now_vendor", "bulk_now_vendor_select"
BLOCK_NOW_BUCKET, ACTION_NOW_BUCKET = "bulk_now_bucket", "bulk_now_bucket_input"
BLOCK_NOW_MP4, ACTION_NOW_MP4 = "bulk_now_mp4", "bulk_now_mp4_radio"
BLOCK_NOW_HLS, ACTION_NOW_HLS = "bulk_now_hls", "bulk_now_hls_radio"
BLOCK_MP4, ACTION_MP4 = "bulk_mp4", "bulk_mp4_radio"
BLOCK_HLS, ACTION_HLS = "bulk_hls", "bulk_hls_radio"
BLOCK_STORAGE, ACTION_STORAGE = "bulk_storage", "bulk_storage_radio"
BLOCK_NEW_VENDOR, ACTION_NEW_VENDOR = "bulk_new_vendor", "bulk_new_vendor_select"
BLOCK_NEW_REGION, ACTION_NEW_REGION = "bulk_new_region", "bulk_new_region_select"
BLOCK_NEW_BUCKET, ACTION_NEW_BUCKET = "bulk_new_bucket", "bulk_new_bucket_input"
BLOCK_ACCESS_KEY, ACTION_ACCESS_KEY = "bulk_access_key", "bulk_access_key_input"
BLOCK_SECRET_KEY, ACTION_SECRET_KEY = "bulk_secret_key", "bulk_secret_key_input"
BLOCK_CHANGE_THESE, ACTION_CHANGE_THESE = "fleet_change_these", "fleet_change_these"

ALL, PATTERN, LIST = "all", "pattern", "list"
ANY, ON, OFF, UNCHANGED = "any", "on", "off", "unchanged"
KEEP, KEYS, STORAGE = "unchanged", "keys", "storage"
MAX_PASTED = 3000  # Slack's longest plain-text input
KEY_HINT = (
    "Slack cannot mask this field: type it where nobody reads over your shoulder, and use a write-only key. "
    "It is sealed until the job ends, sent only after approval, and never shown again."
)


def _text(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": _text(text[:75]), "value": value}


def _input(block_id: str, label: str, element: dict[str, Any], hint: str | None = None) -> dict[str, Any]:
    block = {"type": "input", "block_id": block_id, "optional": True, "label": _text(label), "element": element}
    if hint:
        block["hint"] = _text(hint[:2000])
    return block


def _radio(action_id: str, choices: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Radio buttons, the first choice chosen: what leaves everything as it is, or matches any."""
    options = [_option(text, value) for value, text in choices]
    return {"type": "radio_buttons", "action_id": action_id, "options": options, "initial_option": options[0]}


def _plain(action_id: str, max_length: int, initial: str = "", multiline: bool = False) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    if multiline:
        element["multiline"] = True
    return element


def _vendor_select(action_id: str) -> dict[str, Any]:
    options = [_option(f"{info.name} ({info.vendor.value})", str(info.vendor.value)) for info in CATALOG.values()]
    return {"type": "static_select", "action_id": action_id, "options": options}


def form_view(app_id: str, regions: tuple[str, ...]) -> dict[str, Any]:
    """The modal, its App ID and regions filled in (the fleet table's, or the defaults)."""
    region_options = [_option(region, region) for region in API_REGIONS]
    region_box: dict[str, Any] = {"type": "checkboxes", "action_id": ACTION_REGIONS, "options": region_options}
    chosen = [o for o in region_options if o["value"] in regions]
    if chosen:
        region_box["initial_options"] = chosen
    formats = ((ANY, "Any"), (ON, "On"), (OFF, "Off"))
    changes = ((UNCHANGED, "Unchanged"), (ON, "On"), (OFF, "Off"))
    storage = (
        (KEEP, "Unchanged"),
        (KEYS, "New keys only (same vendor, region and bucket: a key rotation)"),
        (STORAGE, "New storage (vendor, region, bucket and keys below)"),
    )
    entries = ((ALL, "All entry points"), (PATTERN, "Names matching a pattern"), (LIST, "Names pasted below"))
    blocks = [
        {
            "type": "section",
            "block_id": BLOCK_INTRO,
            "text": _text(
                "*One change to many entry points.* recbot reads every target first and sends you the plan; "
                "nothing is sent to Agora before the approvers approve it.",
                "mrkdwn",
            ),
        },
        {"type": "header", "text": _text("Targets")},
        _input(BLOCK_APP, "App ID", _plain(ACTION_APP, MAX_NAME_LENGTH, app_id)),
        _input(BLOCK_REGIONS, "Regions", region_box),
        _input(BLOCK_ENTRY_KIND, "Entry points", _radio(ACTION_ENTRY_KIND, entries)),
        _input(
            BLOCK_ENTRY_TEXT,
            "Name pattern, or names one a line",
            _plain(ACTION_ENTRY_TEXT, MAX_PASTED, multiline=True),
            f"{PATTERN_RULE} Or paste names, one a line.",
        ),
        {"type": "header", "text": _text("What they have now")},
        _input(BLOCK_NOW_VENDOR, "Vendor (empty: any)", _vendor_select(ACTION_NOW_VENDOR)),
        _input(BLOCK_NOW_BUCKET, "Bucket (empty: any)", _plain(ACTION_NOW_BUCKET, MAX_BUCKET_LENGTH)),
        _input(BLOCK_NOW_MP4, "MP4 recording now", _radio(ACTION_NOW_MP4, formats)),
        _input(BLOCK_NOW_HLS, "HLS recording now", _radio(ACTION_NOW_HLS, formats)),
        {"type": "header", "text": _text("The change")},
        _input(BLOCK_MP4, "MP4 recording", _radio(ACTION_MP4, changes)),
        _input(BLOCK_HLS, "HLS recording", _radio(ACTION_HLS, changes)),
        _input(BLOCK_STORAGE, "Storage", _radio(ACTION_STORAGE, storage)),
        {**_input(BLOCK_NEW_VENDOR, "New storage: vendor", _vendor_select(ACTION_NEW_VENDOR)), "dispatch_action": True},
        region_block(None),
        _input(BLOCK_NEW_BUCKET, "New storage: bucket", _plain(ACTION_NEW_BUCKET, MAX_BUCKET_LENGTH)),
        _input(BLOCK_ACCESS_KEY, "New access key", _plain(ACTION_ACCESS_KEY, MAX_KEY_LENGTH), KEY_HINT),
        _input(BLOCK_SECRET_KEY, "New secret key", _plain(ACTION_SECRET_KEY, MAX_KEY_LENGTH), KEY_HINT),
    ]
    return {
        "type": "modal",
        "callback_id": CALLBACK_BULK,
        "title": _text("Fleet-wide change"),
        "submit": _text("Make the plan"),
        "close": _text("Close"),
        "blocks": blocks,
    }


def region_block(vendor: int | None) -> dict[str, Any]:
    """The new storage's region: the chosen vendor's regions (the action id names the vendor, so
    a region picked for another never carries over), or why there is none to choose."""
    info = CATALOG.get(Vendor(vendor)) if vendor in CATALOG else None
    if info is None or not info.has_regions:
        said = f"Region does not apply to {info.name}." if info else "Choose the new vendor to see its regions."
        return {"type": "context", "block_id": BLOCK_NEW_REGION, "elements": [_text(said)]}
    options = [_option(f"{r.name} ({r.code})", str(r.code)) for r in info.regions]
    select = {"type": "static_select", "action_id": f"{ACTION_NEW_REGION}_{info.vendor.value}", "options": options}
    return _input(BLOCK_NEW_REGION, f"New storage: {info.name} region", select)


def with_regions_of(view: dict[str, Any], vendor: int | None) -> dict[str, Any]:
    """The modal as Slack sent it, its region block for `vendor`: every other block, and what
    was typed in it (Slack keeps it by block and action id), stays as it is."""
    blocks = [region_block(vendor) if b.get("block_id") == BLOCK_NEW_REGION else b for b in view.get("blocks") or []]
    kept = ("type", "callback_id", "title", "submit", "close", "private_metadata")
    return {key: view[key] for key in kept if key in view} | {"blocks": blocks}


def chosen_vendor(view: dict[str, Any]) -> int | None:
    """The new storage's vendor chosen in a modal Slack sent."""
    return _number(_State(view.get("state")).chosen(BLOCK_NEW_VENDOR))


def change_these(scan: Scan, sealer: Sealer) -> dict[str, Any]:
    """The fleet table's button that opens the modal filled from the table (its value names the scan)."""
    return {
        "type": "actions",
        "block_id": BLOCK_CHANGE_THESE,
        "elements": [
            {
                "type": "button",
                "action_id": ACTION_CHANGE_THESE,
                "text": _text("Change these"),
                "value": sealer.signed("bulk", scan.id),
            }
        ],
    }


def read_scan_id(value: Any, sealer: Sealer) -> str | None:
    """The scan a genuine "Change these" button names, or None."""
    return sealer.read_signed("bulk", value)


class _State:
    """What a submitted modal holds, read defensively: anything malformed reads as empty."""

    def __init__(self, state: Any) -> None:
        values = state.get("values") if isinstance(state, dict) else None
        self._values = values if isinstance(values, dict) else {}

    def _action(self, block_id: str) -> dict[str, Any]:
        block = self._values.get(block_id)
        first = next(iter(block.values()), None) if isinstance(block, dict) else None
        return first if isinstance(first, dict) else {}

    def text(self, block_id: str) -> str:
        value = self._action(block_id).get("value")
        return value.strip() if isinstance(value, str) else ""

    def chosen(self, block_id: str, default: str = "") -> str:
        option = self._action(block_id).get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
        return value if isinstance(value, str) else default

    def ticked(self, block_id: str) -> tuple[str, ...]:
        options = self._action(block_id).get("selected_options")
        found = [o.get("value") for o in options if isinstance(o, dict)] if isinstance(options, list) else []
        return tuple(value for value in found if isinstance(value, str))


def _number(text: str) -> int | None:
    """ASCII digits as a number ("²" is a digit to str.isdigit, and int() refuses it); else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 4 else None


def _switch(value: str, unset: str) -> bool | None:
    return None if value in (unset, "") else value == ON


def _messages(exc: ValidationError, block_of: Callable[[tuple[Any, ...]], str]) -> dict[str, str]:
    """A ValidationError's messages by the block each concerns (none quotes the input)."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_input=False):
        errors.setdefault(block_of(tuple(error["loc"])), error["msg"].removeprefix("Value error, ")[:300])
    return errors


TARGET_BLOCKS = {
    "app_id": BLOCK_APP,
    "regions": BLOCK_REGIONS,
    "entry_points": BLOCK_ENTRY_TEXT,
    "vendor": BLOCK_NOW_VENDOR,
    "bucket": BLOCK_NOW_BUCKET,
}
STORAGE_BLOCKS = {
    "vendor": BLOCK_NEW_VENDOR,
    "region": BLOCK_NEW_REGION,
    "bucket": BLOCK_NEW_BUCKET,
    "access_key": BLOCK_ACCESS_KEY,
    "secret_key": BLOCK_SECRET_KEY,
}


def _targets(state: _State) -> tuple[TargetFilter | None, dict[str, str]]:
    kind, typed = state.chosen(BLOCK_ENTRY_KIND, ALL), state.text(BLOCK_ENTRY_TEXT)
    if kind == PATTERN and not typed:
        return None, {BLOCK_ENTRY_TEXT: f"Type the name pattern here. {PATTERN_RULE}"}
    entry_points: dict[str, Any] = {"kind": ALL}
    if kind == PATTERN:
        entry_points = {"kind": PATTERN, "pattern": typed}
    elif kind == LIST:
        entry_points = {"kind": LIST, "names": typed.split()}
    vendor = state.chosen(BLOCK_NOW_VENDOR)
    fields = {
        "app_id": state.text(BLOCK_APP),
        "regions": state.ticked(BLOCK_REGIONS),
        "entry_points": entry_points,
        "vendor": _number(vendor) if vendor else None,
        "bucket": state.text(BLOCK_NOW_BUCKET) or None,
        "mp4": _switch(state.chosen(BLOCK_NOW_MP4), ANY),
        "hls": _switch(state.chosen(BLOCK_NOW_HLS), ANY),
    }
    if not fields["regions"]:
        return None, {BLOCK_REGIONS: f"Tick at least one region. {REGION_RULE}"}
    try:
        return TargetFilter.model_validate(fields), {}
    except ValidationError as exc:
        return None, _messages(exc, lambda loc: TARGET_BLOCKS.get(str(loc[0]) if loc else "", BLOCK_APP))


def _keys_missing(state: _State) -> dict[str, str]:
    missing = {BLOCK_ACCESS_KEY: "Enter the new access key.", BLOCK_SECRET_KEY: "Enter the new secret key."}
    return {block: text for block, text in missing.items() if not state.text(block)}


def _new_storage(state: _State) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A new storage as the form of one change checks it: each problem under its own field."""
    required = {BLOCK_NEW_VENDOR: "Choose the new storage's vendor.", BLOCK_NEW_BUCKET: "Enter the new bucket."}
    errors = {block: text for block, text in required.items() if not (state.chosen(block) or state.text(block))}
    errors |= _keys_missing(state)
    vendor, region = _number(state.chosen(BLOCK_NEW_VENDOR)), _number(state.chosen(BLOCK_NEW_REGION))
    info = CATALOG.get(Vendor(vendor)) if vendor in CATALOG else None
    if info is not None and info.has_regions and region is None:
        errors[BLOCK_NEW_REGION] = f"Choose one of {info.name}'s regions."
    if errors:
        return None, errors
    fields = {
        "vendor": vendor,
        "region": region or 0,
        "bucket": state.text(BLOCK_NEW_BUCKET),
        "access_key": state.text(BLOCK_ACCESS_KEY),
        "secret_key": state.text(BLOCK_SECRET_KEY),
    }
    try:
        typed = TypedStorageConfig.model_validate(fields)
    except ValidationError as exc:
        return None, _messages(exc, lambda loc: STORAGE_BLOCKS.get(str(loc[0]) if loc else "", BLOCK_NEW_REGION))
    problems = {STORAGE_BLOCKS[field]: text[:300] for field, text in typed_problems(typed).items()}
    return (None, problems) if problems else ({"kind": STORAGE, "storage": fields}, {})


def _change(state: _State) -> tuple[Change | None, dict[str, str]]:
    kind = state.chosen(BLOCK_STORAGE, KEEP)
    storage: dict[str, Any] | None = {"kind": KEEP}
    errors: dict[str, str] = {}
    if kind == KEYS:
        errors = _keys_missing(state)
        storage = {"kind": KEYS, "access_key": state.text(BLOCK_ACCESS_KEY), "secret_key": state.text(BLOCK_SECRET_KEY)}
    elif kind == STORAGE:
        storage, errors = _new_storage(state)
    if errors or storage is None:
        return None, errors
    fields = {
        "mp4": _switch(state.chosen(BLOCK_MP4), UNCHANGED),
        "hls": _switch(state.chosen(BLOCK_HLS), UNCHANGED),
        "storage": storage,
    }
    try:
        change = Change.model_validate(fields)
    except ValidationError as exc:
        return None, _messages(exc, lambda loc: BLOCK_SECRET_KEY if "storage" in loc else BLOCK_STORAGE)
    if change.is_nothing:
        return None, {BLOCK_MP4: "Choose at least one change: MP4 on or off, HLS on or off, or a storage change."}
    return change, {}


def read_request(state: Any) -> tuple[BulkRequest | None, dict[str, str]]:
    """The BulkRequest a submitted modal asks for, or errors keyed by block id saying what is
    valid (the typed keys are never quoted)."""
    form = _State(state)
    targets, errors = _targets(form)
    change, change_errors = _change(form)
    errors |= change_errors
    if targets is None or change is None:
        return None, errors
    if isinstance(change.storage, NewKeys):
        needs = "New keys only replaces the keys of one bucket: choose the vendor and bucket its targets have now."
        vendor, bucket = targets.vendor, targets.bucket
        if vendor is None or bucket is None:
            missing = {BLOCK_NOW_VENDOR: vendor, BLOCK_NOW_BUCKET: bucket}
            return None, {block: needs for block, value in missing.items() if value is None}
        # Each key's problem under its own field (the request's own check names neither).
        problems = key_problems(vendor, bucket, change.storage)
        if problems:
            return None, {STORAGE_BLOCKS[field]: text[:300] for field, text in problems.items()}
    try:
        return BulkRequest(targets=targets, change=change), {}
    except ValidationError as exc:  # a rule of the whole request not checked field by field above
        return None, _messages(exc, lambda loc: BLOCK_ACCESS_KEY)


def refused_view(text: str) -> dict[str, Any]:
    """A modal that only says why the form cannot be used (plain text, shown as written)."""
    return {
        "type": "modal",
        "callback_id": CALLBACK_BULK,
        "title": _text("Fleet-wide change"),
        "close": _text("Close"),
        "blocks": [{"type": "section", "text": _text(f":x: {escape(text)}"[:3000], "mrkdwn")}],
    }
