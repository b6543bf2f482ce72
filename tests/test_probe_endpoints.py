"""Where the storage check connects, and what it sends: the host is always the
catalog's (any typed name is either valid by the vendor's rule or refused), one
request per step, no region redirect followed, no "Expect: 100-continue". Name
lookups are intercepted in-process, so nothing leaves the machine."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.catalog import CATALOG, Vendor
from bot.models import StorageConfig
from bot.probe import PROBE_BODY, Prober, Step
from tests.storage_endpoints import ScriptedS3, hostile_names, s3_error
from tests.storage_servers import AZURITE_KEY

S3_VENDORS = [v for v in Vendor if v != Vendor.AZURE]


def typed(vendor: Vendor, region: int, bucket: str, access: str = "AKIA0000EXAMPLE") -> StorageConfig:
    """A config as typed, not validated: the probe must refuse on its own what breaks the rules."""
    secret = AZURITE_KEY if vendor == Vendor.AZURE else "secret-0000"
    return StorageConfig.model_construct(
        vendor=vendor, region=region, bucket=bucket, access_key=SecretStr(access), secret_key=SecretStr(secret)
    )


@contextmanager
def no_dns():
    """Every name lookup is recorded and answered "no such name" in-process: no query is sent."""
    looked_up: list[str] = []

    def lookup(host, port, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "intercepted by the test")

    with mock.patch("socket.getaddrinfo", lookup):
        yield looked_up


names = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="abz09.-_", max_size=70),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?-[0-9]{10}", fullmatch=True),  # Tencent's <name>-<APPID>
    st.sampled_from(hostile_names(8080)),
)
PROBER = Prober(timeout=5)  # no override: the catalog's real hosts, reached only as far as a name lookup


@settings(max_examples=300)
@given(vendor=st.sampled_from(S3_VENDORS), bucket=names, data=st.data())
def test_any_typed_bucket_is_refused_or_reaches_exactly_the_catalogs_host(vendor, bucket, data) -> None:
    info = CATALOG[vendor]
    region = data.draw(st.sampled_from([r.code for r in info.regions] or [0]))
    host, _ = info.endpoint(region)
    with no_dns() as looked_up:
        result = PROBER.probe(typed(vendor, region, bucket))
    event("refused" if not info.bucket_rule.allows(bucket) else "valid")
    if not info.bucket_rule.allows(bucket):
        assert (result.verdict, result.field, looked_up) == ("refused", "bucket", [])
        return
    virtual = not info.path_style and "." not in bucket
    assert looked_up == [f"{bucket}.{host}" if virtual else host] == [info.request_host(region, bucket)]
    assert result.verdict == "unreachable"  # the lookup failed: nothing was sent


@settings(max_examples=200)
@given(account=names)
def test_any_typed_azure_account_is_refused_or_reaches_exactly_the_catalogs_host(account) -> None:
    info = CATALOG[Vendor.AZURE]
    with no_dns() as looked_up:
        result = PROBER.probe(typed(Vendor.AZURE, 0, "recordings", access=account))
    event("refused" if not info.access_key_rule.allows(account) else "valid")
    if not info.access_key_rule.allows(account):
        assert (result.verdict, result.field, looked_up) == ("refused", "access_key", [])
        return
    assert looked_up == [f"{account}.blob.core.windows.net"] == [info.request_host(0, "recordings", account)]
    assert (result.verdict, result.code) == ("refused", "NoSuchAccount")  # the intercepted lookup said so


@pytest.fixture
def scripted(request):
    server = ScriptedS3(**getattr(request, "param", {}))
    yield server
    server.stop()


def check(server: ScriptedS3, vendor: Vendor = Vendor.AMAZON_S3):
    return Prober(s3_endpoint=server.url, timeout=5).probe(typed(vendor, 0, "rec-bucket"))


def test_the_write_sends_no_expect_100_continue_and_each_step_once(scripted) -> None:
    result = check(scripted)
    assert result.verdict == "ok"
    assert scripted.methods() == ["PUT", "HEAD", "DELETE"]
    assert [r.path for r in scripted.requests] == [scripted.requests[0].path] * 3  # /rec-bucket/.recbot-probe/<hex>
    assert "expect" not in scripted.requests[0].headers


@pytest.mark.parametrize("scripted", [{"PUT": s3_error(500, "InternalError")}], indirect=True)
def test_a_vendor_error_is_not_retried(scripted) -> None:
    result = check(scripted)
    assert scripted.methods() == ["PUT"]
    assert result.verdict == "unreachable" and result.steps == (Step("write", "InternalError, HTTP 500"),)


@pytest.mark.parametrize(
    ("scripted", "code"),
    [
        (
            {"PUT": s3_error(301, "PermanentRedirect", {"x-amz-bucket-region": "us-west-2"}, Endpoint="e.example")},
            "PermanentRedirect",
        ),
        ({"PUT": s3_error(400, "AuthorizationHeaderMalformed", Region="us-west-2")}, "AuthorizationHeaderMalformed"),
    ],
    indirect=["scripted"],
)
def test_a_bucket_in_another_region_is_refused_not_followed(scripted, code) -> None:
    result = check(scripted)
    assert scripted.methods() == ["PUT"]  # botocore would sign again for us-west-2 and send a second request
    assert (result.verdict, result.code, result.field) == ("refused", code, "region")
    assert result.summary() == (
        f"write refused at {scripted.url}: {code} (the bucket is in region us-west-2; choose US_WEST_2 (3))"
    )


@pytest.mark.parametrize(
    "scripted", [{"HEAD": (200, {"Content-Length": str(len(PROBE_BODY) - 1)}, b"")}], indirect=True
)
def test_a_wrong_size_read_back_is_a_refusal_at_the_read_and_the_object_is_named(scripted) -> None:
    result = check(scripted, Vendor.BAIDU)
    assert scripted.methods() == ["PUT", "HEAD"]
    assert (result.verdict, result.code, result.steps[-1]) == ("refused", "SizeMismatch", Step("read", "SizeMismatch"))
    assert result.summary().startswith(f"read refused at {scripted.url}: SizeMismatch (")
    assert f"`{result.left_behind}` was written and not deleted" in result.summary()
