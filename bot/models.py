"""Payload shapes of the Agora recording API and the bot's own domain values.

Pydantic models are the single source of truth: the client sends and parses
them, the handlers render them, validation errors come from them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from bot.catalog import API_REGIONS, known_vendor, region_label, vendor_choices, vendor_info, vendor_name
from bot.naming import NameRule

MAX_NAME_LENGTH = 128
MAX_BUCKET_LENGTH = 255
REVEAL = {"reveal_secrets": True}
FINGERPRINT_MIN_LENGTH = 8  # shorter keys show nothing of themselves: 4 characters would be half


def fingerprint(value: SecretStr | str | None) -> str:
    """Show a credential as "..." and its last 4 characters; a key shorter than
    FINGERPRINT_MIN_LENGTH as "...(short)", since 4 characters would give too much of it away."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw:
        return "not set"
    return f"...{raw[-4:]}" if len(raw) >= FINGERPRINT_MIN_LENGTH else "...(short)"


def _has_space_or_control(text: str) -> bool:
    """Whether `text` holds a space (any Unicode white space) or a character of category C (control,
    format such as U+200B or U+202E, surrogate, private use, unassigned). The same set as the
    printable characters' complement plus the ASCII space, tested in C rather than per character
    in Python (checked on every code point by tests/test_catalog_and_models.py)."""
    return " " in text or not text.isprintable()


def check_path_segment(value: str, what: str) -> str:
    """Refuse what could change which URL a path parameter reaches."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value in (".", ".."):
        raise ValueError(f"{what} must not be '.' or '..'")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be at most {MAX_NAME_LENGTH} characters")
    if _has_space_or_control(value):
        raise ValueError(f"{what} must not contain spaces or control characters")
    return value


# The region of what concerns an entry point as a whole: its custom recording switch.
EVERY_REGION = "*"


class Target(BaseModel):
    """Which entry point's configuration: (App ID, entry point, API region)."""

    model_config = ConfigDict(frozen=True)

    app_id: str
    entry_point: str
    region: str

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, v: str) -> str:
        return check_path_segment(v, "App ID")

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, v: str) -> str:
        return check_path_segment(v, "Entry point")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in API_REGIONS:
            raise ValueError(f"Region must be one of {', '.join(API_REGIONS)}, not {v[:16]!r}")
        return v

    @classmethod
    def every_region(cls, app_id: str, entry_point: str) -> Target:
        """An entry point as a whole (its recording switch has no region); never a configuration's URL."""
        check_path_segment(app_id, "App ID")
        check_path_segment(entry_point, "Entry point")
        return cls.model_construct(app_id=app_id, entry_point=entry_point, region=EVERY_REGION)

    @property
    def is_every_region(self) -> bool:
        return self.region == EVERY_REGION

    def describe(self) -> str:
        region = "every region" if self.is_every_region else self.region
        return f"{self.entry_point} ({region}, app {self.app_id})"


class _CamelModel(BaseModel):
    # hide_input_in_errors: a ValidationError's text must never carry a key someone typed.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )


class FormatConfig(_CamelModel):
    enabled: bool = False


class StorageConfig(_CamelModel):
    """Where recordings go, as Agora holds it. Whatever vendor code, region and bucket Agora answers
    are kept, to be shown (escaped, never connected to): a configuration set by hand in Agora Console
    must still be read, shown and watched. What a person types is a TypedStorageConfig, which keeps
    every rule. Keys are SecretStr: no repr, log or error shows them."""

    vendor: int
    region: int = 0
    bucket: str = ""
    # Optional because a read may leave them out (the API document shows them in
    # GET answers, but a deployment may mask them); the form requires both on a change.
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None

    @field_validator("vendor", mode="before")
    @classmethod
    def _vendor_code(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"Vendor must be one of: {vendor_choices()}")
        return v

    @model_validator(mode="after")
    def _region_less_vendor(self) -> StorageConfig:
        info = known_vendor(self.vendor)
        if info is not None and not info.has_regions:
            self.region = 0  # Agora ignores region for this vendor and expects 0
        return self

    @field_serializer("access_key", "secret_key")
    def _keys(self, v: SecretStr | None, info: SerializationInfo) -> str | None:
        revealed = isinstance(info.context, dict) and info.context.get("reveal_secrets")
        return v if v is None else v.get_secret_value() if revealed else str(v)


class TypedStorageConfig(StorageConfig):
    """Storage as a person types it: a vendor and a region of the catalog, a bucket and keys without
    spaces or control characters. Each vendor's naming rules (typed_problems) are checked after."""

    bucket: str = Field(min_length=1)
    access_key: SecretStr | None = Field(default=None, min_length=1)
    secret_key: SecretStr | None = Field(default=None, min_length=1)

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, v: int) -> int:
        if known_vendor(v) is None:
            raise ValueError(f"Vendor must be one of: {vendor_choices()}")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if _has_space_or_control(v):
            raise ValueError("Bucket must not contain spaces or control characters")
        return v

    @field_validator("access_key", "secret_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and _has_space_or_control(v.get_secret_value()):
            raise ValueError("Keys must not contain spaces or control characters; paste the key alone")
        return v

    @model_validator(mode="after")
    def _region_belongs_to_vendor(self) -> TypedStorageConfig:
        info = vendor_info(self.vendor)
        if info.has_regions and info.region(self.region) is None:
            codes = ", ".join(f"{r.code} {r.name}" for r in info.regions)
            raise ValueError(f"Region {self.region} is not one of {info.name}'s: {codes}")
        return self


StorageField = Literal["bucket", "access_key", "secret_key"]


def typed_problems(storage: StorageConfig) -> dict[StorageField, str]:
    """Each field whose value the vendor would not accept, with what is valid. Applied to
    what a person types and to what the storage check connects with (the bucket and an
    Azure account name become part of the URL); configurations read from Agora are not
    held to it, so a legacy bucket name is still shown."""
    info = known_vendor(storage.vendor)
    if info is None:  # the form refuses it first; nothing typed reaches an endpoint recbot cannot name
        return {"bucket": f"Vendor must be one of: {vendor_choices()}"}
    checks: tuple[tuple[StorageField, NameRule, str | None], ...] = (
        ("bucket", info.bucket_rule, storage.bucket),
        ("access_key", info.access_key_rule, _reveal(storage.access_key)),
        ("secret_key", info.secret_key_rule, _reveal(storage.secret_key)),
    )
    return {field: rule.explain(info.name) for field, rule, value in checks if not value or not rule.allows(value)}


class RecordingConfig(_CamelModel):
    """The custom recording configuration of one entry point (GET and PATCH body)."""

    mp4_config: FormatConfig | None = None
    hls_config: FormatConfig | None = None
    storage_config: StorageConfig | None = None

    @property
    def mp4(self) -> bool:
        return bool(self.mp4_config and self.mp4_config.enabled)

    @property
    def hls(self) -> bool:
        return bool(self.hls_config and self.hls_config.enabled)

    def wire_json(self) -> dict[str, Any]:
        """The body Agora expects, secrets included: only for the HTTP request."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, context=REVEAL)

    def digest(self, key: bytes) -> str:
        """Keyed hash of the whole config, secrets included, to spot any change
        without keeping or revealing the values (HMAC, so it cannot be guessed)."""
        canonical = json.dumps(self.wire_json(), sort_keys=True, separators=(",", ":"))
        return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class FieldChange:
    """One line of a diff, already safe to show: keys appear as fingerprints."""

    label: str
    before: str
    after: str


def _reveal(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def is_set(value: SecretStr | None) -> bool:
    return bool(value and value.get_secret_value())


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def describe_storage(storage: StorageConfig | None) -> dict[str, str]:
    """The displayable fields of a storage config, keys masked."""
    if storage is None:
        return {"vendor": "not set", "region": "not set", "bucket": "not set"}
    return {
        "vendor": vendor_name(storage.vendor),
        "region": region_label(storage.vendor, storage.region),
        "bucket": storage.bucket or "not set",
    }


def diff(before: RecordingConfig, after: RecordingConfig) -> list[FieldChange]:
    """Field-by-field changes from `before` to `after`, safe to display."""
    changes = []
    if before.mp4 != after.mp4:
        changes.append(FieldChange("MP4 recording", _on_off(before.mp4), _on_off(after.mp4)))
    if before.hls != after.hls:
        changes.append(FieldChange("HLS recording", _on_off(before.hls), _on_off(after.hls)))
    old, new = before.storage_config, after.storage_config
    if new is not None:
        old_view, new_view = describe_storage(old), describe_storage(new)
        for field in ("vendor", "region", "bucket"):
            if old_view[field] != new_view[field]:
                changes.append(FieldChange(field.capitalize(), old_view[field], new_view[field]))
        old_access, new_access = _reveal(old.access_key if old else None), _reveal(new.access_key)
        if old_access != new_access:
            changes.append(FieldChange("Access key", fingerprint(old_access), fingerprint(new_access)))
        old_secret, new_secret = _reveal(old.secret_key if old else None), _reveal(new.secret_key)
        if old_secret != new_secret:
            changes.append(
                FieldChange("Secret key", "set" if old_secret else "not set", "changed" if new_secret else "not set")
            )
    return changes
