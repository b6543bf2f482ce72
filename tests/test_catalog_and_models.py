"""The catalog, the models and masking, for all inputs."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from bot.catalog import CATALOG, Vendor, geography_mismatch, vendor_info
from bot.models import RecordingConfig, StorageConfig, Target, TypedStorageConfig, fingerprint, typed_problems
from tests.fakes.agora import VENDOR_REGIONS

vendors = st.sampled_from(list(Vendor))


def test_catalog_matches_the_documented_tables() -> None:
    """The emulator's independent copy of the API document agrees with the catalog."""
    for vendor, codes in VENDOR_REGIONS.items():
        info = vendor_info(vendor)
        assert ({r.code for r in info.regions} or None) == codes, info.name
    assert len(CATALOG) == 9


def test_catalog_entries_are_well_formed() -> None:
    for info in CATALOG.values():
        codes = [r.code for r in info.regions]
        assert len(codes) == len(set(codes)) <= 100  # one Slack select holds 100 options
        assert all(r.geography in (None, "cn", "ap", "na", "eu") for r in info.regions)


@given(vendor=vendors, region=st.integers(min_value=-5, max_value=40))
def test_typed_storage_region_valid_exactly_when_in_vendor_table(vendor: Vendor, region: int) -> None:
    info = vendor_info(vendor)
    fields = {"vendor": int(vendor), "region": region, "bucket": "b", "accessKey": "a" * 8, "secretKey": "s" * 8}
    if not info.has_regions:
        assert TypedStorageConfig.model_validate(fields).region == 0  # Azure, Google: always send 0
    elif info.region(region) is not None:
        assert TypedStorageConfig.model_validate(fields).region == region
    else:
        with pytest.raises(ValidationError, match=info.name):
            TypedStorageConfig.model_validate(fields)
    assert StorageConfig.model_validate(fields).region == (region if info.has_regions else 0)  # as Agora holds it


@given(vendor=st.integers().filter(lambda v: v not in range(9)) | st.booleans())
def test_unknown_vendor_typed_is_refused_with_the_list(vendor: int) -> None:
    with pytest.raises(ValidationError, match="8 Baidu AI Cloud"):
        TypedStorageConfig.model_validate({"vendor": vendor, "bucket": "b", "accessKey": "a", "secretKey": "s"})


@given(key=st.text(min_size=8, max_size=200))
def test_fingerprint_of_a_key_of_8_or_more_is_exactly_its_last_4(key: str) -> None:
    assert fingerprint(key) == "..." + key[-4:]
    assert fingerprint(SecretStr(key)) == "..." + key[-4:]


@given(key=st.text(min_size=1, max_size=7))
def test_fingerprint_of_a_short_key_shows_nothing_of_it(key: str) -> None:
    assert fingerprint(key) == "...(short)"


def test_fingerprint_as_documented() -> None:
    assert fingerprint("ABCDEFGHIJK1234") == "...1234"  # 15 characters: the last 4 (it once showed 3)
    assert fingerprint("ABCD1234") == "...1234"
    assert fingerprint("ABC1234") == "...(short)"
    assert fingerprint(None) == fingerprint("") == "not set"


key_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")),
    min_size=12,
    max_size=60,
).filter(lambda s: not any(c.isspace() for c in s))


@given(key=key_text, junk=st.sampled_from([" ", "\n", "\t", "\x00", "\u200b"]))
def test_typed_keys_with_spaces_or_control_characters_are_refused_without_echo(key: str, junk: str) -> None:
    def refusal(access: str, secret: str) -> str:
        with pytest.raises(ValidationError, match="Keys must not contain") as caught:
            TypedStorageConfig(vendor=Vendor.GOOGLE, bucket="b", access_key=access, secret_key=secret)
        return str(caught.value)

    # Word for word what any other key gets: nothing of it is echoed (a part of it may well be a
    # word of the refusal, "ecret_" say, which is why this does not look for the key in the text).
    assert refusal(key, key[:6] + junk + key[6:]) == refusal("A" * 12, "B" * 6 + junk + "C" * 6)


@given(access=key_text, secret=key_text)
def test_keys_never_in_repr_str_or_plain_dump(access: str, secret: str) -> None:
    storage = StorageConfig(vendor=Vendor.GOOGLE, bucket="b", access_key=access, secret_key=secret)
    config = RecordingConfig(storage_config=storage)
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert access not in shown and secret not in shown
    assert config.wire_json()["storageConfig"]["secretKey"] == secret  # only the wire form reveals


def test_wire_json_uses_camel_case_and_omits_unset_parts() -> None:
    config = RecordingConfig.model_validate({"hlsConfig": {"enabled": True}})
    assert config.wire_json() == {"hlsConfig": {"enabled": True}}


@given(st.text(max_size=200) | st.sampled_from(["", ".", "..", "live", "a/../b", "x" * 129, "a\tb", "a\u200bb"]))
def test_target_refuses_exactly_what_could_escape_a_path_segment(entry_point: str) -> None:
    bad = (
        entry_point in ("", ".", "..")
        or len(entry_point) > 128
        or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in entry_point)
    )
    try:
        Target(app_id="A", entry_point=entry_point, region="na")
    except ValidationError:
        assert bad, f"{entry_point!r} is a harmless name and was refused"
    else:
        assert not bad, f"{entry_point!r} was accepted"


def test_the_space_or_control_test_is_that_of_unicode_categories_on_every_code_point() -> None:
    from bot.models import _has_space_or_control

    def by_category(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch).startswith("C")

    differ = [
        hex(code) for code in range(sys.maxunicode + 1) if _has_space_or_control(chr(code)) != by_category(chr(code))
    ]
    assert differ == []
    assert (
        _has_space_or_control("live\u202e")
        and _has_space_or_control("a b")
        and not _has_space_or_control("l\u00efve-2")
    )


def test_geography() -> None:
    assert not geography_mismatch("na", Vendor.AMAZON_S3, 0)
    assert geography_mismatch("na", Vendor.AMAZON_S3, 7)
    assert not geography_mismatch("eu", Vendor.AZURE, 0)  # no region, nothing to compare
    assert geography_mismatch("cn", Vendor.HUAWEI, 10)  # South America is in no API region


def test_digest_changes_with_any_field_and_depends_on_key() -> None:
    base = RecordingConfig.model_validate(
        {
            "mp4Config": {"enabled": True},
            "storageConfig": {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "a", "secretKey": "s"},
        }
    )
    assert base.storage_config is not None
    storage = base.storage_config.model_copy(update={"secret_key": SecretStr("s2")})
    changed_secret = base.model_copy(update={"storage_config": storage})
    assert base.digest(b"k") == base.model_copy(deep=True).digest(b"k")
    assert base.digest(b"k") != changed_secret.digest(b"k")
    assert base.digest(b"k") != base.digest(b"other")


@pytest.mark.parametrize(
    ("vendor", "accepted", "refused"),
    [
        (Vendor.AMAZON_S3, ["my-bucket", "my.bucket.name", "abc"], ["my_bucket", "ab", "xn--abc", "a..b", "10.0.0.1"]),
        (Vendor.GOOGLE, ["my_bucket", "my-bucket", "a.b." + "c" * 60], ["_lead", "googbucket", "my-google-bucket"]),
        (Vendor.ALIBABA, ["my-bucket"], ["my.bucket", "my_bucket", "my-bucket-"]),
        (Vendor.QINIU, ["my-bucket"], ["my.bucket"]),
        (Vendor.BAIDU, ["my-bucket"], ["my.bucket"]),
        (Vendor.KINGSOFT, ["my-bucket"], ["kss-bucket", "my.bucket"]),
        (Vendor.HUAWEI, ["my.bucket"], ["my-.bucket", "my.-bucket", "a..b"]),
        (Vendor.TENCENT, ["examplebucket-1250000000", "a-b-1250000000"], ["examplebucket", "-x-1250000000"]),
        (Vendor.AZURE, ["recordings", "rec-ordings"], ["rec--ordings", "Recordings", "rec.ordings", "ab"]),
    ],
)
def test_each_vendors_bucket_rule(vendor: Vendor, accepted: list[str], refused: list[str]) -> None:
    rule = vendor_info(vendor).bucket_rule
    assert [name for name in accepted if not rule.allows(name)] == []
    assert [name for name in refused if rule.allows(name)] == []


@given(vendor=vendors, data=st.data())
def test_a_name_refused_for_a_reserved_beginning_or_ending_is_told_which(vendor, data) -> None:
    """The words a refusal shows name every reserved beginning and ending: 'xn--bucket' or
    'foo-s3alias' looks valid by the rest of the words."""
    info = vendor_info(vendor)
    rule = info.bucket_rule
    reserved = [*rule.reserved_prefixes, *rule.reserved_suffixes]
    if not reserved:
        return
    part = data.draw(st.sampled_from(reserved))
    name = part + "bucket" if part in rule.reserved_prefixes else "bucket" + part
    assert not rule.allows(name) and f"'{part}'" in rule.explain(info.name)


def test_the_reserved_names_read_as_a_sentence() -> None:
    words = vendor_info(Vendor.AMAZON_S3).bucket_rule.explain("Amazon S3")
    assert "not starting with 'xn--', 'sthree-' or 'amzn-s3-demo-'" in words
    assert words.endswith("not ending with '-s3alias', '--ol-s3', '.mrap' or '--x-s3'.")
    assert vendor_info(Vendor.KINGSOFT).bucket_rule.explain("Kingsoft Cloud").endswith("not starting with 'kss'.")


def test_azure_account_and_key_rules() -> None:
    info = vendor_info(Vendor.AZURE)
    assert info.access_key_rule.allows("devstoreaccount1") and info.access_key_rule.allows("abc")
    assert not any(info.access_key_rule.allows(a) for a in ("ab", "a" * 25, "Account1", "acc-1", "127.0.0.1:80/x"))
    assert info.secret_key_rule.allows("Zm9vYmFy") and info.secret_key_rule.allows("Zm9vYg==")
    assert not any(info.secret_key_rule.allows(k) for k in ("Zm9vY", "not base64", "Zm9v\u00e9mFy"))


def test_a_legacy_bucket_read_from_agora_still_parses_but_may_not_be_typed() -> None:
    """Configurations read from Agora keep whatever bucket they have; the rules apply to
    what a person types and to what the storage check connects with."""
    fields = {"vendor": 1, "region": 0, "bucket": "Legacy_Bucket", "accessKey": "AKIA12345678", "secretKey": "s" * 8}
    storage = StorageConfig.model_validate(fields)
    assert storage.bucket == "Legacy_Bucket"
    assert set(typed_problems(storage)) == {"bucket"}
    assert "Amazon S3 bucket names are 3-63 lowercase letters" in typed_problems(storage)["bucket"]
    keys = storage.model_copy(update={"access_key": SecretStr("ключ-доступа"), "secret_key": SecretStr("sé")})
    assert set(typed_problems(keys)) == {"bucket", "access_key", "secret_key"}
    assert "printable ASCII" in typed_problems(keys)["access_key"]
