"""A gap a mutation spot check found in the tests of `/recording list` tables kept in the
database: whether a storage's secret key is set is kept as Agora holds it (a storage with no
secret key shows "not set", on this instance and on another), not as whether there is a storage."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from bot.fleet import Scan, to_csv
from bot.fleet_rows import kept_rows, restored
from bot.models import is_set
from tests.conftest import APP_ID
from tests.test_fleet_scans import config_with, live_row, storage_with


@given(secret=st.none() | st.just("") | st.text(min_size=1, max_size=24))
def test_a_storage_s_secret_key_shows_set_only_when_agora_holds_one(secret: str | None) -> None:
    storage = storage_with(1, 0, "rec-bucket", "AKIAOLDACCESS1234", secret)
    scan = Scan("s1", APP_ID, ("na",), (live_row("live", "na", config_with(storage)),), 0.0)
    expected = "set" if is_set(storage.secret_key) else "not set"
    (kept,) = json.loads(json.dumps(kept_rows(scan)))
    assert kept["shown"]["secret_key_set"] is (expected == "set")
    other = restored(scan.id, APP_ID, ["na"], [kept], 0.0)  # as another instance reads it back
    assert other is not None
    for shown in (scan, other):
        (header, row) = list(csv.reader(io.StringIO(to_csv(shown))))
        assert row[header.index("secret_key")] == expected
