"""Which targets a fleet-wide change is for: an App ID, regions, entry points (all, a name
pattern, or a pasted list) and what they have now; every refusal says what is valid."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.catalog import API_REGIONS, known_vendor, vendor_choices, vendor_name
from bot.models import MAX_BUCKET_LENGTH, MAX_NAME_LENGTH, RecordingConfig, check_path_segment

NAME_RULE = (
    f"Entry point names are 1-{MAX_NAME_LENGTH} characters with no spaces or control characters, "
    "and not '.' or '..' (case-sensitive)."
)
PATTERN_RULE = (
    f"A name pattern is 1-{MAX_NAME_LENGTH} characters with no spaces or control characters, "
    "where * matches any run of characters and ? any one character, case-sensitive: e.g. live-* or eu-??."
)
REGION_RULE = f"Regions are one or more of {', '.join(API_REGIONS)}."
BUCKET_RULE = f"A bucket is 1-{MAX_BUCKET_LENGTH} characters with no spaces or control characters."


def _refused(exc: ValueError, rule: str) -> ValueError:
    """The reason a value was refused, followed by what is valid."""
    return ValueError(f"{str(exc).rstrip('.')}. {rule}")


class StrictModel(BaseModel):
    """Frozen, no unknown fields, and (hide_input_in_errors) no ValidationError carries a key someone typed."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class AllEntryPoints(StrictModel):
    """Every entry point of the app."""

    kind: Literal["all"] = "all"

    def selects(self, name: str) -> bool:
        return True

    def describe(self) -> str:
        return "all entry points"


class NamePattern(StrictModel):
    """The entry points whose whole name matches a glob of * and ? (nothing else is special)."""

    kind: Literal["pattern"] = "pattern"
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            return check_path_segment(v, "The name pattern")
        except ValueError as exc:
            raise _refused(exc, PATTERN_RULE) from None

    def selects(self, name: str) -> bool:
        wild = {"*": ".*", "?": "."}
        regex = "".join(wild.get(ch) or re.escape(ch) for ch in self.pattern)
        return re.fullmatch(regex, name, re.DOTALL) is not None

    def describe(self) -> str:
        return f"entry points named {self.pattern}"


class NameList(StrictModel):
    """Entry points named one by one, as pasted: each must be a name recbot can address."""

    kind: Literal["list"] = "list"
    names: tuple[str, ...]

    @field_validator("names")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(f"Paste at least one entry point name, one a line. {NAME_RULE}")
        for number, name in enumerate(v, 1):
            try:
                check_path_segment(name, f"Entry point {number} ({name[:40]!r})")
            except ValueError as exc:
                raise _refused(exc, NAME_RULE) from None
        return tuple(dict.fromkeys(v))  # each once, in the order pasted

    @classmethod
    def pasted(cls, text: str) -> NameList:
        """The names in pasted text: a name has no spaces, so any run of them separates two."""
        return cls(names=tuple(text.split()))

    def selects(self, name: str) -> bool:
        return name in self.names

    def describe(self) -> str:
        return f"{len(self.names)} entry point(s) named one by one"


EntryPoints = Annotated[AllEntryPoints | NamePattern | NameList, Field(discriminator="kind")]


class TargetFilter(StrictModel):
    """Which targets: an App ID, regions, entry points, and what they have now (None: any)."""

    app_id: str
    regions: tuple[str, ...]
    entry_points: EntryPoints = AllEntryPoints()
    vendor: int | None = None
    bucket: str | None = None
    mp4: bool | None = None
    hls: bool | None = None

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, v: str) -> str:
        return check_path_segment(v, "App ID")

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = ", ".join(repr(region[:16]) for region in v if region not in API_REGIONS)
        if unknown:
            raise ValueError(f"Not a region: {unknown}. {REGION_RULE}")
        if not v:
            raise ValueError(REGION_RULE)
        return tuple(region for region in API_REGIONS if region in v)  # each once, in the catalog's order

    @field_validator("vendor")
    @classmethod
    def _vendor(cls, v: int | None) -> int | None:
        if v is not None and known_vendor(v) is None:
            raise ValueError(f"Vendor must be one of: {vendor_choices()}")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v or len(v) > MAX_BUCKET_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in v):
            raise ValueError(BUCKET_RULE)
        return v

    def has_now(self, config: RecordingConfig) -> bool:
        """Whether `config` has what the filter asks it to have now."""
        storage = config.storage_config
        if self.vendor is not None and (storage is None or storage.vendor != self.vendor):
            return False
        if self.bucket is not None and (storage is None or storage.bucket != self.bucket):
            return False
        return (self.mp4 is None or config.mp4 == self.mp4) and (self.hls is None or config.hls == self.hls)

    def describe(self) -> str:
        """The filter in a line, for the plan's card."""
        parts = [f"App ID {self.app_id}", f"regions {', '.join(self.regions)}", self.entry_points.describe()]
        if self.vendor is not None:
            parts.append(f"vendor {vendor_name(self.vendor)}")
        if self.bucket is not None:
            parts.append(f"bucket {self.bucket}")
        for label, on in (("MP4", self.mp4), ("HLS", self.hls)):
            if on is not None:
                parts.append(f"{label} {'on' if on else 'off'} now")
        return ", ".join(parts)
