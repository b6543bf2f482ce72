"""`/recording list` tables kept in the database: with no key in them, shown from the
database exactly as they were shown when read, served until their TTL and no longer,
damaged ones read as expired, and each save prunes a bounded batch of expired ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from sqlalchemy import event, select, text, update

from bot.bulk_plan import make_plan
from bot.catalog import API_REGIONS
from bot.fleet import SCAN_TTL, SCAN_TTL_SECONDS, Fleet, FleetRow, Scan, to_csv
from bot.fleet_rows import kept_rows, restored
from bot.models import FormatConfig, RecordingConfig, StorageConfig, Target, fingerprint
from bot.seal import Sealer
from bot.store import Store, open_store
from bot.store.engine import make_engine
from bot.store.fleet_scans import PRUNE_BATCH, FleetScans
from bot.store.schema import fleet_scans
from bot.store.values import SwitchRow
from handlers.blocks import fleet
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY, fast_agora
from tests.test_bulk_plan import ask

REGIONS = list(API_REGIONS)
T0 = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
SEALER = Sealer(Fernet.generate_key())


def live_row(name: str, region: str, config: RecordingConfig | None, kind: str = "config") -> FleetRow:
    """A row as a scan reads it: a config, or missing, or a failed read; unaddressable names have no target."""
    try:
        target: Target | None = Target(app_id=APP_ID, entry_point=name, region=region)
    except ValidationError:
        return FleetRow(name, region, None, error="its name is not one recbot can address")
    if kind == "missing":
        return FleetRow(name, region, target, missing=True)
    if kind == "error":
        return FleetRow(name, region, target, error="Agora answered 503")
    return FleetRow(name, region, target, config=config)


def storage_with(vendor: int, region: int, bucket: str, access: str | None, secret: str | None) -> StorageConfig:
    # model_construct: whatever Agora answers, as a scan keeps it (foreign vendors, odd buckets).
    return StorageConfig.model_construct(
        vendor=vendor,
        region=region,
        bucket=bucket,
        access_key=SecretStr(access) if access is not None else None,
        secret_key=SecretStr(secret) if secret is not None else None,
    )


def config_with(storage: StorageConfig | None, mp4: bool = True, hls: bool = False) -> RecordingConfig:
    return RecordingConfig(
        mp4_config=FormatConfig(enabled=mp4), hls_config=FormatConfig(enabled=hls), storage_config=storage
    )


def round_trip(scan: Scan) -> Scan | None:
    """The scan as another instance reads it back: through JSON text, as the database keeps it."""
    rows = json.loads(json.dumps(kept_rows(scan)))
    return restored(scan.id, scan.app_id, list(scan.regions), rows, scan.at)


def leaves(value: Any) -> Iterator[str]:
    """Every text in a JSON value, keys of objects included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)


# Two access keys that show the same fingerprint: both long with the same last 4 characters, or both short.
same_fingerprint = st.one_of(
    st.tuples(st.text(min_size=4), st.text(min_size=4), st.text(min_size=4, max_size=4)).map(
        lambda t: (t[0] + t[2], t[1] + t[2])
    ),
    st.tuples(st.text(min_size=1, max_size=7), st.text(min_size=1, max_size=7)),
)


@given(access=same_fingerprint, secrets=st.tuples(st.text(min_size=1), st.text(min_size=1)))
def test_the_kept_rows_hold_no_key_only_its_fingerprint_and_whether_a_secret_is_set(
    access: tuple[str, str], secrets: tuple[str, str]
) -> None:
    kept = [
        kept_rows(Scan("s1", APP_ID, ("na",), (live_row("live", "na", config_with(storage)),), 0.0))
        for storage in (
            storage_with(1, 0, "rec-bucket", access[0], secrets[0]),
            storage_with(1, 0, "rec-bucket", access[1], secrets[1]),
        )
    ]
    # Whatever the keys, the kept JSON is the same while their fingerprints are: it holds nothing more of them.
    assert json.dumps(kept[0]) == json.dumps(kept[1])
    (shown,) = [row["shown"] for row in kept[0]]
    assert shown["access_key_fingerprint"] == fingerprint(access[0]) and shown["secret_key_set"] is True
    known = " ".join(["live", "na", "rec-bucket", fingerprint(access[0]), *kept[0][0], *shown, *shown["storage"]])
    for key in (access[0], secrets[0]):
        assume(key not in known)  # a key that is itself a name, region or field name shows nothing
        assert not any(key in leaf for leaf in leaves(kept[0]))


row_kinds = st.sampled_from(["config", "config", "missing", "error"])
any_storage = st.none() | st.builds(
    storage_with,
    st.integers(min_value=-(2**31), max_value=2**31),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.text(max_size=60),
    st.none() | st.text(max_size=24),
    st.none() | st.text(max_size=24),
)
any_row = st.builds(
    live_row,
    st.text(min_size=1, max_size=24) | st.sampled_from(["live", "has space", "<!channel>", "=1+2"]),
    st.sampled_from(REGIONS),
    st.builds(config_with, any_storage, st.booleans(), st.booleans()),
    row_kinds,
)


@given(
    rows=st.lists(any_row, max_size=40),
    regions=st.lists(st.sampled_from(REGIONS), min_size=1, max_size=4, unique=True),
    known=st.booleans(),
)
def test_a_kept_table_reads_back_shown_exactly_as_it_was(rows: list[FleetRow], regions: list[str], known: bool) -> None:
    scan = Scan("s1", APP_ID, tuple(regions), tuple(rows), 0.0)
    back = round_trip(scan)
    assert back is not None and back.regions == scan.regions and back.app_id == APP_ID
    assert all(row.config is None for row in back.rows)  # no live config, and so no key, comes back
    switches = {"live": SwitchRow(APP_ID, "live", True, "switch", "set", "UALICE", T0)} if known else None
    for number in range(fleet.page_count(scan)):
        assert fleet.page(back, number, SEALER, switches) == fleet.page(scan, number, SEALER, switches)
    assert to_csv(back, switches) == to_csv(scan, switches)
    # The row select's Get and Change reach the same targets.
    assert [row.target for row in fleet.shown_rows(back)] == [row.target for row in fleet.shown_rows(scan)]


def kept_live(**changes: Any) -> list[dict[str, Any]]:
    row = kept_rows(
        Scan(
            "s1",
            APP_ID,
            ("na",),
            (live_row("live", "na", config_with(storage_with(1, 0, "b", "AKIA12345678", "s"))),),
            0.0,
        )
    )[0]
    return [{**row, **changes}]


DAMAGED_ROWS: dict[str, Any] = {
    "not a list": {"name": "live"},
    "a row not an object": ["live"],
    "a field missing": [{"name": "live", "region": "na"}],
    "a field more": kept_live(access_key="AKIA12345678"),
    "a name not text": kept_live(name=7),
    "a flag not a bool": kept_live(missing=0),
    "a vendor not a number": kept_live(
        shown={**kept_live()[0]["shown"], "storage": {"vendor": "1", "region": 0, "bucket": "b"}}
    ),
    "an addressable name recbot cannot address": kept_live(name="has space"),
    "an addressable row in no region": kept_live(region="xx"),
}


@pytest.mark.parametrize("rows", DAMAGED_ROWS.values(), ids=DAMAGED_ROWS.keys())
def test_damaged_rows_read_as_expired(rows: Any) -> None:
    assert restored("s1", APP_ID, ["na"], rows, 0.0) is None


@pytest.mark.parametrize("regions", [None, "na", [1], {"na": 1}], ids=["null", "text", "a number", "an object"])
def test_damaged_regions_read_as_expired(regions: Any) -> None:
    assert restored("s1", APP_ID, regions, kept_live(), 0.0) is None
    assert restored("s1", APP_ID, ["na"], kept_live(), 0.0) is not None  # the same with its regions intact


# The repository, on the embedded SQLite and on PostgreSQL


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'scans.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = open_store(url)
    yield opened
    opened.close()


class Clock:
    """Wall time for the repository, and a process's monotonic time per Fleet, moved together."""

    def __init__(self) -> None:
        self.wall = T0
        self.monotonic = {"a": 100.0, "b": 5000.0, "c": 77.0}

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.monotonic = {name: at + seconds for name, at in self.monotonic.items()}

    def of(self, name: str) -> Any:
        return lambda: self.monotonic[name]


def ids_kept(store: Store) -> list[str]:
    """The kept tables, oldest first."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(fleet_scans.c.id).order_by(fleet_scans.c.created_at)).scalars())


def test_a_table_is_read_until_its_ttl_and_not_after(store: Store) -> None:
    clock = Clock()
    scans = FleetScans(store.engine, clock=lambda: clock.wall)
    scans.save("s1", APP_ID, ("na", "eu"), [{"any": "json"}], keep_for=SCAN_TTL)
    clock.advance(SCAN_TTL_SECONDS)
    found = scans.get("s1", SCAN_TTL)
    assert found is not None and (found.app_id, found.regions, found.rows) == (APP_ID, ["na", "eu"], [{"any": "json"}])
    assert found.age == SCAN_TTL  # at the limit: still served
    clock.advance(0.000001)
    assert scans.get("s1", SCAN_TTL) is None  # past it: list again
    assert scans.get("never-saved", SCAN_TTL) is None


@pytest.mark.parametrize("column", ["rows", "regions"])
def test_a_table_whose_json_is_damaged_reads_as_expired(store: Store, column: str) -> None:
    scans = FleetScans(store.engine)
    scans.save("s1", APP_ID, ("na",), [], keep_for=SCAN_TTL)
    with store.engine.begin() as conn:
        conn.execute(update(fleet_scans).values({column: '[{"truncated'}))
    assert scans.get("s1", SCAN_TTL) is None


def test_each_save_prunes_at_most_a_batch_of_expired_tables_oldest_first(store: Store) -> None:
    clock = Clock()
    scans = FleetScans(store.engine, clock=lambda: clock.wall)
    old = [f"old{i:02}" for i in range(2 * PRUNE_BATCH + 3)]
    for scan_id in reversed(old):  # saved newest first: the oldest is not merely the first saved
        scans.save(scan_id, APP_ID, ("na",), [], keep_for=SCAN_TTL)
        clock.advance(-1)
    assert ids_kept(store) == old  # none of them expired while they were saved
    clock.advance(SCAN_TTL_SECONDS + len(old) + 1)  # now every one of them has
    scans.save("new1", APP_ID, ("na",), [], keep_for=SCAN_TTL)
    assert ids_kept(store) == [*old[PRUNE_BATCH:], "new1"]
    scans.save("new2", APP_ID, ("na",), [], keep_for=SCAN_TTL)
    assert ids_kept(store) == [*old[2 * PRUNE_BATCH :], "new1", "new2"]
    scans.save("new3", APP_ID, ("na",), [], keep_for=SCAN_TTL)
    assert ids_kept(store) == ["new1", "new2", "new3"]  # what has not expired is never pruned


def test_a_save_prunes_past_expired_tables_another_instance_is_pruning(postgres_url: str) -> None:
    """Two instances saving at once never wait for each other's prune: each skips the rows
    the other has taken (a wait here runs into the lock timeout and fails the save)."""
    store = open_store(postgres_url)
    saver = make_engine(postgres_url)
    event.listen(saver, "connect", lambda conn, _: conn.execute("SET lock_timeout = '2s'"))
    clock = Clock()
    try:
        scans = FleetScans(store.engine, clock=lambda: clock.wall)
        old = [f"old{i:02}" for i in range(2 * PRUNE_BATCH)]
        for scan_id in old:
            scans.save(scan_id, APP_ID, ("na",), [], keep_for=SCAN_TTL)
            clock.advance(1)
        clock.advance(SCAN_TTL_SECONDS)
        with store.engine.connect() as other:
            taken = select(fleet_scans.c.id).where(fleet_scans.c.id.in_(old[:PRUNE_BATCH])).with_for_update()
            assert len(other.execute(taken).all()) == PRUNE_BATCH  # held until this block ends
            FleetScans(saver, clock=lambda: clock.wall).save("new1", APP_ID, ("na",), [], keep_for=SCAN_TTL)
            other.rollback()
        assert ids_kept(store) == [*old[:PRUNE_BATCH], "new1"]
    finally:
        saver.dispose()
        store.close()


# The Fleet: scans kept for any instance, on the repository


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    yield opened
    opened.close()


@pytest.fixture
def client(settings) -> Iterator[Any]:
    made = fast_agora(settings)
    yield made
    made.close()


def test_a_scan_made_by_one_instance_is_served_by_another_until_its_ttl(shared: Store, client, agora) -> None:
    clock = Clock()
    saved = FleetScans(shared.engine, clock=lambda: clock.wall)
    a, b, c = (Fleet(client, saved, clock=clock.of(name)) for name in "abc")
    agora.put(APP_ID, "backup", "eu", LIVE_CONFIG)
    scan = a.scan(APP_ID, ["live", "backup"], ("na", "eu"))
    clock.advance(100)
    on_b = b.kept(scan.id)
    assert on_b is not None and round_trip(scan) == Scan(scan.id, APP_ID, scan.regions, on_b.rows, scan.at)
    assert on_b.at == clock.monotonic["b"] - 100  # made 100 s ago, on b's clock
    reads = len(agora.calls())
    clock.advance(SCAN_TTL_SECONDS - 100)
    assert a.kept(scan.id) == scan and b.kept(scan.id) == on_b  # at the limit: each still serves it...
    assert c.kept(scan.id) is not None  # ...and one that never saw it reads it from the database
    clock.advance(0.001)
    assert [fleet.kept(scan.id) for fleet in (a, b, c)] == [None, None, None]  # past it: expired everywhere
    assert len(agora.calls()) == reads  # nothing was read again


def statements_on(store: Store) -> list[str]:
    """The SQL statements run on the store's engine from now on, each folded to one line."""
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(" ".join(args[2].split())))
    return seen


def test_a_scan_costs_one_insert_and_a_page_on_another_instance_one_select_then_none(
    shared: Store, client, agora
) -> None:
    names = [f"ep{i:02}" for i in range(40)]
    for name in names:
        agora.put(APP_ID, name, "na", LIVE_CONFIG)
    saved = FleetScans(shared.engine)
    a, b = Fleet(client, saved), Fleet(client, saved)
    seen = statements_on(shared)
    scan = a.scan(APP_ID, names, ("na", "eu"))
    inserts = [s for s in seen if s.startswith("INSERT")]
    assert len(inserts) == 1 and "fleet_scans" in inserts[0]  # 80 rows, one INSERT
    seen.clear()
    assert a.kept(scan.id) == scan and seen == []  # the instance that made it asks nothing
    assert b.kept(scan.id) is not None
    assert len(seen) == 1 and seen[0].startswith("SELECT") and "fleet_scans" in seen[0]
    seen.clear()
    assert b.kept(scan.id) is not None and seen == []  # its next page asks nothing either


def test_a_scan_not_kept_is_not_saved_and_a_plans_scan_is_not_kept(shared: Store, client) -> None:
    saved = FleetScans(shared.engine)
    a, b = Fleet(client, saved), Fleet(client, saved)
    scan = a.scan(APP_ID, ["live"], ("na",), keep=False)
    assert scan.rows[0].config is not None  # the live read, for the caller alone
    assert a.kept(scan.id) is None and b.kept(scan.id) is None
    plan = make_plan(a, ask())
    assert len(plan.rows) == 1
    assert ids_kept(shared) == []


def test_the_stored_table_of_a_listing_holds_no_key(driver, slack, agora, bot) -> None:
    driver.command("list all")
    bot.drain()
    with bot.services.store.engine.connect() as conn:
        (stored,) = conn.execute(text("SELECT app_id, regions, rows FROM fleet_scans")).all()
    assert stored[0] == APP_ID and json.loads(stored[1]) == REGIONS
    assert ACCESS_KEY not in stored[2] and SECRET_KEY not in stored[2] and "...1234" in stored[2]
