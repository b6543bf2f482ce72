"""`/recording list`: the fleet table, a page at a time, with Get and Change on each row."""

from __future__ import annotations

from collections.abc import Mapping
from math import ceil
from typing import Any

from bot.fleet import FleetRow, Scan
from bot.seal import Sealer
from bot.store.values import SwitchRow
from handlers.blocks.messages import escape
from handlers.blocks.switch import state_text

PAGE_SIZE = 15  # rows per message: 15 sections plus header and buttons stay far inside Slack's 50 blocks
BLOCK_HEADER = "fleet_header"
BLOCK_PAGES = "fleet_pages"
ACTION_PAGE = "fleet_page"
ACTION_ROW = "fleet_row"
ACTION_CSV = "fleet_csv"
GET, SET = "get", "set"


def shown_rows(scan: Scan) -> list[FleetRow]:
    """The rows worth a line: with every region asked, pairs Agora has no configuration for are only counted."""
    if len(scan.regions) == 1:
        return list(scan.rows)
    return [row for row in scan.rows if not row.missing]


def page_count(scan: Scan) -> int:
    return max(1, ceil(len(shown_rows(scan)) / PAGE_SIZE))


def _value(sealer: Sealer, *parts: str) -> str:
    return sealer.signed("fleet", ".".join(parts))


def read_value(value: Any, sealer: Sealer, parts: int) -> list[str] | None:
    """The parts of a genuine fleet button or option value, or None."""
    text = sealer.read_signed("fleet", value)
    fields = text.split(".") if text is not None else []
    return fields if len(fields) == parts else None


def progress(app_id: str, names: int, regions: tuple[str, ...]) -> str:
    shown = escape(app_id)
    return f":hourglass_flowing_sand: Reading {names} entry point(s) x {len(regions)} region(s) of App ID `{shown}`…"


def _row_text(row: FleetRow) -> str:
    head = f"*`{escape(row.name)}`* ({row.region})"
    if row.error:
        return f"{head} :x: read failed: {escape(row.error)}"
    if row.missing or row.shown is None:
        return f"{head} no configuration in this region"
    shown = row.shown
    storage = shown.described()
    line = (
        f"{head} · MP4 {'on' if shown.mp4 else 'off'} · HLS {'on' if shown.hls else 'off'} · "
        f"{storage['vendor']}, {storage['region']} · bucket `{escape(storage['bucket'])}` · "
        f"key {shown.access_key_fingerprint}"
    )
    warnings = row.warnings()
    return line + "".join(f"\n:warning: {escape(w)}" for w in warnings)


def page(
    scan: Scan, number: int, sealer: Sealer, switches: Mapping[str, SwitchRow] | None = None
) -> list[dict[str, Any]]:
    """Page `number` (from 0) of a scan, with Previous/Next where there are more; with
    `switches` (by entry point), each configured row says what recbot knows of its switch."""
    rows = shown_rows(scan)
    pages = page_count(scan)
    number = min(max(0, number), pages - 1)
    missing = sum(row.missing for row in scan.rows)
    warned = sum(bool(row.warnings()) for row in scan.rows)
    names = len({row.name for row in scan.rows})
    summary = f"{names} entry point(s) x {len(scan.regions)} region(s) ({', '.join(scan.regions)})"
    if warned:
        summary += f", {warned} with warnings"
    if missing and len(scan.regions) > 1:
        summary += f", {missing} pair(s) with no configuration (not shown)"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": BLOCK_HEADER,
            "text": {
                "type": "mrkdwn",
                "text": f"*Recording configurations of App ID `{escape(scan.app_id)}`*: {summary}. "
                f"Page {number + 1} of {pages}.",
            },
        }
    ]
    if not rows:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No entry points to show."}})
    start = number * PAGE_SIZE
    for index, row in enumerate(rows[start : start + PAGE_SIZE], start=start):
        text = _row_text(row)
        if switches is not None and row.shown is not None:
            text += f"\nrecording: {state_text(switches.get(row.name))}"
        block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
        if row.target is not None:
            block["accessory"] = {
                "type": "overflow",
                "action_id": ACTION_ROW,
                "options": [
                    {"text": {"type": "plain_text", "text": "Get"}, "value": _value(sealer, GET, scan.id, str(index))},
                    {
                        "text": {"type": "plain_text", "text": "Change"},
                        "value": _value(sealer, SET, scan.id, str(index)),
                    },
                ],
            }
        blocks.append(block)
    buttons = [
        {
            "type": "button",
            "action_id": ACTION_CSV,
            "text": {"type": "plain_text", "text": "Download CSV"},
            "value": _value(sealer, scan.id),
        }
    ]
    if number > 0:
        buttons.append(_page_button("Previous", scan, number - 1, sealer))
    if number < pages - 1:
        buttons.append(_page_button("Next", scan, number + 1, sealer))
    blocks.append({"type": "actions", "block_id": BLOCK_PAGES, "elements": buttons})
    return blocks


def _page_button(text: str, scan: Scan, number: int, sealer: Sealer) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"{ACTION_PAGE}_{text.lower()}",
        "text": {"type": "plain_text", "text": text},
        "value": _value(sealer, scan.id, str(number)),
    }


def page_text(scan: Scan) -> str:
    return f"Recording configurations of App ID {scan.app_id}"
