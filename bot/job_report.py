"""What a fleet-wide job did, safe to show: the outcome CSV of every target for its requester,
and the change as the audit records it, both from what the job row keeps in the clear (keys
only as fingerprints; the keys themselves are sealed apart and never read here)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from bot.catalog import region_label, vendor_name
from bot.fleet import csv_cell
from bot.models import FieldChange
from bot.store.values import JobTarget

OUTCOME_CSV_COLUMNS = ("entry point", "region", "outcome", "detail")
AS_FOUND = "as found"  # a job's change does not know what each target had before: its plan did


def outcome_csv(targets: Iterable[JobTarget]) -> str:
    """One line per target in the plan's order: where, how it ended, and why; every cell guarded
    so a spreadsheet runs none as a formula (an entry point is anyone's text)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(OUTCOME_CSV_COLUMNS)
    for t in targets:
        cells = (t.target.entry_point, t.target.region, t.state.replace("_", " "), t.detail or "")
        writer.writerow(csv_cell(value) for value in cells)
    return out.getvalue()


def _on_off(value: Any) -> str:
    return "on" if value else "off"


def asked_changes(public: dict[str, Any]) -> list[FieldChange]:
    """The job's change as audit lines, from its stored public JSON (Change.stored): formats, and
    storage with the access key as its fingerprint and the secret key as "set"."""
    lines = []
    for key, label in (("mp4", "MP4 recording"), ("hls", "HLS recording")):
        if isinstance(public.get(key), bool):
            lines.append(FieldChange(label, AS_FOUND, _on_off(public[key])))
    storage = public.get("storage")
    storage = storage if isinstance(storage, dict) else {}
    if storage.get("kind") == "storage":
        vendor, region = storage.get("vendor"), storage.get("region")
        if isinstance(vendor, int) and isinstance(region, int):
            lines.append(FieldChange("Vendor", AS_FOUND, vendor_name(vendor)))
            lines.append(FieldChange("Region", AS_FOUND, region_label(vendor, region)))
        lines.append(FieldChange("Bucket", AS_FOUND, str(storage.get("bucket", ""))))
    if storage.get("kind") in ("keys", "storage"):
        lines.append(FieldChange("Access key", AS_FOUND, str(storage.get("access_key", ""))))
        lines.append(FieldChange("Secret key", AS_FOUND, "set"))
    return lines
