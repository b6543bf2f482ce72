"""The rows of a fleet table, and the form a `/recording list` table is kept in for any
instance to page through: what the table shows of each configuration and nothing more,
so no key is ever kept (the access key as its fingerprint, the secret key as set or not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from bot.catalog import geography_mismatch
from bot.models import RecordingConfig, StorageConfig, Target, describe_storage, fingerprint, is_set


class _Kept(BaseModel):
    # Strict and closed: a kept row that is not exactly this shape is damaged, not guessed at.
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class ShownStorage(_Kept):
    """Where recordings go, by the codes Agora answered: no key."""

    vendor: int
    region: int
    bucket: str

    def described(self) -> dict[str, str]:
        """The displayable fields, as describe_storage shows a storage configuration."""
        keyless = StorageConfig.model_construct(vendor=self.vendor, region=self.region, bucket=self.bucket)
        return describe_storage(keyless)


class Shown(_Kept):
    """What the fleet table, its CSV and its warnings show of a configuration, and all a kept table holds of it."""

    mp4: bool
    hls: bool
    storage: ShownStorage | None
    access_key_fingerprint: str
    secret_key_set: bool

    @classmethod
    def of(cls, config: RecordingConfig) -> Shown:
        storage = config.storage_config
        return cls(
            mp4=config.mp4,
            hls=config.hls,
            storage=ShownStorage(vendor=int(storage.vendor), region=int(storage.region), bucket=storage.bucket)
            if storage
            else None,
            access_key_fingerprint=fingerprint(storage.access_key if storage else None),
            secret_key_set=bool(storage and is_set(storage.secret_key)),
        )

    def described(self) -> dict[str, str]:
        return self.storage.described() if self.storage else describe_storage(None)


@dataclass(frozen=True)
class FleetRow:
    """One entry point in one region: its config, or why there is none."""

    name: str
    region: str
    target: Target | None  # None: a name recbot cannot address as one path segment
    config: RecordingConfig | None = None  # the live read; a table restored from the database has none
    missing: bool = False  # Agora has no configuration for it in this region
    error: str | None = None
    shown: Shown | None = None  # what the table shows of the config: made from it, or restored

    def __post_init__(self) -> None:
        if self.config is not None and self.shown is None:
            object.__setattr__(self, "shown", Shown.of(self.config))

    def warnings(self) -> list[str]:
        if self.error:
            return [f"read failed: {self.error}"]
        if self.shown is None or self.missing:
            return []
        storage = self.shown.storage
        if storage is None:
            return ["no storage configured"] if (self.shown.mp4 or self.shown.hls) else []
        if geography_mismatch(self.region, storage.vendor, storage.region):
            return [f"bucket region outside {self.region}"]
        return []


@dataclass(frozen=True)
class Scan:
    id: str
    app_id: str
    regions: tuple[str, ...]
    rows: tuple[FleetRow, ...]
    at: float  # when it was made, on its Fleet's clock


class KeptRow(_Kept):
    """A row as the database keeps it (plain JSON): its target is (the scan's App ID, name,
    region) when `addressable`."""

    name: str
    region: str
    addressable: bool
    missing: bool
    error: str | None
    shown: Shown | None


_KEPT_ROWS = TypeAdapter(list[KeptRow])
_KEPT_REGIONS = TypeAdapter(list[str])


def kept_rows(scan: Scan) -> list[dict[str, Any]]:
    """The scan's rows as the database keeps them: JSON values with no key."""
    return [
        KeptRow(
            name=row.name,
            region=row.region,
            addressable=row.target is not None,
            missing=row.missing,
            error=row.error,
            shown=row.shown,
        ).model_dump()
        for row in scan.rows
    ]


def restored(scan_id: str, app_id: str, regions: Any, rows: Any, at: float) -> Scan | None:
    """A kept scan as it was shown (its live configs are not kept); None if any of it is
    damaged: its reader is told the list expired, never shown a guess."""
    try:
        kept = _KEPT_ROWS.validate_python(rows)
        restored_rows = tuple(
            FleetRow(
                row.name,
                row.region,
                Target(app_id=app_id, entry_point=row.name, region=row.region) if row.addressable else None,
                missing=row.missing,
                error=row.error,
                shown=row.shown,
            )
            for row in kept
        )
        return Scan(scan_id, app_id, tuple(_KEPT_REGIONS.validate_python(regions)), restored_rows, at)
    except ValidationError:
        return None
