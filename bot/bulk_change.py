"""What a fleet-wide change does to each target (MP4, HLS, new keys only, or a new storage),
checked as one change's form checks it, and the request that pairs it with its targets;
what it makes of one target's configuration, the PATCH a job's worker sends. Keys are
SecretStr: no repr, log or error shows them, and what is stored in the clear holds only
their fingerprints."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator

from bot.applying import expected_after, storage_wire
from bot.bulk_targets import StrictModel, TargetFilter
from bot.catalog import vendor_info
from bot.models import (
    FormatConfig,
    RecordingConfig,
    StorageConfig,
    TypedStorageConfig,
    fingerprint,
    typed_problems,
)


class KeepStorage(StrictModel):
    """Storage left as each target has it."""

    kind: Literal["unchanged"] = "unchanged"

    def applied_to(self, current: StorageConfig | None) -> StorageConfig | None:
        return current


class NewKeys(StrictModel):
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


class NewStorage(StrictModel):
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


def stored_keys(sealed_keys: str | None) -> list[str]:
    """The keys `Change.stored` gave to seal, from their unsealed text: access and secret key,
    none when it gave none; ValueError if the text is not such a list."""
    if sealed_keys is None:
        return []
    keys = json.loads(sealed_keys)
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ValueError("not a list of keys")
    return keys


class Change(StrictModel):
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
                access, secret = stored_keys(sealed_keys)
                storage |= {"access_key": access, "secret_key": secret}
                if storage["kind"] == "storage":
                    fields = ("vendor", "region", "bucket", "access_key", "secret_key")
                    storage = {"kind": "storage", "storage": {name: storage[name] for name in fields}}
            return cls.model_validate({"mp4": public["mp4"], "hls": public["hls"], "storage": storage})
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise ValueError(f"not a stored change ({type(exc).__name__})") from None


def key_problems(vendor: int, bucket: str, keys: NewKeys) -> dict[str, str]:
    """What the vendor's rules say of new keys for its bucket, by field (access_key, secret_key):
    the checks of one change's form (TypedStorageConfig, then typed_problems), keeping only those of the keys."""
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
        # reversed: each field's first error is the one kept
        return {str(e["loc"][0]): e["msg"].removeprefix("Value error, ") for e in reversed(found)}
    problems = typed_problems(typed)
    return {field: problems[field] for field in ("access_key", "secret_key") if field in problems}


class BulkRequest(StrictModel):
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
            problems = key_problems(self.targets.vendor, self.targets.bucket, keys)
            if problems:
                raise ValueError(" ".join(dict.fromkeys(problems.values())))
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
