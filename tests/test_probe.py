"""The storage probe against real servers: moto's S3 (every S3-compatible
vendor, pointed at it by the endpoint override) and Azurite (Azure)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.catalog import CATALOG, Vendor
from bot.models import StorageConfig
from bot.probe import PROBE_PREFIX, Prober
from tests.fakes.http import SilentServer
from tests.storage_servers import AZURITE_ACCOUNT, AZURITE_KEY, free_port

S3_VENDORS = [v for v in Vendor if v != Vendor.AZURE]


def storage(vendor: Vendor, bucket: str, access: str, secret: str) -> StorageConfig:
    region = CATALOG[vendor].regions[0].code if CATALOG[vendor].regions else 0
    return StorageConfig(vendor=vendor, region=region, bucket=bucket, access_key=access, secret_key=secret)


@pytest.fixture(scope="module")
def s3(moto_s3):
    moto_s3.bucket("probe-bucket")
    return moto_s3


@pytest.fixture(scope="module")
def writer(s3):
    return s3.user("writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")


@pytest.mark.parametrize("vendor", S3_VENDORS)
def test_good_keys_write_read_and_delete_for_every_s3_vendor(s3, writer, vendor, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    result = Prober(s3_endpoint=s3.url).probe(storage(vendor, "probe-bucket", writer.access, writer.secret))
    assert result.verdict == "ok", result
    assert [(s.name, s.outcome) for s in result.steps] == [("write", "ok"), ("read", "ok"), ("delete", "ok")]
    assert result.summary().startswith(f"write, read, delete: ok at {s3.url}, ")
    assert not [k for k in s3.objects("probe-bucket") if k.startswith(PROBE_PREFIX)]  # nothing left behind
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert writer.secret not in logged and writer.access not in logged  # SDK debug logging included


@pytest.mark.parametrize(
    ("bucket", "keys", "code", "field"),
    [
        ("probe-bucket", "wrong-secret", "SignatureDoesNotMatch", "secret_key"),
        ("probe-bucket", "unknown-key", "InvalidAccessKeyId", "access_key"),
        ("no-such-bucket", "good", "NoSuchBucket", "bucket"),
        ("probe-bucket", "read-only", "AccessDenied", "access_key"),
    ],
)
def test_definite_refusals_name_the_field(s3, writer, bucket, keys, code, field) -> None:
    if keys == "read-only":
        reader = s3.user("reader", "s3:GetObject")
        access, secret = reader.access, reader.secret
    else:
        access, secret = {
            "wrong-secret": (writer.access, "x" * 40),
            "unknown-key": ("AKIANOSUCHKEY0000000", writer.secret),
            "good": (writer.access, writer.secret),
        }[keys]
    result = Prober(s3_endpoint=s3.url).probe(storage(Vendor.AMAZON_S3, bucket, access, secret))
    assert (result.verdict, result.code, result.field) == ("refused", code, field)
    assert result.steps[-1].name == "write" and code in result.summary()
    assert secret not in result.summary() and access not in result.summary()


def test_a_bucket_name_the_sdk_refuses_is_a_bucket_refusal(s3, writer) -> None:
    result = Prober(s3_endpoint=s3.url).probe(
        storage(Vendor.AMAZON_S3, "bad/bucket:name", writer.access, writer.secret)
    )
    assert (result.verdict, result.code, result.field) == ("refused", "InvalidBucketName", "bucket")


def test_write_only_keys_pass_and_the_object_left_is_named(s3) -> None:
    keys = s3.user("write-only", "s3:PutObject", "s3:GetObject")
    result = Prober(s3_endpoint=s3.url).probe(storage(Vendor.HUAWEI, "probe-bucket", keys.access, keys.secret))
    assert result.verdict == "ok" and result.steps[-1].outcome == "not permitted"
    assert result.left_behind in s3.objects("probe-bucket")
    assert f"`{result.left_behind}` stays in the bucket" in result.summary()


def test_an_unreachable_endpoint_is_a_warning_not_a_refusal() -> None:
    result = Prober(s3_endpoint=f"http://127.0.0.1:{free_port()}").probe(
        storage(Vendor.ALIBABA, "b-bucket", "AKIA0000", "secret-0000")
    )
    assert result.verdict == "unreachable" and result.field is None
    assert "could not reach" in result.summary() and "not checked" in result.summary()


def test_a_silent_endpoint_is_given_up_on_within_the_timeout() -> None:
    silent = SilentServer().start()
    try:
        result = Prober(s3_endpoint=silent.url, timeout=0.5).probe(
            storage(Vendor.TENCENT, "b-bucket", "AKIA0000", "secret-0000")
        )
    finally:
        silent.stop()
    assert result.verdict == "unreachable" and result.steps[0].outcome == "timed out"


@pytest.fixture(scope="module")
def blob(azurite):
    azurite.container("recordings")
    return azurite


def test_azure_good_key(blob) -> None:
    result = Prober(azure_endpoint=blob.url).probe(storage(Vendor.AZURE, "recordings", AZURITE_ACCOUNT, AZURITE_KEY))
    assert result.verdict == "ok" and [s.outcome for s in result.steps] == ["ok", "ok", "ok"]
    assert AZURITE_ACCOUNT not in result.summary() and "account ...unt1" in result.summary()


@pytest.mark.parametrize(
    ("container", "key", "field"),
    [
        ("recordings", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=", "secret_key"),
        ("recordings", "not base64 at all", "secret_key"),
        ("missing", AZURITE_KEY, "bucket"),
    ],
)
def test_azure_refusals(blob, container, key, field) -> None:
    result = Prober(azure_endpoint=blob.url).probe(
        storage(Vendor.AZURE, container, AZURITE_ACCOUNT, key.replace(" ", ""))
    )
    assert (result.verdict, result.field) == ("refused", field), result
    assert key not in result.summary()


def test_azure_unreachable() -> None:
    result = Prober(azure_endpoint=f"http://127.0.0.1:{free_port()}", timeout=1).probe(
        storage(Vendor.AZURE, "recordings", AZURITE_ACCOUNT, AZURITE_KEY)
    )
    assert result.verdict == "unreachable"


@given(vendor=st.sampled_from(list(Vendor)), data=st.data())
def test_every_catalog_region_has_an_https_endpoint_host(vendor: Vendor, data: st.DataObject) -> None:
    info = CATALOG[vendor]
    code = data.draw(st.sampled_from([r.code for r in info.regions] or [0]))
    host, signing_region = info.endpoint(code)
    assert host and " " not in host and "/" not in host and "{" not in host.replace("{account}", "")
    assert signing_region and signing_region == signing_region.lower()
