"""What the benchmarks share: recbot's settings against the in-process fakes."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.settings import Settings, load_settings
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG, SIGNING_SECRET
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack


def bench_environment(slack: FakeSlack, agora: AgoraEmulator, database: Path | str, **extra: str) -> dict[str, str]:
    """HTTP-mode settings pointing at the fakes, a SQLite store at `database` (a path) or the
    database at that URL, and `extra` on top, as the environment variables a recbot process reads."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
        "AGORA_API_URL": agora.url,
        "AGORA_APP_ID": APP_ID,
        "DATABASE_URL": f"sqlite:///{database}" if isinstance(database, Path) else database,
        **extra,
    }


def bench_settings(slack: FakeSlack, agora: AgoraEmulator, database: Path | str, **extra: str) -> Settings:
    """The settings of `bench_environment`, for a recbot in this process."""
    return load_settings(_env_file=None, **bench_environment(slack, agora, database, **extra))


def fleet_agora(entry_points: int) -> AgoraEmulator:
    """A started Agora emulator holding `live` and `entry_points - 1` others (`ep001`...) in all
    four regions, that answers 429 above 50 requests in any second, as Agora does."""
    agora = AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start()
    agora.per_second_limit = 50
    for i in range(entry_points):
        for region in ("cn", "ap", "na", "eu"):
            agora.put(APP_ID, "live" if i == 0 else f"ep{i:03}", region, LIVE_CONFIG)
    return agora


def fleet_fakes(entry_points: int) -> tuple[FakeSlack, AgoraEmulator]:
    """Started fakes: Slack, and Agora as `fleet_agora` makes it."""
    return FakeSlack(BOT_TOKEN).start(), fleet_agora(entry_points)


def fleet_parser() -> argparse.ArgumentParser:
    """`--entry-points` (default 200) and `--rate` (`AGORA_RATE_LIMIT`, default 40) of the fleet benches."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--entry-points", type=int, default=200)
    parser.add_argument("--rate", type=float, default=40.0)
    return parser


def fleet_arguments() -> argparse.Namespace:
    return fleet_parser().parse_args()


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL at `url` (as the tests make one), dropped afterwards: its URL."""
    import psycopg

    schema = f"recbot_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{url}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
