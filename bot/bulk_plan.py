"""The plan of a fleet-wide change, before anyone approves it: every target the filter
names is read in the background lane of the Agora rate limit (the fleet table's scan),
then sorted into would change (with its masked diff), already as asked, and unreadable
(named, with why). The plan gives the job store its target rows, the requester a CSV
and the approval card its masked summary."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from bot.agora import AgoraError
from bot.applying import is_empty, storage_wire
from bot.bulk_change import BulkRequest, NewKeys, NewStorage, new_config, patch_for
from bot.bulk_targets import NameList
from bot.catalog import region_label, vendor_name
from bot.fleet import Fleet, csv_cell
from bot.models import FieldChange, RecordingConfig, StorageConfig, Target, describe_storage, diff, fingerprint, is_set
from bot.observation import observe
from bot.store.values import PlannedTarget

# RECBOT_BULK_MAX_TARGETS's default, once bot/settings.py carries it: a job's targets at most.
MAX_TARGETS = 2000
EVERY_REGION_ASKED = "every region asked"


class PlanError(Exception):
    """The plan could not be made; the message says why and is safe to show."""


class TooManyTargets(PlanError):
    """More targets match than one job may take."""


@dataclass(frozen=True)
class PlanRow:
    """A matched target: its configuration as read (keys only as SecretStr), what the change
    would make of it, masked, whether it is already as asked, and whether the change would
    leave it recording nothing though it records now."""

    target: Target
    seen: RecordingConfig
    changes: tuple[FieldChange, ...]
    unchanged: bool
    silenced: bool


@dataclass(frozen=True)
class Unreadable:
    """A target the plan could not read; `region` None: in every region asked."""

    name: str
    region: str | None
    why: str


@dataclass(frozen=True)
class Plan:
    """What the change would do: the matched targets in a stable order, those that could not be
    read, and how many (entry point, region) had no configuration to change."""

    request: BulkRequest
    rows: tuple[PlanRow, ...]
    unreadable: tuple[Unreadable, ...]
    absent: int = 0

    @property
    def changing(self) -> list[PlanRow]:
        return [row for row in self.rows if not row.unchanged]

    @property
    def already(self) -> int:
        return sum(row.unchanged for row in self.rows)

    @property
    def silenced(self) -> int:
        """Targets that record now and would record nothing once changed (MP4 and HLS both off):
        likely a mistake, worth a word before it is approved."""
        return sum(row.silenced for row in self.changing)

    def planned(self, digest_key: bytes) -> list[PlannedTarget]:
        """The job store's target rows: what each target was seen as, with no secret (the keys as
        a keyed digest, bot/observation.py), to tell at apply time whether it changed since."""
        return [PlannedTarget(row.target, asdict(observe(row.seen, digest_key)), row.unchanged) for row in self.rows]


def _records(config: RecordingConfig) -> bool:
    return config.mp4 or config.hls


def plan_row(target: Target, seen: RecordingConfig, request: BulkRequest) -> PlanRow:
    """One matched target, sorted: already as asked, or what would change."""
    after = new_config(seen, request.change)
    silenced = _records(seen) and not _records(after)
    return PlanRow(target, seen, tuple(diff(seen, after)), is_empty(patch_for(seen, request.change)), silenced)


def make_plan(fleet: Fleet, request: BulkRequest, max_targets: int = MAX_TARGETS) -> Plan:
    """Read every target of the filter (background lane) and sort them. PlanError if the
    app's entry points cannot be listed; TooManyTargets above `max_targets` matched."""
    wanted = request.targets
    try:
        listed = fleet.entry_points(wanted.app_id, wait_limit=None)
    except AgoraError as exc:
        raise PlanError(f"Nothing was planned: the entry points could not be listed. {exc.user_message()}") from None
    unreadable: list[Unreadable] = []
    chosen = wanted.entry_points
    if isinstance(chosen, NameList):
        known = set(listed)
        names = [name for name in chosen.names if name in known]
        unreadable += [
            Unreadable(name, None, f"App ID {wanted.app_id} has no entry point of this name (names are case-sensitive)")
            for name in chosen.names
            if name not in known
        ]
    else:
        names = [name for name in listed if chosen.selects(name)]
    rows: list[PlanRow] = []
    absent = 0
    for read in fleet.scan(wanted.app_id, names, wanted.regions, keep=False).rows:
        if read.error is not None or read.target is None:
            unreadable.append(Unreadable(read.name, read.region, read.error or "it could not be read"))
        elif read.missing or read.config is None:
            absent += 1  # no configuration in this region: nothing to change there
        elif wanted.has_now(read.config):
            rows.append(plan_row(read.target, read.config, request))
    if len(rows) > max_targets:
        raise TooManyTargets(
            f"{len(rows)} targets match, and one job takes at most {max_targets}: nothing was planned. "
            "Narrow the filter (fewer regions, a name pattern, a vendor or bucket) and ask again, "
            "or split it into several jobs."
        )
    return Plan(request, tuple(rows), tuple(unreadable), absent)


PLAN_CSV_COLUMNS = (
    "entry_point",
    "region",
    "plan",
    "mp4",
    "hls",
    "vendor",
    "storage_region",
    "bucket",
    "access_key",
    "secret_key",
    "changes",
    "why",
)


def _shown(change: FieldChange) -> str:
    return f"{change.label}: {change.before} -> {change.after}"


def to_csv(plan: Plan) -> str:
    """The whole plan, one line per target (the unreadable last), as it is now and what would
    change; keys as fingerprints, every cell guarded as the fleet's CSV is (csv_cell)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PLAN_CSV_COLUMNS)
    for row in plan.rows:
        storage = row.seen.storage_config
        shown = describe_storage(storage)
        cells: tuple[str, ...] = (
            row.target.entry_point,
            row.target.region,
            "already as asked" if row.unchanged else "change",
            "on" if row.seen.mp4 else "off",
            "on" if row.seen.hls else "off",
            shown["vendor"],
            shown["region"],
            shown["bucket"],
            fingerprint(storage.access_key if storage else None),
            "set" if storage and is_set(storage.secret_key) else "not set",
            "; ".join(map(_shown, row.changes)),
            "",
        )
        writer.writerow(csv_cell(value) for value in cells)
    for lost in plan.unreadable:
        cells = (lost.name, lost.region or EVERY_REGION_ASKED, "unreadable", *[""] * 8, lost.why)
        writer.writerow(csv_cell(value) for value in cells)
    return out.getvalue()


def _targets(count: int) -> str:
    return f"{count} target{'' if count == 1 else 's'}"


def _buckets(rows: list[PlanRow]) -> str:
    """'bucket b', or 'buckets a, b, c and 2 more': where the rows' recordings go now."""
    found = sorted({row.seen.storage_config.bucket for row in rows if row.seen.storage_config})
    if len(found) == 1:
        return f"bucket {found[0]}"
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return f"buckets {', '.join(found[:3])}{more}"


def _changed(rows: list[PlanRow], *labels: str) -> list[PlanRow]:
    return [row for row in rows if any(change.label in labels for change in row.changes)]


def summary(plan: Plan) -> list[str]:
    """The approval card's lines: the counts, then each kind of change and on how many targets,
    keys only as fingerprints, e.g. "storage keys: replaced on 612 targets (bucket rec-eu)"."""
    change, changing = plan.request.change, plan.changing
    lines = [
        f"{_targets(len(plan.rows))} matched: {len(changing)} would change, {plan.already} already as asked; "
        f"{len(plan.unreadable)} unreadable"
    ]
    for label, wanted in (("MP4", change.mp4), ("HLS", change.hls)):
        moved = _changed(changing, f"{label} recording")
        if wanted is not None and moved:
            lines.append(f"{label}: {'on' if wanted else 'off'} for {_targets(len(moved))}")
    storage = change.storage
    if isinstance(storage, NewKeys):
        moved = _changed(changing, "Access key", "Secret key")
        if moved:
            lines.append(f"storage keys: replaced on {_targets(len(moved))} ({_buckets(moved)})")
    elif isinstance(storage, NewStorage):
        moved = _changed(changing, "Vendor", "Region", "Bucket", "Access key", "Secret key")
        new = storage.storage
        if moved:
            lines.append(
                f"storage: set to {vendor_name(new.vendor)}, region {region_label(new.vendor, new.region)}, "
                f"bucket {new.bucket}, access key {fingerprint(new.access_key)} on {_targets(len(moved))}"
            )
    return lines


def destinations(plan: Plan) -> list[StorageConfig]:
    """Each distinct storage the changing targets would write to with new keys: the storage
    check runs once per destination, as for one change."""
    found: dict[str, StorageConfig] = {}
    for row in plan.changing:
        storage = patch_for(row.seen, plan.request.change).storage_config
        if storage is not None:
            found.setdefault(json.dumps(storage_wire(storage), sort_keys=True), storage)
    return list(found.values())
