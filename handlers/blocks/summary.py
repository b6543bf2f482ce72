"""The `/recording get` summary of one entry point's configuration."""

from __future__ import annotations

from typing import Any

from bot.catalog import API_REGIONS, geography_mismatch, region_label
from bot.models import RecordingConfig, Target, describe_storage, fingerprint, is_set
from handlers.blocks.messages import code, escape

BLOCK_TITLE = "summary_title"
BLOCK_FIELDS = "summary_fields"
BLOCK_WARNING = "summary_warning"


def _on_off(value: bool) -> str:
    return ":large_green_circle: on" if value else ":white_circle: off"


def summary(target: Target, config: RecordingConfig) -> list[dict[str, Any]]:
    """Formats, storage and masked keys; a warning when the bucket's region
    is outside the API region's geography."""
    storage = config.storage_config
    shown = describe_storage(storage)
    fields = [
        f"*MP4 recording*\n{_on_off(config.mp4)}",
        f"*HLS recording*\n{_on_off(config.hls)}",
        f"*Storage vendor*\n{shown['vendor']}",
        f"*Storage region*\n{shown['region']}",
        f"*Bucket*\n{code(shown['bucket']) if storage and storage.bucket else shown['bucket']}",  # inert, as typed
        f"*Access key*\n{fingerprint(storage.access_key if storage else None)}",
        f"*Secret key*\n{'set' if storage and is_set(storage.secret_key) else 'not set'}",
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": BLOCK_TITLE,
            "text": {
                "type": "mrkdwn",
                "text": f"*Recording configuration of {code(target.entry_point)}*\n"
                f"API region `{target.region}` ({API_REGIONS[target.region]}), App ID {code(target.app_id)}",
            },
        },
        {
            "type": "section",
            "block_id": BLOCK_FIELDS,
            "fields": [{"type": "mrkdwn", "text": f} for f in fields],
        },
    ]
    warning = geography_warning(target.region, storage.vendor, storage.region) if storage else None
    if warning:
        blocks.append({"type": "context", "block_id": BLOCK_WARNING, "elements": [{"type": "mrkdwn", "text": warning}]})
    return blocks


def geography_warning(api_region: str, vendor: int, region: int) -> str | None:
    """The warning where a bucket's region sits outside the entry point's API region (Agora
    advises the same geography; it is a warning, never a refusal); None where it does not."""
    if not geography_mismatch(api_region, vendor, region):
        return None
    return (
        f":warning: The bucket's region {region_label(vendor, region)} is outside {API_REGIONS[api_region]} "
        f"(API region `{api_region}`). Agora advises storage in the same geography for reliable uploads."
    )


def summary_text(target: Target) -> str:
    """Notification fallback text."""
    return f"Recording configuration of {escape(target.entry_point)} ({target.region})"


BLOCK_SLOW_READ = "summary_slow_read"


def slow_read_text(target: Target) -> str:
    """The notification text of `slow_read`."""
    return f"Still reading the configuration of {escape(target.entry_point)} ({target.region}) from Agora"


def slow_read(target: Target) -> list[dict[str, Any]]:
    """Shown while a `get` waits long for Agora (or for recbot's own rate limit): the answer
    follows, and replaces it where Slack lets a command's answer be replaced."""
    text = (
        f":hourglass_flowing_sand: Still reading the configuration of {code(target.entry_point)} "
        f"({target.region}, app {code(target.app_id)}) from Agora; it is taking longer than usual. "
        "The answer follows within about 20 seconds."
    )
    return [{"type": "section", "block_id": BLOCK_SLOW_READ, "text": {"type": "mrkdwn", "text": text}}]
