"""The plan of a fleet-wide change (issue 19): a request refused as one change's form refuses,
every filtered target read in the background lane against the Agora fake, sorted into would
change / already as asked / unreadable, above the maximum refused; what each target becomes;
the CSV and the card's summary, keys only as fingerprints."""

from __future__ import annotations

import fnmatch
import json
import string
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from bot.applying import storage_wire
from bot.bulk_change import BulkRequest, Change, KeepStorage, NewKeys, NewStorage, new_config, patch_for
from bot.bulk_plan import (
    EVERY_REGION_ASKED,
    PLAN_CSV_COLUMNS,
    Plan,
    PlanError,
    TooManyTargets,
    Unreadable,
    destinations,
    make_plan,
    plan_row,
    summary,
    to_csv,
)
from bot.bulk_targets import NAME_RULE, PATTERN_RULE, REGION_RULE, NameList, NamePattern, TargetFilter
from bot.catalog import CATALOG
from bot.fleet import Fleet
from bot.models import MAX_NAME_LENGTH, FormatConfig, RecordingConfig, StorageConfig, Target, TypedStorageConfig
from bot.services import agora_limiter
from bot.store import open_store
from bot.store.values import utcnow
from tests.conftest import ACCESS_KEY, APP_ID, SECRET_KEY, fast_agora
from tests.fakes.agora import Fault
from tests.test_fleet import cell_text, csv_cells, runs_as_formula
from tests.watched_limiter import Grant, WatchedLimiter

DIGEST_KEY = b"d" * 32
NEW_ACCESS, NEW_SECRET = "AKIANEWACCESS5678", "NEW-SECRET-qwerty-42"


def stored(
    bucket: str = "rec-eu", *, vendor: int = 1, region: int = 4, hls: bool = False, **keys: str
) -> dict[str, Any]:
    """A configuration as Agora answers it."""
    storage = {"vendor": vendor, "region": region, "bucket": bucket, "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
    return {"mp4Config": {"enabled": True}, "hlsConfig": {"enabled": hls}, "storageConfig": storage | keys}


def ask(regions: tuple[str, ...] = ("na",), change: dict[str, Any] | None = None, **targets: Any) -> BulkRequest:
    return BulkRequest.model_validate(
        {"targets": {"app_id": APP_ID, "regions": regions, **targets}, "change": change or {"hls": True}}
    )


def rotation(bucket: str = "rec-eu", **targets: Any) -> BulkRequest:
    keys = {"storage": {"kind": "keys", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}}
    return ask(change=keys, vendor=1, bucket=bucket, **targets)


@pytest.fixture
def grants() -> list[Grant]:
    return []


@pytest.fixture
def fleet(settings, agora, grants) -> Iterator[Fleet]:
    client = fast_agora(settings, WatchedLimiter(agora_limiter(settings), grants))
    yield Fleet(client)
    client.close()


def where(plan: Plan) -> list[tuple[str, str, bool]]:
    return [(row.target.entry_point, row.target.region, row.unchanged) for row in plan.rows]


# Planning against the Agora fake


def test_the_plan_sorts_every_target_and_names_the_unreadable(fleet, agora, grants, tmp_path: Path) -> None:
    agora.put(APP_ID, "ep-a", "na", stored())
    agora.put(APP_ID, "ep-a", "eu", stored(hls=True))  # already as asked
    agora.put(APP_ID, "ep-b", "eu", stored())  # nothing in na: not a target there
    agora.put(APP_ID, "ep-c", "na", stored())
    agora.put(APP_ID, "has space", "na", stored())
    agora.inject(
        *[Fault(503, message="down", path="/ep-c/settings/record/custom/regions/na") for _ in range(4)]
    )  # every attempt of its read
    plan = make_plan(fleet, ask(("na", "eu")))
    assert where(plan) == [
        ("ep-a", "na", False),
        ("ep-a", "eu", True),
        ("ep-b", "eu", False),
        ("live", "na", False),
    ]
    assert plan.unreadable == (
        Unreadable("ep-c", "na", "Agora answered 503"),
        Unreadable("has space", "na", "its name is not one recbot can address"),
        Unreadable("has space", "eu", "its name is not one recbot can address"),
    )
    assert plan.absent == 3  # ep-b na, ep-c eu, live eu
    assert [(c.label, c.before, c.after) for c in plan.rows[0].changes] == [("HLS recording", "off", "on")]
    assert summary(plan) == [
        "4 targets matched: 3 would change, 1 already as asked; 3 unreadable",
        "HLS: on for 3 targets",
    ]
    assert grants and {grant.lane for grant in grants} == {"background"}  # leaves people's lane free
    # The job store takes the plan's rows: the one already as asked is never claimed.
    store = open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        planned = plan.planned(DIGEST_KEY)
        assert ACCESS_KEY not in json.dumps([p.seen for p in planned]) and SECRET_KEY not in json.dumps(
            [p.seen for p in planned]
        )
        store.jobs.create(
            job_id="j1",
            requester="UALICE",
            change=plan.request.change.stored()[0],
            sealed_secrets=None,
            expires_at=utcnow() + timedelta(hours=1),
            targets=planned,
            unreadable=len(plan.unreadable),
        )
        progress = store.jobs.progress("j1")
        assert (progress["planned"], progress["unchanged"]) == (3, 1)
        assert store.jobs.get("j1").unreadable_count == 3
    finally:
        store.close()


def test_what_they_have_now_narrows_the_targets(fleet, agora) -> None:
    agora.put(APP_ID, "mp4-off", "na", {**stored(), "mp4Config": {"enabled": False}})
    agora.put(APP_ID, "hls-on", "na", stored(hls=True))
    agora.put(APP_ID, "other-bucket", "na", stored("rec-us"))
    plan = make_plan(fleet, ask(change={"mp4": False}, bucket="rec-eu", mp4=True, hls=False))
    assert plan.rows == () and plan.unreadable == ()  # live: rec-bucket; the others each differ in one
    plan = make_plan(fleet, ask(change={"mp4": False}, bucket="rec-eu", hls=True))
    assert where(plan) == [("hls-on", "na", False)]
    assert summary(plan)[1:] == ["MP4: off for 1 target"]


def test_a_target_whose_vendor_differs_from_the_filter_is_not_matched(fleet, agora) -> None:
    agora.put(APP_ID, "alibaba", "na", stored(vendor=2, region=17))  # the same bucket name at another vendor
    agora.put(APP_ID, "no-storage", "na", {"mp4Config": {"enabled": True}})
    agora.put(APP_ID, "amazon", "na", stored())
    plan = make_plan(fleet, rotation())
    assert where(plan) == [("amazon", "na", False)]


def test_the_rotation_replaces_keys_only_and_keeps_vendor_region_and_bucket(fleet, agora) -> None:
    agora.put(APP_ID, "eu-1", "na", stored())
    agora.put(APP_ID, "eu-2", "eu", stored(region=7))  # the same bucket name, EU_CENTRAL_1
    agora.put(APP_ID, "rotated", "na", stored(accessKey=NEW_ACCESS, secretKey=NEW_SECRET))
    agora.put(APP_ID, "us", "na", stored("rec-us"))
    plan = make_plan(fleet, rotation(regions=("na", "eu")))
    assert where(plan) == [("eu-1", "na", False), ("eu-2", "eu", False), ("rotated", "na", True)]
    for row in plan.rows:
        after_all = new_config(row.seen, plan.request.change)
        before, after = row.seen.storage_config, after_all.storage_config
        assert before is not None and after is not None
        assert (after.vendor, after.region, after.bucket) == (before.vendor, before.region, before.bucket)
        assert (after.access_key, after.secret_key) == (SecretStr(NEW_ACCESS), SecretStr(NEW_SECRET))
        assert (after_all.mp4, after_all.hls) == (row.seen.mp4, row.seen.hls)
    assert [(c.label, c.before, c.after) for c in plan.rows[0].changes] == [
        ("Access key", "...1234", "...5678"),
        ("Secret key", "set", "changed"),
    ]
    assert summary(plan)[1:] == ["storage keys: replaced on 2 targets (bucket rec-eu)"]
    header, first, *_ = csv_cells(to_csv(plan))
    assert dict(zip(header, first, strict=True)) == {
        "entry_point": "eu-1",
        "region": "na",
        "plan": "change",
        "mp4": "on",
        "hls": "off",
        "vendor": "Amazon S3",
        "storage_region": "EU_WEST_1 (4)",
        "bucket": "rec-eu",
        "access_key": "...1234",
        "secret_key": "set",
        "changes": "Access key: ...1234 -> ...5678; Secret key: set -> changed",
        "why": "",
    }
    assert [(d.vendor, d.region, d.bucket) for d in destinations(plan)] == [(1, 4, "rec-eu"), (1, 7, "rec-eu")]


def test_a_pattern_reads_only_the_names_it_matches(fleet, agora) -> None:
    for name in ("eu-01", "eu-02", "eu-123", "EU-03", "us-01"):
        agora.put(APP_ID, name, "na", stored())
    agora.clear()
    plan = make_plan(fleet, ask(entry_points={"kind": "pattern", "pattern": "eu-??"}))
    assert where(plan) == [("eu-01", "na", False), ("eu-02", "na", False)]
    reads = sorted(call.path.split("/")[6] for call in agora.calls("GET") if "/regions/" in call.path)
    assert reads == ["eu-01", "eu-02"]


def test_a_pasted_name_agora_does_not_know_is_named(fleet, agora) -> None:
    agora.put(APP_ID, "ep-a", "eu", stored())
    pasted = NameList.pasted("ep-a\n  live\nLive\r\nep-a\tmissing\n")
    assert pasted.names == ("ep-a", "live", "Live", "missing")
    plan = make_plan(fleet, ask(("na", "eu"), entry_points=pasted.model_dump()))
    assert where(plan) == [("ep-a", "eu", False), ("live", "na", False)]
    why = f"App ID {APP_ID} has no entry point of this name (names are case-sensitive)"
    assert plan.unreadable == (Unreadable("Live", None, why), Unreadable("missing", None, why))
    lines = csv_cells(to_csv(plan))
    assert lines[-1][:3] == ["missing", EVERY_REGION_ASKED, "unreadable"] and lines[-1][-1] == why


def test_above_the_maximum_is_a_clear_error_and_at_it_a_plan(fleet, agora) -> None:
    for name in ("ep-a", "ep-b"):
        agora.put(APP_ID, name, "na", stored())
    assert len(make_plan(fleet, ask(), max_targets=3).rows) == 3
    with pytest.raises(TooManyTargets) as refused:
        make_plan(fleet, ask(), max_targets=2)
    assert str(refused.value).startswith("3 targets match, and one job takes at most 2: nothing was planned.")
    assert "Narrow the filter" in str(refused.value)


def test_an_unknown_app_id_is_a_plan_error(fleet, agora) -> None:
    agora.unknown_apps.add("NOPE")
    with pytest.raises(PlanError, match="Unknown App ID"):
        make_plan(fleet, ask().model_copy(update={"targets": TargetFilter(app_id="NOPE", regions=("na",))}))


# The request: refused as one change's form refuses, saying what is valid


def test_a_request_that_changes_nothing_or_rotates_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match="Choose at least one change"):
        ask(change={"mp4": None, "hls": None})
    with pytest.raises(ValidationError, match="choose its vendor and bucket"):
        ask(change={"storage": {"kind": "keys", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}}, vendor=1)
    with pytest.raises(ValidationError, match="same"):
        rotation().model_copy().change.storage.model_validate(
            {"kind": "keys", "access_key": NEW_ACCESS, "secret_key": NEW_ACCESS}
        )


def test_new_keys_and_new_storage_are_checked_by_the_vendors_rules() -> None:
    azure = {"storage": {"kind": "keys", "access_key": "NotAnAccount", "secret_key": "bm90IGJhc2U2NA=="}}
    with pytest.raises(ValidationError, match="3-24 lowercase letters and digits"):
        ask(change=azure, vendor=5, bucket="recordings")
    bad_bucket = {"vendor": 1, "region": 4, "bucket": "Bad_Bucket", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}
    with pytest.raises(ValidationError, match="Amazon S3 bucket names are 3-63"):
        NewStorage.model_validate({"storage": bad_bucket})
    with pytest.raises(ValidationError, match="needs both keys"):
        NewStorage.model_validate({"storage": {**bad_bucket, "bucket": "good-bucket", "secret_key": None}})
    with pytest.raises(ValidationError, match="Region 99 is not one of Amazon S3's"):
        NewStorage.model_validate({"storage": {**bad_bucket, "bucket": "good-bucket", "region": 99}})


def test_regions_and_filters_say_what_is_valid() -> None:
    for regions in ((), ("us",)):
        with pytest.raises(ValidationError, match=REGION_RULE):
            ask(regions)
    assert ask(("eu", "na", "eu")).targets.regions == ("na", "eu")
    with pytest.raises(ValidationError, match="Vendor must be one of: 0 Qiniu Cloud"):
        ask(vendor=42)
    with pytest.raises(ValidationError, match="A bucket is 1-255 characters"):
        ask(bucket="rec eu")
    asked = ask(("eu", "na"), entry_points={"kind": "pattern", "pattern": "live-*"}, vendor=1, bucket="b", hls=False)
    assert asked.targets.describe() == (
        f"App ID {APP_ID}, regions na, eu, entry points named live-*, vendor Amazon S3, bucket b, HLS off now"
    )


def test_the_change_is_stored_with_fingerprints_and_rebuilt_from_its_sealed_keys() -> None:
    typed = {"vendor": 1, "region": 4, "bucket": "new-bucket", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}
    for change in (
        Change(hls=True),
        Change(mp4=False, storage=NewKeys(access_key=NEW_ACCESS, secret_key=NEW_SECRET)),
        Change(storage=NewStorage.model_validate({"storage": typed})),
    ):
        public, keys = change.stored()
        assert NEW_ACCESS not in json.dumps(public) and NEW_SECRET not in json.dumps(public)
        assert (keys is None) == isinstance(change.storage, KeepStorage)
        assert Change.from_stored(json.loads(json.dumps(public)), keys) == change
    with pytest.raises(ValueError, match="not a stored change"):
        Change.from_stored({"mp4": None, "hls": None, "storage": {"kind": "keys"}}, None)


# Properties

VALID_CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))
valid_names = st.text(VALID_CHARS, min_size=1, max_size=MAX_NAME_LENGTH).filter(lambda n: n not in (".", ".."))
spoilers = st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x7f", "\u200b", "\u2028", "\xa0", "\u3000"])
invalid_names = (
    st.sampled_from(["", ".", ".."])
    | st.text(VALID_CHARS, min_size=MAX_NAME_LENGTH + 1, max_size=MAX_NAME_LENGTH + 20)
    | st.builds(lambda a, bad, b: a + bad + b, st.text(VALID_CHARS, max_size=8), spoilers, st.text(max_size=8))
)


@given(pattern=invalid_names)
def test_any_invalid_pattern_is_refused_saying_what_is_valid(pattern: str) -> None:
    with pytest.raises(ValidationError) as refused:
        NamePattern(pattern=pattern)
    assert PATTERN_RULE in str(refused.value)


@given(before=st.lists(valid_names, max_size=3), bad=invalid_names, after=st.lists(valid_names, max_size=3))
def test_any_invalid_pasted_name_is_refused_saying_what_is_valid(before: list[str], bad: str, after: list[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        NameList(names=(*before, bad, *after))
    assert NAME_RULE in str(refused.value) and f"Entry point {len(before) + 1} " in str(refused.value)


@given(names=st.lists(valid_names, min_size=1, max_size=5))
def test_any_valid_pasted_names_are_taken_each_once_in_order(names: list[str]) -> None:
    assert NameList(names=(*names, *reversed(names))).names == tuple(dict.fromkeys(names))
    assert NameList.pasted("\n ".join(names)).names == tuple(dict.fromkeys(names))


@given(pattern=valid_names.filter(lambda p: "[" not in p), name=valid_names)
def test_a_pattern_matches_as_a_shell_glob_of_star_and_question_mark(pattern: str, name: str) -> None:
    assert NamePattern(pattern=pattern).selects(name) == fnmatch.fnmatchcase(name, pattern)
    assert NamePattern(pattern=name.replace("*", "?").replace("[", "?")).selects(name)


KEY_CHARS = string.ascii_letters + string.digits + "+/=-_.!~"
keys = st.text(KEY_CHARS, min_size=4, max_size=30)


@st.composite
def storages(draw: st.DrawFn) -> StorageConfig:
    info = draw(st.sampled_from([info for info in CATALOG.values() if info.has_regions]))
    return StorageConfig(
        vendor=info.vendor,
        region=draw(st.sampled_from(info.regions)).code,
        bucket=draw(st.text(max_size=20)),
        access_key=draw(st.none() | keys),
        secret_key=draw(st.none() | keys),
    )


formats = st.none() | st.builds(FormatConfig, enabled=st.booleans())
configs = st.builds(RecordingConfig, mp4_config=formats, hls_config=formats, storage_config=st.none() | storages())
NEW_STORAGE = NewStorage(
    storage=TypedStorageConfig(vendor=1, region=4, bucket="new-bucket", access_key=NEW_ACCESS, secret_key=NEW_SECRET)
)
storage_changes = st.sampled_from([KeepStorage(), NEW_STORAGE]) | st.builds(
    lambda a, s: NewKeys(access_key=SecretStr("A" + a), secret_key=SecretStr("S" + s)), keys, keys
)
changes = st.builds(Change, mp4=st.none() | st.booleans(), hls=st.none() | st.booleans(), storage=storage_changes)


@given(seen=configs, change=changes)
def test_what_the_change_leaves_unchanged_never_moves(seen: RecordingConfig, change: Change) -> None:
    assume(seen.storage_config is not None or not isinstance(change.storage, NewKeys))
    after = new_config(seen, change)
    for wanted, was, now in (
        (change.mp4, seen.mp4_config, after.mp4_config),
        (change.hls, seen.hls_config, after.hls_config),
    ):
        if wanted is None:
            assert now == was
        else:
            assert bool(now and now.enabled) is wanted  # None reads as off, as Agora's answer does
    old, new = seen.storage_config, after.storage_config
    if isinstance(change.storage, KeepStorage):
        assert storage_wire(new) == storage_wire(old)
    elif isinstance(change.storage, NewKeys):
        assert old is not None and new is not None
        assert (new.vendor, new.region, new.bucket) == (old.vendor, old.region, old.bucket)
        assert (new.access_key, new.secret_key) == (change.storage.access_key, change.storage.secret_key)
    else:
        assert storage_wire(new) == storage_wire(NEW_STORAGE.storage)
    patch = patch_for(seen, change)
    if isinstance(change.storage, KeepStorage) or storage_wire(new) == storage_wire(old):
        assert patch.storage_config is None  # no keys sent where storage stays
    again = patch_for(after, change)  # once applied, it is already as asked
    assert (again.mp4_config, again.hls_config, again.storage_config) == (None, None, None)


def plan_of(request: BulkRequest, rows: list[tuple[str, RecordingConfig]], lost: list[Unreadable]) -> Plan:
    # model_construct: any name at all, even one Target's validation refuses.
    made = [plan_row(Target.model_construct(app_id=APP_ID, entry_point=n, region="na"), c, request) for n, c in rows]
    return Plan(request, tuple(made), tuple(lost))


@given(name=cell_text, bucket=cell_text, why=cell_text)
def test_no_plan_csv_cell_runs_as_a_formula(name: str, bucket: str, why: str) -> None:
    storage = StorageConfig.model_construct(vendor=1, region=0, bucket=bucket, access_key=None, secret_key=None)
    request = ask(change={"mp4": False})
    plan = plan_of(
        request,
        [(name, RecordingConfig(mp4_config=FormatConfig(enabled=True), storage_config=storage))],
        [Unreadable(name, "eu", why)],
    )
    lines = csv_cells(to_csv(plan))
    assert len(lines) == 3 and all(len(line) == len(PLAN_CSV_COLUMNS) for line in lines)
    for line in lines[1:]:
        assert not any(runs_as_formula(cell) for cell in line), line
        assert line[0] == ("'" + name if runs_as_formula(name) else name)


@given(old=st.tuples(keys, keys), new=st.tuples(keys, keys), bucket=st.sampled_from(["rec-eu", "=rec", "b"]))
def test_no_key_appears_in_the_csv_summary_reprs_stored_change_or_errors(
    old: tuple[str, str], new: tuple[str, str], bucket: str
) -> None:
    old_access, old_secret, new_access, new_secret = (
        f"{tag}-{key}" for tag, key in zip("ABCD", (*old, *new), strict=True)
    )
    secrets = (old_access, old_secret, new_access, new_secret)
    seen = RecordingConfig.model_validate(stored(bucket, accessKey=old_access, secretKey=old_secret))
    typed = {"vendor": 1, "region": 4, "bucket": "new-bucket", "access_key": new_access, "secret_key": new_secret}
    said: list[str] = []
    for change in (
        {"storage": {"kind": "keys", "access_key": new_access, "secret_key": new_secret}},
        {"hls": True, "storage": {"kind": "storage", "storage": typed}},
    ):
        request = ask(change=change, vendor=1, bucket=bucket)
        plan = plan_of(request, [("ep", seen)], [Unreadable("x", "na", "Agora answered 503")])
        said += [to_csv(plan), *summary(plan), repr(plan), str(request), json.dumps(request.change.stored()[0])]
        said.append(json.dumps([p.seen for p in plan.planned(DIGEST_KEY)]))
        with pytest.raises(ValidationError) as refused:  # a request refused for something else
            ask(("us",), change=change, vendor=1, bucket=bucket)
        said.append(str(refused.value))
    spaced_keys = {"access_key": new_access + " x", "secret_key": new_secret}
    for change in ({"kind": "keys", **spaced_keys}, {"kind": "storage", "storage": {**typed, **spaced_keys}}):
        with pytest.raises(ValidationError) as spaced:  # refused for the key itself
            ask(change={"storage": change}, vendor=1, bucket=bucket)
        assert "Keys must not contain spaces" in str(spaced.value)
        said.append(str(spaced.value))
    assert not [secret for secret in secrets for text in said if secret in text]


def test_only_a_target_that_records_now_counts_as_left_recording_nothing() -> None:
    keys = {"kind": "keys", "access_key": NEW_ACCESS, "secret_key": NEW_SECRET}
    request = ask(change={"mp4": False, "storage": keys}, vendor=1, bucket="rec-eu")
    recording = RecordingConfig.model_validate(stored())  # MP4 on, HLS off
    silent = RecordingConfig.model_validate({**stored(), "mp4Config": {"enabled": False}})  # records nothing now
    rows = [
        plan_row(Target(app_id=APP_ID, entry_point=name, region="na"), seen, request)
        for name, seen in (("recording", recording), ("silent", silent))
    ]
    assert [(row.silenced, row.unchanged) for row in rows] == [(True, False), (False, False)]  # both change keys
    assert Plan(request, tuple(rows), ()).silenced == 1
