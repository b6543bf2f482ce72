"""Gaps a mutation spot check found in the storage check's tests (issue 16): a redirect
with no error code, a disabled account met after the write, and the check's deadline
as the Prober keeps it end to end."""

from __future__ import annotations

import pytest

from bot.catalog import CATALOG, Vendor
from bot.models import StorageConfig
from bot.probe import Prober, Step
from bot.probe_verdicts import Answer, classify_azure, classify_s3
from tests.storage_endpoints import ScriptedS3


@pytest.mark.parametrize("step", ["write", "read", "delete"])
@pytest.mark.parametrize(("status", "code"), [(301, ""), (302, "302"), (307, "")])
def test_a_redirect_without_a_region_code_is_still_a_region_refusal(step, status, code) -> None:
    """A bodiless redirect (a HEAD, or a vendor that sends no XML) names no code: its status
    alone says the bucket answers elsewhere, which recbot refuses, never follows."""
    found = classify_s3(step, Answer(status, code), CATALOG[Vendor.AMAZON_S3].regions)
    assert (found.kind, found.field) == ("refused", "region")
    assert found.why == "the bucket is in another region than the one chosen"


@pytest.mark.parametrize("step", ["read", "delete"])
def test_a_disabled_azure_account_after_the_write_is_a_refusal_not_write_only_keys(step) -> None:
    found = classify_azure(step, Answer(403, "AccountIsDisabled"))
    assert (found.kind, found.code, found.field) == ("refused", "AccountIsDisabled", "access_key")
    assert found.why == "this storage account is disabled"


def test_the_whole_check_ends_within_its_timeout_a_step_with_no_time_left_is_not_sent() -> None:
    """Each answer "takes" 0.6 of the timeout on the check's clock: the write and the read fit,
    the delete has nothing left, so it is not sent and the check says it timed out."""
    server = ScriptedS3()
    timeout = 10.0  # the read really has 0.4 of it: room for a slow machine
    try:
        prober = Prober(s3_endpoint=server.url, timeout=timeout, clock=lambda: 0.6 * timeout * len(server.requests))
        storage = StorageConfig(vendor=Vendor.AMAZON_S3, bucket="probe-bucket", access_key="AKIA0000", secret_key="s")
        result = prober.probe(storage)
        methods = server.methods()
    finally:
        server.stop()
    assert methods == ["PUT", "HEAD"]
    assert result.verdict == "unreachable"
    assert result.steps == (Step("write", "ok"), Step("read", "ok"), Step("delete", "timed out"))
    assert result.left_behind is not None and result.left_behind in result.summary()
