"""Block Kit checks the Slack fake runs on every captured view and message:
slack_sdk.models validation, plus the limits it does not check itself."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

INPUT_ELEMENTS = {"plain_text_input", "static_select", "checkboxes", "radio_buttons", "multi_static_select"}


def _walk(node: Any, problems: list[str], where: str) -> None:
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn"):
            text = node.get("text")
            if not isinstance(text, str) or not text:
                problems.append(f"{where}: empty text object")
            elif len(text) > 3000:
                problems.append(f"{where}: text over 3000 characters")
        if "options" in node and isinstance(node["options"], list):
            if not 1 <= len(node["options"]) <= 100:
                problems.append(f"{where}: {len(node['options'])} options (1 to 100 allowed)")
            for option in node["options"]:
                if len(option.get("value", "")) > 150 or len(option.get("text", {}).get("text", "")) > 75:
                    problems.append(f"{where}: option value over 150 or text over 75 characters")
        for key in ("block_id", "action_id"):
            if key in node and not (isinstance(node[key], str) and 0 < len(node[key]) <= 255):
                problems.append(f"{where}: bad {key}")
        for key, value in node.items():
            _walk(value, problems, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, problems, f"{where}[{i}]")


def _blocks(blocks: list[dict[str, Any]], problems: list[str], limit: int) -> None:
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks (at most {limit})")
    ids = [b.get("block_id") for b in blocks if b.get("block_id")]
    if len(ids) != len(set(ids)):
        problems.append("duplicate block_id")
    for i, raw in enumerate(blocks):
        try:
            block = Block.parse(raw)
            if block is None:
                problems.append(f"blocks[{i}]: unknown block type {raw.get('type')}")
                continue
            block.validate_json()
        except Exception as exc:  # noqa: BLE001 - any formation error is the finding
            problems.append(f"blocks[{i}]: {exc}")
        if raw.get("type") == "input" and raw.get("element", {}).get("type") not in INPUT_ELEMENTS:
            problems.append(f"blocks[{i}]: input with unsupported element")
    _walk(blocks, problems, "blocks")


def view_problems(view: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    try:
        View(**view).validate_json()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"view: {exc}")
    if view.get("type") == "home":
        for field in ("title", "submit", "close"):
            if field in view:
                problems.append(f"view: a home tab has no {field}")
    else:
        title = view.get("title", {}).get("text", "")
        if not 0 < len(title) <= 24:
            problems.append("view: title must be 1 to 24 characters")
    for button in ("submit", "close"):
        if button in view and len(view[button].get("text", "")) > 24:
            problems.append(f"view: {button} over 24 characters")
    if len(view.get("private_metadata", "")) > 3000:
        problems.append("view: private_metadata over 3000 characters")
    if len(view.get("callback_id", "")) > 255:
        problems.append("view: callback_id over 255 characters")
    _blocks(view.get("blocks", []), problems, 100)
    return problems


def message_problems(message: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    blocks = message.get("blocks")
    if not message.get("text") and not blocks:
        problems.append("message has neither text nor blocks")
    if isinstance(message.get("text"), str) and len(message["text"]) > 40000:
        problems.append("message text over 40000 characters")
    if blocks is not None:
        _blocks(blocks, problems, 50)
    return problems


def errors_problems(errors: dict[str, str], view: dict[str, Any]) -> list[str]:
    """`response_action: errors` must key input blocks of the submitted view."""
    inputs = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
    return [f"error on non-input block {k}" for k in errors if k not in inputs] + [
        f"error text for {k} over 2000 characters" for k, v in errors.items() if len(v) > 2000
    ]
