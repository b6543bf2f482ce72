"""The storage probe against real servers: moto's S3 (every S3-compatible
vendor, pointed at it by the endpoint override) and Azurite (Azure)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.catalog import CATALOG, Vendor
from bot.models import StorageConfig
from bot.probe import PROBE_PREFIX, Prober, Step
from tests.storage_endpoints import HOSTILE_KEYS, CountingListener, hostile_names
from tests.storage_servers import AZURITE_ACCOUNT, AZURITE_KEY, free_port

S3_VENDORS = [v for v in Vendor if v != Vendor.AZURE]
# A bucket name each vendor accepts (Tencent's carry the APPID).
BUCKET = "probe-bucket"
BUCKETS = {v: f"{BUCKET}-1250000000" if v == Vendor.TENCENT else BUCKET for v in S3_VENDORS}
ROOT = Path(__file__).resolve().parent.parent
# Objects the collector tracks after a first S3 check in a new process, start-up frozen: a few
# dozen with what the check loaded frozen, about 49,000 without.
TRACKED_AT_MOST = 5_000


def storage(vendor: Vendor, bucket: str, access: str, secret: str) -> StorageConfig:
    region = CATALOG[vendor].regions[0].code if CATALOG[vendor].regions else 0
    return StorageConfig(vendor=vendor, region=region, bucket=bucket, access_key=access, secret_key=secret)


def _unchecked(vendor: Vendor, bucket: str, access: str, secret: str) -> StorageConfig:
    """A config as the probe may be handed it, past the model's own checks (spaces, length)."""
    return StorageConfig.model_construct(
        vendor=vendor, region=0, bucket=bucket, access_key=SecretStr(access), secret_key=SecretStr(secret)
    )


@pytest.fixture(scope="module")
def s3(moto_s3):
    for name in set(BUCKETS.values()):
        moto_s3.bucket(name)
    return moto_s3


@pytest.fixture(scope="module")
def writer(s3):
    return s3.user("writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.stop()


@pytest.mark.parametrize("vendor", S3_VENDORS)
def test_good_keys_write_read_and_delete_for_every_s3_vendor(s3, writer, vendor, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    result = Prober(s3_endpoint=s3.url).probe(storage(vendor, BUCKETS[vendor], writer.access, writer.secret))
    assert result.verdict == "ok", result
    assert [(s.name, s.outcome) for s in result.steps] == [("write", "ok"), ("read", "ok"), ("delete", "ok")]
    assert result.summary().startswith(f"write, read, delete: ok at {s3.url}, ")
    assert result.left_behind is None and "stays" not in result.summary()
    assert not [k for k in s3.objects(BUCKETS[vendor]) if k.startswith(PROBE_PREFIX)]  # nothing left behind
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert writer.secret not in logged and writer.access not in logged  # SDK debug logging included


@pytest.mark.parametrize(
    ("bucket", "keys", "code", "field", "why"),
    [
        ("probe-bucket", "wrong-secret", "SignatureDoesNotMatch", "secret_key", "does not belong to this access key"),
        ("probe-bucket", "unknown-key", "InvalidAccessKeyId", "access_key", "does not know this access key"),
        ("no-such-bucket", "good", "NoSuchBucket", "bucket", "no bucket of this name"),
        ("probe-bucket", "read-only", "AccessDenied", "access_key", "may not write to the bucket"),
    ],
)
def test_definite_refusals_name_the_field_and_say_why(s3, writer, bucket, keys, code, field, why) -> None:
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
    assert result.steps == (Step("write", code),)
    assert result.summary().startswith(f"write refused at {s3.url}: {code} (") and why in result.summary()
    assert secret not in result.summary() and access not in result.summary()


@pytest.mark.parametrize("vendor", list(Vendor))
def test_a_name_the_vendor_would_not_accept_is_refused_without_connecting(listener, vendor) -> None:
    """Defence in depth: the form refuses these, and so does the probe itself."""
    prober = Prober(s3_endpoint=listener.url, azure_endpoint=listener.url, timeout=1)
    good_bucket = "recordings" if vendor == Vendor.AZURE else BUCKETS[vendor]
    access, secret = ("account1", AZURITE_KEY) if vendor == Vendor.AZURE else ("AKIA0000EXAMPLE", "secret-0000")
    fields = ["bucket", "access_key"] if vendor == Vendor.AZURE else ["bucket"]
    for field in fields:
        for name in hostile_names(listener.port):
            typed = {"bucket": good_bucket, "access_key": access, field: name}
            result = prober.probe(_unchecked(vendor, typed["bucket"], typed["access_key"], secret))
            assert (result.verdict, result.field, result.steps) == ("refused", field, ()), name
            assert result.code == {"bucket": "InvalidBucketName", "access_key": "InvalidAccessKey"}[field]
            assert result.summary().startswith("refused before connecting to ") and " are " in result.summary()
    assert listener.connections() == 0


@pytest.mark.parametrize("vendor", [Vendor.AMAZON_S3, Vendor.GOOGLE, Vendor.AZURE])
def test_keys_no_vendor_takes_are_refused_without_connecting(listener, vendor) -> None:
    prober = Prober(s3_endpoint=listener.url, azure_endpoint=listener.url, timeout=1)
    bucket = "recordings" if vendor == Vendor.AZURE else BUCKETS[vendor]
    good = ("account1", AZURITE_KEY) if vendor == Vendor.AZURE else ("AKIA0000EXAMPLE", "secret-0000")
    for key in HOSTILE_KEYS:
        for field, access, secret in (("access_key", key, good[1]), ("secret_key", good[0], key)):
            result = prober.probe(_unchecked(vendor, bucket, access, secret))
            assert (result.verdict, result.field, result.steps) == ("refused", field, ()), key
            assert key not in result.summary()
    assert listener.connections() == 0


@pytest.mark.parametrize("vendor", [99, 1000, -1])
def test_a_vendor_code_recbot_does_not_know_is_refused_never_an_exception(vendor) -> None:
    """What a sealed change an older recbot opened may hold: refused as the form would, before
    anything is looked up in the catalog from it. No endpoint override: the catalog's host of
    the vendor is what was looked up; the code is refused before anything connects."""
    config = StorageConfig(vendor=vendor, bucket="recordings", access_key="AKIA0000EXAMPLE", secret_key="secret-0000")
    result = Prober(timeout=1).probe(config)
    assert (result.verdict, result.field, result.steps) == ("refused", "bucket", ())
    assert result.summary().startswith(f"refused before connecting to unknown vendor ({vendor}): Vendor must be one of")


def test_an_azure_account_name_refused_is_not_shown(listener) -> None:
    prober = Prober(s3_endpoint=listener.url, azure_endpoint=listener.url, timeout=1)
    result = prober.probe(_unchecked(Vendor.AZURE, "recordings", "127.0.0.1:9/x<!here>", AZURITE_KEY))
    assert (result.verdict, result.field) == ("refused", "access_key")
    assert result.endpoint == listener.url and "<!here>" not in result.summary() and "account" not in result.endpoint


@pytest.mark.parametrize(
    ("actions", "outcomes", "summary"),
    [
        (("s3:PutObject",), ["ok", "not permitted", "not permitted"], "write: ok at"),
        (("s3:PutObject", "s3:GetObject"), ["ok", "ok", "not permitted"], "write, read: ok at"),
    ],
    ids=["put-only", "put-and-get"],
)
def test_write_only_keys_pass_and_the_object_left_is_named(s3, actions, outcomes, summary) -> None:
    keys = s3.user(f"write-only-{len(actions)}", *actions)
    result = Prober(s3_endpoint=s3.url).probe(storage(Vendor.HUAWEI, BUCKET, keys.access, keys.secret))
    assert result.verdict == "ok" and result.field is None, result
    assert [s.outcome for s in result.steps] == outcomes
    assert result.left_behind is not None and result.left_behind in s3.objects(BUCKET)
    denied = " and ".join(s.name for s in result.steps if s.outcome == "not permitted")
    assert result.summary().startswith(summary)
    assert (
        f"; {denied} not permitted (write-only keys), so `{result.left_behind}` stays in the bucket" in result.summary()
    )


def test_an_unreachable_endpoint_is_a_warning_not_a_refusal() -> None:
    result = Prober(s3_endpoint=f"http://127.0.0.1:{free_port()}").probe(
        storage(Vendor.ALIBABA, "b-bucket", "AKIA0000", "secret-0000")
    )
    assert result.verdict == "unreachable" and result.field is None
    assert "could not reach" in result.summary() and "not checked" in result.summary()


def test_a_silent_endpoint_gets_one_connection_per_check_and_times_out(listener) -> None:
    """One attempt per request, and the write's time-out ends the check: the endpoint sees
    exactly one connection for each check (botocore's retries made it two)."""
    prober = Prober(s3_endpoint=listener.url, timeout=0.5)
    for checks in (1, 2):
        result = prober.probe(storage(Vendor.TENCENT, BUCKETS[Vendor.TENCENT], "AKIA0000", "secret-0000"))
        assert result.verdict == "unreachable" and result.steps == (Step("write", "timed out"),)
        assert "could not reach" in result.summary() and "(timed out)" in result.summary()
        assert listener.connections() == checks


def test_the_timeout_starts_once_the_client_is_made(listener, monkeypatch) -> None:
    """Loading the SDK and making the client is local work (the first check after a start
    loads boto3): it does not eat the endpoint's time, which a slow machine made flaky."""
    now = [0.0]
    prober = Prober(s3_endpoint=listener.url, timeout=0.5, clock=lambda: now[0])
    make_client = Prober._s3_client

    def slow_to_make(self, *args, **kwargs):
        now[0] += 10.0  # far past the timeout, as a loaded machine importing boto3 can be
        return make_client(self, *args, **kwargs)

    monkeypatch.setattr(Prober, "_s3_client", slow_to_make)
    result = prober.probe(storage(Vendor.TENCENT, BUCKETS[Vendor.TENCENT], "AKIA0000", "secret-0000"))
    assert result.steps == (Step("write", "timed out"),)
    assert listener.connections() == 1  # the write was sent: the endpoint had its whole time


def test_an_unexpected_sdk_error_is_a_verdict_not_an_exception(s3, writer, monkeypatch) -> None:
    from botocore.auth import S3SigV4Auth

    def broken(*args, **kwargs):
        raise UnicodeEncodeError("latin-1", writer.secret, 0, 1, "cannot encode")

    monkeypatch.setattr(S3SigV4Auth, "add_auth", broken)
    result = Prober(s3_endpoint=s3.url).probe(storage(Vendor.AMAZON_S3, BUCKET, writer.access, writer.secret))
    assert result.verdict == "error" and result.steps == (Step("write", "UnicodeEncodeError"),)
    assert "unexpected error (UnicodeEncodeError)" in result.summary() and writer.secret not in result.summary()


def test_a_client_that_cannot_be_made_is_a_verdict_not_an_exception(monkeypatch) -> None:
    import boto3

    def broken(*args, **kwargs):
        raise ValueError("AKIA0000 in the message")

    monkeypatch.setattr(boto3.session.Session, "client", broken)
    result = Prober(s3_endpoint=f"http://127.0.0.1:{free_port()}").probe(
        storage(Vendor.AMAZON_S3, BUCKET, "AKIA0000", "secret-0000")
    )
    assert (result.verdict, result.steps) == ("error", ())
    assert "could not check" in result.summary() and "ValueError" in result.summary()
    assert "AKIA0000" not in result.summary()


@pytest.fixture(scope="module")
def blob(azurite):
    azurite.container("recordings")
    return azurite


def test_azure_good_key(blob) -> None:
    result = Prober(azure_endpoint=blob.url).probe(storage(Vendor.AZURE, "recordings", AZURITE_ACCOUNT, AZURITE_KEY))
    assert result.verdict == "ok" and [s.outcome for s in result.steps] == ["ok", "ok", "ok"]
    assert AZURITE_ACCOUNT not in result.summary() and "account ...unt1" in result.summary()


@pytest.mark.parametrize(
    ("container", "key", "field", "code"),
    [
        ("recordings", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=", "secret_key", "AuthorizationFailure"),
        ("recordings", "not base64 at all", "secret_key", "InvalidSecretKey"),
        ("missing", AZURITE_KEY, "bucket", "ContainerNotFound"),
    ],
)
def test_azure_refusals(blob, container, key, field, code) -> None:
    result = Prober(azure_endpoint=blob.url).probe(
        storage(Vendor.AZURE, container, AZURITE_ACCOUNT, key.replace(" ", ""))
    )
    assert (result.verdict, result.field, result.code) == ("refused", field, code), result
    assert key not in result.summary()


def test_azure_unexpected_sdk_error_is_a_verdict(blob, monkeypatch) -> None:
    from azure.storage.blob import BlobClient

    def broken(*args, **kwargs):
        raise ValueError(AZURITE_KEY)

    monkeypatch.setattr(BlobClient, "upload_blob", broken)
    result = Prober(azure_endpoint=blob.url).probe(storage(Vendor.AZURE, "recordings", AZURITE_ACCOUNT, AZURITE_KEY))
    assert result.verdict == "error" and result.steps == (Step("write", "ValueError"),)
    assert AZURITE_KEY not in result.summary()


def test_azure_unreachable() -> None:
    result = Prober(azure_endpoint=f"http://127.0.0.1:{free_port()}", timeout=1).probe(
        storage(Vendor.AZURE, "recordings", AZURITE_ACCOUNT, AZURITE_KEY)
    )
    assert result.verdict == "unreachable"


@pytest.mark.parametrize(
    ("error", "verdict", "code", "field"),
    [
        (socket.EAI_NONAME, "refused", "NoSuchAccount", "access_key"),
        (socket.EAI_AGAIN, "unreachable", None, None),
    ],
)
def test_an_azure_account_dns_does_not_know_is_no_such_account(error, verdict, code, field) -> None:
    """The account name is the host's first label: DNS saying that host does not exist is a
    refusal. The lookup is simulated in-process (no query leaves the machine), and the check
    stops there, before any connection."""
    looked_up: list[str] = []

    def resolve(host: str, port: int) -> object:
        looked_up.append(host)
        raise socket.gaierror(error, "simulated")

    result = Prober(resolve=resolve).probe(storage(Vendor.AZURE, "recordings", "mistypedaccount1", AZURITE_KEY))
    assert looked_up == ["mistypedaccount1.blob.core.windows.net"]
    assert (result.verdict, result.code, result.field) == (verdict, code, field)
    if verdict == "refused":
        assert result.summary() == (
            "write refused at blob.core.windows.net (account ...unt1): NoSuchAccount "
            "(no Azure storage account has this name (the access key))"
        )
    else:
        assert "could not reach" in result.summary() and "name lookup failed" in result.summary()


def test_what_the_first_check_loads_is_kept_out_of_full_collections(s3, writer) -> None:
    """In a new process (start-up state frozen, as recbot/serve.py does), an S3 check imports
    boto3 and loads its model: that is frozen too, so a full collection walks what requests
    make, not the SDK. A second check freezes nothing more."""
    script = (
        "import gc, sys\n"
        "from bot.catalog import Vendor\n"
        "from bot.models import StorageConfig\n"
        "from bot.probe import Prober\n"
        "check = StorageConfig(vendor=Vendor.AMAZON_S3, region=0, bucket='probe-bucket',\n"
        "                      access_key=sys.argv[2], secret_key=sys.argv[3])\n"
        "gc.collect(); gc.freeze()\n"
        "prober = Prober(s3_endpoint=sys.argv[1])\n"
        "first = prober.probe(check).verdict\n"
        "tracked, frozen = len(gc.get_objects()), gc.get_freeze_count()\n"
        "second = prober.probe(check).verdict\n"
        "print(first, second, 'boto3' in sys.modules, tracked, frozen, gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, s3.url, writer.access, writer.secret],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    first, second, loaded, tracked, frozen, frozen_after_second = done.stdout.split()
    assert (first, second, loaded) == ("ok", "ok", "True"), done.stdout
    assert int(tracked) < TRACKED_AT_MOST, f"{tracked} objects left for every full collection to walk"
    assert int(frozen_after_second) <= int(frozen), "a second check froze more"
