"""A fleet-wide change as a person asks for it: which targets (a filter: App ID, regions,
entry points, what they have now) and what to change in each (MP4, HLS, storage keys or
storage), checked as one change's form is; and what the change makes of one target's
configuration, the PATCH a job's worker sends. Keys are SecretStr: no repr, log or error
shows them, and what is stored in the clear holds only their fingerprints."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from bot.applying import expected_after, storage_wire
from bot.catalog import API_REGIONS, known_vendor, vendor_choices, vendor_info, vendor_name
from bot.models import (
    MAX_BUCKET_LENGTH,
    MAX_NAME_LENGTH,
    FormatConfig,
    RecordingConfig,
    StorageConfig,
    TypedStorageConfig,
    check_path_segment,
    fingerprint,
    typed_problems,
)

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


class _Strict(BaseModel):
    # hide_input_in_errors: a ValidationError's text must never carry a key someone typed.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class AllEntryPoints(_Strict):
    """Every entry point of the app."""

    kind: Literal["all"] = "all"

    def selects(self, name: str) -> bool:
        return True

    def describe(self) -> str:
        return "all entry points"


class NamePattern(_Strict):
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


class NameList(_Strict):
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


class TargetFilter(_Strict):
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


class KeepStorage(_Strict):
    """Storage left as each target has it."""

    kind: Literal["unchanged"] = "unchanged"

    def applied_to(self, current: StorageConfig | None) -> StorageConfig | None:
        return current


class NewKeys(_Strict):
    """New keys only: each target keeps its vendor, region and bucket (the rotation case)."""

    kind: Literal["keys"] = "keys"
    access_key: SecretStr
    secret_key: SecretStr

    @model_validator(mode="after")
    def _two_keys(self) -> NewKeys:
        if self.access_key.get_secret_value() == self.secret_key.get_secret_value():
            raise ValueError("The access key and the secret key are the same: paste each in its own field.")
        return self

    def applied_to(self, current: StorageConfig | None) -> StorageConfig:
        if current is None:
            raise ValueError("new keys replace those of a storage; this configuration has none")
        return StorageConfig(
            vendor=current.vendor,
            region=current.region,
            bucket=current.bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
        )


class NewStorage(_Strict):
    """A new storage for every target: vendor, region, bucket and keys, as one change's form takes them."""

    kind: Literal["storage"] = "storage"
    storage: TypedStorageConfig

    @model_validator(mode="after")
    def _as_the_form(self) -> NewStorage:
        storage = self.storage
        if storage.access_key is None or storage.secret_key is None:
            raise ValueError("A new storage needs both keys: the access key and the secret key.")
        if storage.access_key.get_secret_value() == storage.secret_key.get_secret_value():
            raise ValueError("The access key and the secret key are the same: paste each in its own field.")
        problems = typed_problems(storage)
        if problems:
            raise ValueError(" ".join(dict.fromkeys(problems.values())))
        return self

    def applied_to(self, current: StorageConfig | None) -> StorageConfig:
        return self.storage


StorageChange = Annotated[KeepStorage | NewKeys | NewStorage, Field(discriminator="kind")]


class Change(_Strict):
    """What to change in every target: MP4 and HLS on or off (None: unchanged), and storage."""

    mp4: bool | None = None
    hls: bool | None = None
    storage: StorageChange = KeepStorage()

    @property
    def is_nothing(self) -> bool:
        return self.mp4 is None and self.hls is None and isinstance(self.storage, KeepStorage)

    def stored(self) -> tuple[dict[str, Any], str | None]:
        """The change as a job row keeps it: plain JSON with keys as fingerprints, and the keys
        alone as JSON text to seal (None: the change has none)."""
        public: dict[str, Any] = {"mp4": self.mp4, "hls": self.hls, "storage": {"kind": self.storage.kind}}
        storage = self.storage
        if isinstance(storage, NewStorage):
            access, secret = storage.storage.access_key, storage.storage.secret_key
            public["storage"] |= {
                "vendor": storage.storage.vendor,
                "region": storage.storage.region,
                "bucket": storage.storage.bucket,
            }
        elif isinstance(storage, NewKeys):
            access, secret = storage.access_key, storage.secret_key
        else:
            return public, None
        assert access is not None and secret is not None  # NewStorage requires both
        public["storage"] |= {"access_key": fingerprint(access), "secret_key": "set"}
        return public, json.dumps([access.get_secret_value(), secret.get_secret_value()])

    @classmethod
    def from_stored(cls, public: dict[str, Any], sealed_keys: str | None) -> Change:
        """The change `stored` gave, from its plain JSON and its unsealed keys; ValueError if
        they do not make one."""
        try:
            storage = dict(public["storage"])
            if storage["kind"] != "unchanged":
                access, secret = json.loads(sealed_keys or "null")
                storage |= {"access_key": access, "secret_key": secret}
                if storage["kind"] == "storage":
                    fields = ("vendor", "region", "bucket", "access_key", "secret_key")
                    storage = {"kind": "storage", "storage": {name: storage[name] for name in fields}}
            return cls.model_validate({"mp4": public["mp4"], "hls": public["hls"], "storage": storage})
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise ValueError(f"not a stored change ({type(exc).__name__})") from None


def _key_problems(vendor: int, bucket: str, keys: NewKeys) -> list[str]:
    """What the vendor's rules say of new keys for its bucket: the checks of one change's
    form (TypedStorageConfig, then typed_problems), keeping only those of the keys."""
    info = vendor_info(vendor)
    try:
        typed = TypedStorageConfig(
            vendor=vendor,
            region=info.regions[0].code if info.has_regions else 0,  # any of the vendor's: only keys are checked
            bucket=bucket,
            access_key=keys.access_key,
            secret_key=keys.secret_key,
        )
    except ValidationError as exc:
        found = [e for e in exc.errors(include_input=False) if e["loc"] and e["loc"][0] in ("access_key", "secret_key")]
        return [e["msg"].removeprefix("Value error, ") for e in found]
    problems = typed_problems(typed)
    return list(dict.fromkeys(problems[field] for field in ("access_key", "secret_key") if field in problems))


class BulkRequest(_Strict):
    """A fleet-wide change as asked: the targets and the change."""

    targets: TargetFilter
    change: Change

    @model_validator(mode="after")
    def _coherent(self) -> BulkRequest:
        if self.change.is_nothing:
            raise ValueError("Choose at least one change: MP4, HLS or storage.")
        keys = self.change.storage
        if isinstance(keys, NewKeys):
            if self.targets.vendor is None or self.targets.bucket is None:
                raise ValueError(
                    "New keys only replaces the keys of one bucket: choose its vendor and bucket "
                    "under what the targets have now."
                )
            problems = _key_problems(self.targets.vendor, self.targets.bucket, keys)
            if problems:
                raise ValueError(" ".join(problems))
        return self


def patch_for(seen: RecordingConfig, change: Change) -> RecordingConfig:
    """What to PATCH onto a target read as `seen`: only what differs, as for one change
    (a formats-only change carries no storage, so no keys)."""
    patch = RecordingConfig()
    if change.mp4 is not None and change.mp4 != seen.mp4:
        patch.mp4_config = FormatConfig(enabled=change.mp4)
    if change.hls is not None and change.hls != seen.hls:
        patch.hls_config = FormatConfig(enabled=change.hls)
    storage = change.storage.applied_to(seen.storage_config)
    if storage is not None and storage_wire(storage) != storage_wire(seen.storage_config):
        patch.storage_config = storage
    return patch


def new_config(seen: RecordingConfig, change: Change) -> RecordingConfig:
    """The configuration a target read as `seen` has once the change is applied (what the
    read-back must show): `patch_for` applied as bot/applying.py's expected_after does."""
    return expected_after(seen, patch_for(seen, change))
