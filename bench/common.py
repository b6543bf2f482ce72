"""What the benchmarks share: recbot's settings against the in-process fakes."""

from __future__ import annotations

from pathlib import Path

from bot.settings import Settings, load_settings
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, SIGNING_SECRET
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack


def bench_settings(slack: FakeSlack, agora: AgoraEmulator, database: Path, **extra: str) -> Settings:
    """HTTP-mode settings pointing at the fakes, a SQLite store at `database`, and `extra` on top."""
    return load_settings(
        _env_file=None,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        AGORA_CUSTOMER_ID=CUSTOMER_ID,
        AGORA_CUSTOMER_SECRET=CUSTOMER_SECRET,
        AGORA_API_URL=agora.url,
        AGORA_APP_ID=APP_ID,
        DATABASE_URL=f"sqlite:///{database}",
        **extra,
    )
