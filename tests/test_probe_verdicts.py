"""The storage check's pure parts: every vendor answer the classification maps, the
check's time budget with an injected clock, and the result in words."""

from __future__ import annotations

import threading

import pytest

from bot.catalog import CATALOG, Vendor
from bot.probe_verdicts import (
    AZURE_REFUSALS,
    REGION_WHY,
    S3_REFUSALS,
    S3_REGION_CODES,
    TIMED_OUT,
    UNMAPPED_WHY,
    Answer,
    Deadline,
    Finding,
    ProbeResult,
    Step,
    classify_azure,
    classify_s3,
    run_steps,
    run_within,
)

AMAZON_REGIONS = CATALOG[Vendor.AMAZON_S3].regions
STATUS = {"NoSuchBucket": 404, "InvalidBucketName": 400, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403}


# What each refusal tells the requester: (field, why), written out so a changed word is seen.
S3_EXPECTED = {
    "NoSuchBucket": ("bucket", "no bucket of this name at this vendor and region"),
    "InvalidBucketName": ("bucket", "the vendor does not accept this bucket name"),
    "AccessDenied": ("access_key", "this access key may not write to the bucket"),
    "AllAccessDisabled": ("access_key", "all access to this bucket is disabled"),
    "AccountProblem": ("access_key", "the vendor reports a problem with this account"),
    "InvalidAccessKeyId": ("access_key", "the vendor does not know this access key"),
    "SignatureDoesNotMatch": ("secret_key", "the secret key does not belong to this access key"),
}
AZURE_EXPECTED = {
    "ContainerNotFound": ("bucket", "no container of this name in this storage account"),
    "InvalidResourceName": ("bucket", "Azure does not accept this container name"),
    "AuthenticationFailed": ("secret_key", "the account key does not belong to this storage account"),
    "InvalidAuthenticationInfo": ("secret_key", "the account key does not belong to this storage account"),
    "AuthorizationFailure": ("secret_key", "the account key was not accepted (or the account's firewall refuses it)"),
    "AuthorizationPermissionMismatch": ("access_key", "these credentials may not write to the container"),
    "AccountIsDisabled": ("access_key", "this storage account is disabled"),
    "NoSuchAccount": ("access_key", "no Azure storage account has this name (the access key)"),
}


def test_the_tables_map_exactly_the_codes_tested() -> None:
    assert set(S3_REFUSALS) == set(S3_EXPECTED) and set(AZURE_REFUSALS) == set(AZURE_EXPECTED)


@pytest.mark.parametrize("code", sorted(S3_EXPECTED))
def test_every_mapped_s3_code_is_a_refusal_of_its_field_with_its_why(code: str) -> None:
    field, why = S3_EXPECTED[code]
    found = classify_s3("write", Answer(STATUS.get(code, 403), code))
    assert found == Finding("refused", code, field, why)  # type: ignore[arg-type]
    summary = ProbeResult("refused", "h", (Step("write", code),), 1, found.code, found.field, found.why).summary()
    assert summary == f"write refused at h: {code} ({why})"


@pytest.mark.parametrize("code", sorted(AZURE_EXPECTED))
def test_every_mapped_azure_code_is_a_refusal_of_its_field_with_its_why(code: str) -> None:
    field, why = AZURE_EXPECTED[code]
    status = {"ContainerNotFound": 404, "InvalidResourceName": 400, "NoSuchAccount": 0}.get(code, 403)
    assert classify_azure("write", Answer(status, code)) == Finding("refused", code, field, why)  # type: ignore[arg-type]


REGION_ANSWERS = [
    # S3 301 PermanentRedirect: the body names the endpoint, the header the region.
    (
        Answer(301, "PermanentRedirect", {"x-amz-bucket-region": "us-west-2"}, {"Endpoint": "b.s3.amazonaws.com"}),
        "PermanentRedirect",
        "the bucket is in region us-west-2; choose US_WEST_2 (3)",
    ),
    # HEAD has no body: botocore names the answer by its status.
    (
        Answer(301, "301", {"X-Amz-Bucket-Region": "eu-west-1"}),
        "PermanentRedirect",
        "region eu-west-1; choose EU_WEST_1 (4)",
    ),
    (Answer(307, "TemporaryRedirect"), "TemporaryRedirect", REGION_WHY),
    # Signed for the wrong region: the body says which one is expected.
    (
        Answer(400, "AuthorizationHeaderMalformed", {}, {"Region": "ap-south-1"}),
        "AuthorizationHeaderMalformed",
        "the bucket is in region ap-south-1; choose AP_SOUTH_1 (14)",
    ),
    (Answer(400, "AuthorizationHeaderMalformed"), "AuthorizationHeaderMalformed", REGION_WHY),
    (
        Answer(400, "400", {"x-amz-bucket-region": "sa-east-1"}),
        "BadRequest",
        "in region sa-east-1; choose SA_EAST_1",
    ),
    (Answer(400, "IllegalLocationConstraintException"), "IllegalLocationConstraintException", REGION_WHY),
    (Answer(400, "InvalidRegion", {}, {"Region": "mars-1"}), "InvalidRegion", "region mars-1, not the one chosen"),
]


def test_every_region_code_is_tested() -> None:
    assert {code for _, code, _ in REGION_ANSWERS} >= S3_REGION_CODES


@pytest.mark.parametrize(("answer", "code", "why"), REGION_ANSWERS)
def test_a_region_answer_is_a_region_refusal_naming_the_region(answer: Answer, code: str, why: str) -> None:
    found = classify_s3("write", answer, AMAZON_REGIONS)
    assert (found.kind, found.code, found.field) == ("refused", code, "region")
    assert why in found.why


@pytest.mark.parametrize("step", ["write", "read", "delete"])
def test_an_unmapped_vendor_4xx_is_a_refusal_without_a_field(step: str) -> None:
    s3 = classify_s3(step, Answer(409, "OperationAborted"))  # type: ignore[arg-type]
    azure = classify_azure(step, Answer(409, "LeaseIdMissing"))  # type: ignore[arg-type]
    assert s3 == Finding("refused", "OperationAborted", None, UNMAPPED_WHY)
    assert azure == Finding("refused", "LeaseIdMissing", None, UNMAPPED_WHY)
    assert classify_s3(step, Answer(404, "")).code == "HTTP 404"  # type: ignore[arg-type]


def test_a_vendor_5xx_is_no_answer_not_a_refusal() -> None:
    assert classify_s3("write", Answer(503, "SlowDown")) == Finding("unreachable", "SlowDown, HTTP 503")
    assert classify_azure("write", Answer(500, "InternalError")) == Finding("unreachable", "InternalError, HTTP 500")


@pytest.mark.parametrize("step", ["read", "delete"])
def test_a_403_after_the_write_is_a_step_the_keys_may_not_do(step: str) -> None:
    assert classify_s3(step, Answer(403, "AccessDenied")).kind == "not_permitted"  # type: ignore[arg-type]
    assert classify_s3(step, Answer(403, "403")).kind == "not_permitted"  # type: ignore[arg-type]
    assert classify_azure(step, Answer(403, "AuthorizationPermissionMismatch")).kind == "not_permitted"  # type: ignore[arg-type]
    # A wrong key is still a refusal wherever it shows.
    assert classify_azure(step, Answer(403, "AuthenticationFailed")).kind == "refused"  # type: ignore[arg-type]
    assert classify_s3("write", Answer(403, "AccessDenied")).kind == "refused"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_step_gets_only_what_the_earlier_ones_left() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock)
    budgets: list[float] = []

    def step(spends: float):
        def run(budget: float) -> Finding | None:
            budgets.append(budget)
            clock.now += spends
            return None

        return run

    steps = [("write", step(2.0)), ("read", step(1.5)), ("delete", step(0.5))]
    result = run_steps("host", ".recbot-probe/x", steps, deadline, within=lambda run, budget: run(budget))
    assert budgets == [5.0, 3.0, 1.5]
    assert result.verdict == "ok" and result.millis == 4000 and result.left_behind is None


def test_a_step_with_no_time_left_is_not_run_and_the_check_timed_out() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock)
    ran: list[str] = []

    def spend(name: str, seconds: float):
        def run(budget: float) -> Finding | None:
            ran.append(name)
            clock.now += seconds
            return None

        return run

    steps = [("write", spend("write", 3.0)), ("read", spend("read", 2.5)), ("delete", spend("delete", 0.1))]
    result = run_steps("host", ".recbot-probe/x", steps, deadline, within=lambda run, budget: run(budget))
    assert ran == ["write", "read"]
    assert result.verdict == "unreachable" and result.steps[-1] == Step("delete", "timed out")
    assert result.left_behind == ".recbot-probe/x"
    assert result.summary() == (
        "could not reach host (timed out), so the bucket and keys were not checked; "
        "`.recbot-probe/x` was written and not deleted"
    )


def test_a_step_that_hangs_is_given_up_on() -> None:
    """A name lookup has no timeout of its own: the step is left to end in the background."""
    release = threading.Event()

    def hang(budget: float) -> Finding | None:
        release.wait(30)
        return None

    try:
        assert run_within(hang, 0.05) is TIMED_OUT
    finally:
        release.set()
    assert run_within(lambda budget: Finding("refused", "X"), 5.0) == Finding("refused", "X")
    with pytest.raises(KeyError):
        run_within(lambda budget: {}["missing"], 5.0)


def test_an_unexpected_exception_in_a_step_is_an_error_verdict() -> None:
    def broken(budget: float) -> Finding | None:
        raise UnicodeEncodeError("latin-1", "é", 0, 1, "no")

    result = run_steps("host", "o", [("write", broken)], Deadline(5.0, FakeClock()))
    assert result.verdict == "error" and result.steps == (Step("write", "UnicodeEncodeError"),)
    assert result.summary() == (
        "write failed at host with an unexpected error (UnicodeEncodeError), so the bucket and keys were not checked"
    )


@pytest.mark.parametrize(
    ("result", "text"),
    [
        (
            ProbeResult("ok", "h", (Step("write", "ok"), Step("read", "ok"), Step("delete", "ok")), 12),
            "write, read, delete: ok at h, 12 ms",
        ),
        (
            ProbeResult(
                "ok",
                "h",
                (Step("write", "ok"), Step("read", "ok"), Step("delete", "not permitted")),
                9,
                left_behind="o",
            ),
            "write, read: ok at h, 9 ms; delete not permitted (write-only keys), so `o` stays in the bucket",
        ),
        (
            ProbeResult(
                "refused",
                "h",
                (Step("write", "ok"), Step("read", "SizeMismatch")),
                5,
                "SizeMismatch",
                None,
                "3 bytes",
                "o",
            ),
            "read refused at h: SizeMismatch (3 bytes); `o` was written and not deleted",
        ),
        (
            ProbeResult("refused", "h", (Step("write", "PermanentRedirect"),), 5, "PermanentRedirect", "region", "why"),
            "write refused at h: PermanentRedirect (why)",
        ),
        (
            ProbeResult("refused", "h", (), 0, "InvalidBucketName", "bucket", "rule."),
            "refused before connecting to h: rule.",
        ),
        (ProbeResult("error", "h", (), 0, why="unexpected ValueError"), "could not check at h (unexpected ValueError)"),
    ],
)
def test_the_result_in_words(result: ProbeResult, text: str) -> None:
    assert result.summary().startswith(text)
