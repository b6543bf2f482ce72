"""The metrics listener of a running bot: the Prometheus text format on /metrics, with the
build's info and the database's gauges; /healthz and /readyz beside it; nothing else."""

from __future__ import annotations

import tomllib
from pathlib import Path

import requests

from bot import __version__
from tests.metrics_helpers import scrape


def test_the_version_is_pyprojects() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert __version__ == project["project"]["version"]


def test_a_scrape_has_every_family_and_the_databases_gauges(bot) -> None:
    found = scrape(bot.metrics_url)
    assert found.value("recbot_database_up") == 1
    assert found.value("recbot_change_requests_open", state="pending") == 0
    assert found.value("recbot_bulk_jobs", state="running") == 0
    families = {"recbot_commands", "recbot_agora_requests", "recbot_slack_api_calls", "recbot_ack_seconds"}
    assert families <= found.families


def test_the_probes_answer_beside_the_metrics(bot) -> None:
    base = bot.metrics_url.removesuffix("/metrics")
    assert requests.get(base + "/healthz", timeout=5).json() == {"ok": True, "database": "ok"}
    assert requests.get(base + "/readyz", timeout=5).json() == {"ok": True, "database": "ok"}
    assert requests.get(base + "/slack/events", timeout=5).status_code == 404
    assert requests.post(bot.metrics_url, timeout=5).status_code == 405


def test_the_slack_listener_does_not_serve_metrics(bot) -> None:
    assert requests.get(bot.url + "/metrics", timeout=5).status_code == 404
    assert requests.get(bot.url + "/readyz", timeout=5).json()["ok"] is True


def test_a_database_that_does_not_answer_leaves_its_gauges_out_not_the_scrape(bot) -> None:
    path = Path(bot.services.settings.DATABASE_URL.removeprefix("sqlite:///"))
    aside = path.rename(path.with_suffix(".aside"))
    bot.services.store.engine.dispose()
    path.mkdir()  # where the file was, SQLite now finds a directory it cannot open
    try:
        found = scrape(bot.metrics_url)
        ready = requests.get(bot.metrics_url.removesuffix("/metrics") + "/readyz", timeout=5)
    finally:
        path.rmdir()
        aside.rename(path)
    assert ready.status_code == 503 and ready.json() == {"ok": False, "database": "unreachable"}
    assert found.value("recbot_database_up") == 0
    assert "recbot_change_requests_open" not in found.families
    assert "recbot_agora_requests" in found.families
