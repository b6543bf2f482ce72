"""Gaps a mutation spot check found in the fleet's tests (issue 16): the picker's brief
cache of entry point names expires, and every formula lead is quoted even when no
formula follows it (the oracle here is the list itself, not the module's constant)."""

from __future__ import annotations

import csv
import io

import pytest

from bot.fleet import NAMES_TTL_SECONDS, Fleet, FleetRow, Scan, to_csv
from bot.models import FormatConfig, RecordingConfig, StorageConfig
from tests.conftest import APP_ID, LIVE_CONFIG, fast_agora

# OWASP's CSV injection leads: what a spreadsheet may run, as the README lists them.
LEADS = ("=", "+", "-", "@", "\t", "\r")


def list_calls(agora) -> int:
    return len([c for c in agora.calls("GET") if c.path.endswith("/fls/entry_points")])


def test_the_pickers_names_are_read_again_once_older_than_their_ttl(settings, agora) -> None:
    now = [1000.0]
    client = fast_agora(settings)
    fleet = Fleet(client, clock=lambda: now[0])
    try:
        assert fleet.matching(APP_ID, "") == ["live"]
        agora.put(APP_ID, "backup", "na", LIVE_CONFIG)
        now[0] += NAMES_TTL_SECONDS - 0.001
        assert fleet.matching(APP_ID, "") == ["live"]  # a keystroke: served from the brief cache
        assert list_calls(agora) == 1
        now[0] += 0.001
        assert fleet.matching(APP_ID, "") == ["backup", "live"]  # the cache expired: read again
        assert list_calls(agora) == 2
    finally:
        client.close()


@pytest.mark.parametrize("lead", LEADS)
def test_a_formula_lead_is_quoted_whatever_follows_it(lead: str) -> None:
    value = f"{lead}cmd"
    storage = StorageConfig.model_construct(vendor=1, region=0, bucket=value, access_key=None, secret_key=None)
    config = RecordingConfig(mp4_config=FormatConfig(enabled=True), storage_config=storage)
    content = to_csv(Scan("s", APP_ID, ("na",), (FleetRow(value, "na", None, config=config),), 0.0))
    (_, line) = list(csv.reader(io.StringIO(content, newline="")))
    assert line[0] == "'" + value and line[6] == "'" + value  # the entry point and the bucket
