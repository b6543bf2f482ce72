"""Fixtures: the two upstream fakes on 127.0.0.1, settings pointing at them,
and the bot running in HTTP mode, driven with signed Slack requests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from bot.agora import AgoraClient
from bot.ratelimit import Limiter
from bot.services import agora_limiter
from bot.settings import Settings, load_settings
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack

BOT_TOKEN = "xoxb-test-0000-fake"
SIGNING_SECRET = "test-signing-secret-fake"
CUSTOMER_ID = "cust-id-fake"
CUSTOMER_SECRET = "CUSTOMER-SECRET-9f8e7d"
APP_ID = "APPID01"
ACCESS_KEY = "AKIAFAKEACCESS1234"
SECRET_KEY = "SECRETKEY-zyx-987-ultra"

# No deadline: a per-example time limit is a wall-clock assertion, and a cold first run
# (imports, .pyc compilation) trips it on a fresh machine.
hypothesis_settings.register_profile("recbot", deadline=None)
hypothesis_settings.load_profile("recbot")

DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused

LIVE_CONFIG: dict[str, Any] = {
    "mp4Config": {"enabled": True},
    "hlsConfig": {"enabled": False},
    "storageConfig": {
        "vendor": 1,
        "region": 0,
        "bucket": "rec-bucket",
        "accessKey": ACCESS_KEY,
        "secretKey": SECRET_KEY,
    },
}


@pytest.fixture
def agora() -> Iterator[AgoraEmulator]:
    emulator = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start()
    emulator.put(APP_ID, "live", "na", LIVE_CONFIG)
    yield emulator
    emulator.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(BOT_TOKEN).start()
    yield fake
    fake.stop()
    assert not fake.problems, f"Slack would have rejected: {fake.problems}"


@pytest.fixture
def settings_overrides(tmp_path: Path, slack: FakeSlack, agora: AgoraEmulator) -> dict[str, Any]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
        "AGORA_API_URL": agora.url,
        "AGORA_APP_ID": APP_ID,
        "AGORA_DEFAULT_REGION": "na",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'recbot.db'}",
        "RECBOT_APPROVERS": "UBOB,UCAROL",
        "RECBOT_APPROVAL_CHANNEL": "CAPPROVE",
        # The storage probe is tested in its own files; here it is off, and were it on,
        # it could only reach a dead loopback port: tests never talk to a real vendor.
        "RECBOT_STORAGE_PROBE": "off",
        "RECBOT_STORAGE_ENDPOINT_OVERRIDE": DEAD_ENDPOINT,
        "RECBOT_AZURE_ENDPOINT_OVERRIDE": DEAD_ENDPOINT,
        # The drift watch runs only in the tests about it (tests/test_drift.py).
        "RECBOT_DRIFT_INTERVAL_SECONDS": "0",
        # Any free port: bots started as processes must not fight over the default 9464.
        "RECBOT_METRICS_ADDR": "127.0.0.1:0",
    }


@pytest.fixture
def settings(settings_overrides: dict[str, Any]) -> Settings:
    return load_settings(_env_file=None, **settings_overrides)


def fast_agora(settings: Settings, limiter: Limiter | None = None) -> AgoraClient:
    """The real client and limiter (or `limiter`), with backoff short enough for tests."""
    return AgoraClient(
        base_url=settings.AGORA_API_URL,
        customer_id=settings.AGORA_CUSTOMER_ID,
        customer_secret=settings.AGORA_CUSTOMER_SECRET.get_secret_value(),
        backoff_base=0.01,
        read_timeout=5,
        limiter=limiter or agora_limiter(settings),
    )


@pytest.fixture
def bot(settings: Settings) -> Iterator[RunningBot]:
    running = start_bot(settings, fast_agora(settings))
    yield running
    running.stop()


@pytest.fixture
def driver(bot: RunningBot, slack: FakeSlack) -> SlackDriver:
    return SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())


POSTGRES_URL = os.environ.get("RECBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL, dropped afterwards."""
    import psycopg

    schema = f"recbot_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def unused_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


from tests.storage_servers import azurite, moto_s3  # noqa: E402, F401 - session fixtures of real storage servers
