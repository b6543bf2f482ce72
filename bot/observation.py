"""What recbot remembers of a configuration it read or applied: the fields
that are safe to keep and show, and a keyed digest of the keys, never the keys."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, replace

from bot.catalog import region_label, vendor_name
from bot.models import FieldChange, RecordingConfig


@dataclass(frozen=True)
class Observation:
    """One configuration as remembered. `vendor` None: no storage configured.
    `keys_digest` changes whenever either key does, and reveals neither."""

    mp4: bool
    hls: bool
    vendor: int | None
    storage_region: int | None
    bucket: str | None
    keys_digest: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Observation:
        """Raise ValueError on anything `to_json` did not write."""
        try:
            return cls(**json.loads(raw))
        except TypeError as exc:
            raise ValueError(f"not an observation: {exc}") from None


def keys_digest(access_key: str | None, secret_key: str | None, key: bytes) -> str:
    """HMAC of both keys: equal digests mean equal keys, and the digest cannot be guessed back.
    It starts with an id of `key`, so a digest made under another key is recognised as such."""
    if access_key is None and secret_key is None:
        return ""
    joined = json.dumps([access_key, secret_key])
    key_id = hmac.new(key, b"recbot digest key id", hashlib.sha256).hexdigest()[:8]
    return key_id + ":" + hmac.new(key, b"recbot keys\0" + joined.encode(), hashlib.sha256).hexdigest()[:32]


def under_key_of(remembered: Observation, live: Observation) -> Observation:
    """`remembered`, with `live`'s keys digest if its own was made under another digest key
    (the seal key was replaced): that digest can no longer be compared, so the keys count as unchanged."""
    if not remembered.keys_digest or not live.keys_digest:
        return remembered
    if remembered.keys_digest.partition(":")[0] == live.keys_digest.partition(":")[0]:
        return remembered
    return replace(remembered, keys_digest=live.keys_digest)


def observe(config: RecordingConfig, key: bytes) -> Observation:
    """What recbot keeps of `config`."""
    storage = config.storage_config
    if storage is None:
        return Observation(config.mp4, config.hls, None, None, None, "")
    return Observation(
        mp4=config.mp4,
        hls=config.hls,
        vendor=int(storage.vendor),
        storage_region=storage.region,
        bucket=storage.bucket,
        keys_digest=keys_digest(
            storage.access_key.get_secret_value() if storage.access_key else None,
            storage.secret_key.get_secret_value() if storage.secret_key else None,
            key,
        ),
    )


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _vendor(observation: Observation) -> str:
    return vendor_name(observation.vendor) if observation.vendor is not None else "not set"


def _region(observation: Observation) -> str:
    if observation.vendor is None or observation.storage_region is None:
        return "not set"
    return region_label(observation.vendor, observation.storage_region)


def changes_between(before: Observation, after: Observation) -> list[FieldChange]:
    """Field by field, safe to show: keys appear only as "changed"."""
    changes = []
    if before.mp4 != after.mp4:
        changes.append(FieldChange("MP4 recording", _on_off(before.mp4), _on_off(after.mp4)))
    if before.hls != after.hls:
        changes.append(FieldChange("HLS recording", _on_off(before.hls), _on_off(after.hls)))
    if _vendor(before) != _vendor(after):
        changes.append(FieldChange("Vendor", _vendor(before), _vendor(after)))
    if _region(before) != _region(after):
        changes.append(FieldChange("Region", _region(before), _region(after)))
    if before.bucket != after.bucket:
        changes.append(FieldChange("Bucket", before.bucket or "not set", after.bucket or "not set"))
    if before.keys_digest != after.keys_digest:
        changes.append(FieldChange("Storage keys", "previous", "changed"))
    return changes
