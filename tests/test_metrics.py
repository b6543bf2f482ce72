"""The metrics listener of a running bot: the Prometheus text format on /metrics, with the
build's info and the database's gauges; /healthz and /readyz beside it; nothing else."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from bot import __version__
from bot import server as bot_server
from bot.metrics import DatabaseCollector, status_class
from bot.server import note_arrival, take_arrival
from bot.store import DatabaseFileGone
from tests.conftest import fast_agora
from tests.driver import start_bot
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
    # A labelled series shows once counted, recbot_applies_total's alone from the start (the README's rule).
    text = requests.get(bot.metrics_url, timeout=5).text
    assert 'recbot_applies_total{outcome="failed"} 0.0' in text and "recbot_bulk_targets_total{" not in text


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
    # Not the file recbot opened any more (unreachable is a lock's; test_..._locked below).
    assert ready.status_code == 503 and ready.json() == {"ok": False, "database": "replaced"}
    assert found.value("recbot_database_up") == 0
    assert "recbot_change_requests_open" not in found.families
    assert "recbot_agora_requests" in found.families


@pytest.mark.parametrize("connections", ["kept", "new"])
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_under_recbot_is_down_on_every_probe(bot, how, connections) -> None:
    """Reads still come from the file recbot opened; its writes fail. SELECT 1 said ok. A connection
    opened after a deletion (the pool opens one whenever none is idle) finds a new empty file
    there, with no table to read: that said "unreachable", and failed this test one run in many."""
    path = Path(bot.services.settings.DATABASE_URL.removeprefix("sqlite:///"))
    copy = path.with_suffix(".copy")
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # a restore from a backup, made while recbot runs
    if how == "deleted":
        path.unlink()
    else:
        copy.replace(path)
    if connections == "new":
        bot.services.store.engine.dispose()
    base = bot.metrics_url.removesuffix("/metrics")
    for probe in ("/healthz", "/readyz"):
        answer = requests.get(base + probe, timeout=5)
        assert answer.status_code == 503 and answer.json() == {"ok": False, "database": "replaced"}
    assert requests.get(bot.url + "/healthz", timeout=5).status_code == 503
    assert scrape(bot.metrics_url).value("recbot_database_up") == 0


def test_a_scrape_without_the_database_says_its_gauges_are_left_out_and_where_to_look(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replaced file answers from the old one, so "the database did not answer" was wrong for it;
    the warning names the failure's kind and where to read what happened, never its message."""

    def read() -> None:
        raise DatabaseFileGone("/srv/recbot.db was deleted or replaced while recbot had it open")

    families = list(DatabaseCollector(read, ["pending"], ["running"]).collect())  # type: ignore[arg-type]
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("recbot_database_up", [0])]
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: the database's gauges are left out of this scrape (DatabaseFileGone; /healthz says why)"
    ]


def test_a_sqlite_file_another_process_holds_locked_is_down_on_the_probes_as_on_the_metric(bot) -> None:
    """SELECT 1 reads no file: /healthz said ok while the scrape said the database was down."""
    path = Path(bot.services.settings.DATABASE_URL.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answer = requests.get(bot.metrics_url.removesuffix("/metrics") + "/healthz", timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503 and answer.json() == {"ok": False, "database": "unreachable"}
    assert requests.get(bot.url + "/healthz", timeout=30).json() == {"ok": True, "database": "ok"}  # free again


@pytest.mark.parametrize(
    ("status", "label"),
    [
        *[(100, "1xx"), (200, "2xx"), (299, "2xx"), (300, "3xx"), (429, "4xx"), (500, "5xx"), (599, "5xx")],
        *[(None, "none"), (99, "none"), (600, "none"), (0, "none")],
    ],
)
def test_a_status_is_labelled_by_its_class_and_no_answer_or_nonsense_as_none(status: int | None, label: str) -> None:
    assert status_class(status) == label


def test_an_arrival_is_read_once_then_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([10.0, 20.0, 30.0])
    monkeypatch.setattr(bot_server, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    note_arrival()  # at 10
    assert take_arrival() == 10.0  # the request is timed from its arrival, not from the middleware
    assert take_arrival() == 20.0  # the next request on this thread, noted by no one, is timed from now


def test_stopping_the_bot_closes_its_metrics_listener(settings) -> None:
    running = start_bot(settings, fast_agora(settings))
    try:
        assert scrape(running.metrics_url).value("recbot_database_up") == 1
    finally:
        running.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(running.metrics_url, timeout=5)
