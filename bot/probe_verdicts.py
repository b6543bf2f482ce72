"""The storage check's pure parts: what a vendor's answer means (a refusal of which
field, a step the keys may not do, or no answer), the check's time budget, the
step loop, and the result in words. No SDK is imported here (see bot/probe.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.catalog import StorageRegion

StepName = Literal["write", "read", "delete"]
Verdict = Literal["ok", "refused", "unreachable", "error"]
Field = Literal["bucket", "access_key", "secret_key", "region"]

UNMAPPED_WHY = "the vendor refused it"
REGION_WHY = "the bucket is in another region than the one chosen"

# A vendor's error code -> (the form field it concerns, why, for a person): a definite refusal.
S3_REFUSALS: dict[str, tuple[Field, str]] = {
    "NoSuchBucket": ("bucket", "no bucket of this name at this vendor and region"),
    "InvalidBucketName": ("bucket", "the vendor does not accept this bucket name"),
    "AccessDenied": ("access_key", "this access key may not write to the bucket"),
    "AllAccessDisabled": ("access_key", "all access to this bucket is disabled"),
    "AccountProblem": ("access_key", "the vendor reports a problem with this account"),
    "InvalidAccessKeyId": ("access_key", "the vendor does not know this access key"),
    "SignatureDoesNotMatch": ("secret_key", "the secret key does not belong to this access key"),
}
# Codes that say the bucket is in another region; botocore would follow them, recbot refuses.
S3_REGION_CODES = frozenset(
    {
        "PermanentRedirect",
        "TemporaryRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "InvalidRegion",
    }
)
# botocore names a bodiless answer (HEAD) by its status.
S3_STATUS_CODES = {"301": "PermanentRedirect", "307": "TemporaryRedirect", "400": "BadRequest", "403": "AccessDenied"}

AZURE_REFUSALS: dict[str, tuple[Field, str]] = {
    "ContainerNotFound": ("bucket", "no container of this name in this storage account"),
    "InvalidResourceName": ("bucket", "Azure does not accept this container name"),
    "AuthenticationFailed": ("secret_key", "the account key does not belong to this storage account"),
    "InvalidAuthenticationInfo": ("secret_key", "the account key does not belong to this storage account"),
    # Azurite's answer to a wrong key; Azure's to a request the account's firewall refuses.
    "AuthorizationFailure": ("secret_key", "the account key was not accepted (or the account's firewall refuses it)"),
    "AuthorizationPermissionMismatch": ("access_key", "these credentials may not write to the container"),
    "AccountIsDisabled": ("access_key", "this storage account is disabled"),
    "NoSuchAccount": ("access_key", "no Azure storage account has this name (the access key)"),
}


@dataclass(frozen=True)
class Answer:
    """A vendor's error answer as the SDK reported it; `details` are the error body's
    other elements (Region, Endpoint, ...)."""

    status: int
    code: str
    headers: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """What one step met: a refusal (of `field`, when known), a step these keys may not
    do (write-only keys), or no answer (`code` then says why: "timed out", ...)."""

    kind: Literal["refused", "not_permitted", "unreachable"]
    code: str
    field: Field | None = None
    why: str = ""


TIMED_OUT = Finding("unreachable", "timed out")


def refused(code: str, mapping: Mapping[str, tuple[Field, str]]) -> Finding:
    mapped_field, why = mapping.get(code, (None, UNMAPPED_WHY))
    return Finding("refused", code, mapped_field, why)


def _region_why(region: str | None, regions: Sequence[StorageRegion]) -> str:
    if not region:
        return REGION_WHY
    listed = next((r for r in regions if r.s3_region == region), None)
    choose = f"; choose {listed.name} ({listed.code})" if listed else ", not the one chosen"
    return f"the bucket is in region {region}{choose}"


def classify_s3(step: StepName, answer: Answer, regions: Sequence[StorageRegion] = ()) -> Finding:
    """An S3-compatible vendor's error answer at `step`. A redirect to another region is a
    refusal naming that region, never followed; a 403 on the read-back or the delete is a
    step the keys may not do (the write already proved them), not a refusal."""
    code = S3_STATUS_CODES.get(answer.code, answer.code) or f"HTTP {answer.status}"
    headers = {k.lower(): v for k, v in answer.headers.items()}
    region = headers.get("x-amz-bucket-region") or answer.details.get("Region")
    if code in S3_REGION_CODES or answer.status in (301, 302, 307) or (answer.status == 400 and region):
        return Finding("refused", code, "region", _region_why(region, regions))
    if step != "write" and answer.status == 403:
        return Finding("not_permitted", code)
    if code in S3_REFUSALS or 400 <= answer.status < 500:
        return refused(code, S3_REFUSALS)
    return Finding("unreachable", f"{code}, HTTP {answer.status}")


def classify_azure(step: StepName, answer: Answer) -> Finding:
    """Azure Blob Storage's error answer at `step` (as classify_s3; Azure has no region)."""
    code = answer.code or f"HTTP {answer.status}"
    wrong_key = AZURE_REFUSALS.get(code, (None, ""))[0] == "secret_key"
    if step != "write" and answer.status == 403 and not wrong_key and code != "AccountIsDisabled":
        return Finding("not_permitted", code)
    if code in AZURE_REFUSALS or 400 <= answer.status < 500:
        return refused(code, AZURE_REFUSALS)
    return Finding("unreachable", f"{code}, HTTP {answer.status}")


class Deadline:
    """The whole check's time: each step gets only what the earlier ones left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._end = self._start + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())

    def elapsed_ms(self) -> int:
        return round((self._clock() - self._start) * 1000)


# How long past its budget a step may run before it is given up on: the SDK's own
# timeout (set to the same budget) normally ends it first, with its own words.
GRACE_SECONDS = 0.25
StepFn = Callable[[float], Finding | None]


def run_within(step: StepFn, budget: float) -> Finding | None:
    """Run `step(budget)` and wait at most the budget (and the grace): nothing an SDK
    does, such as a name lookup, which has no timeout, can hold the check longer. A step
    given up on ends by itself at its own timeout, in the background."""
    box: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            box.append((True, step(budget)))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which makes it a verdict
            box.append((False, exc))

    thread = threading.Thread(target=run, name="storage-check-step", daemon=True)
    thread.start()
    thread.join(budget + GRACE_SECONDS)
    if not box:
        return TIMED_OUT
    finished, value = box[0]
    if not finished:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Step:
    name: StepName
    outcome: str  # "ok", "not permitted", or the vendor's error code / the network failure


@dataclass(frozen=True)
class ProbeResult:
    """What the check found; nothing in it carries a key."""

    verdict: Verdict
    endpoint: str
    steps: tuple[Step, ...]
    millis: int
    code: str | None = None
    field: Field | None = None
    why: str = ""
    left_behind: str | None = None  # the test object, written and not deleted

    def summary(self) -> str:
        left = f"`{self.left_behind}`" if self.left_behind else ""
        if self.verdict == "ok":
            done = ", ".join(s.name for s in self.steps if s.outcome == "ok")
            text = f"{done}: ok at {self.endpoint}, {self.millis} ms"
            denied = " and ".join(s.name for s in self.steps if s.outcome == "not permitted")
            if denied:
                text += f"; {denied} not permitted (write-only keys)"
            return text + (f", so {left} stays in the bucket" if left else "")
        kept = f"; {left} was written and not deleted" if left else ""
        if not self.steps:
            if self.verdict == "refused":
                return f"refused before connecting to {self.endpoint}: {self.why}"
            return f"could not check at {self.endpoint} ({self.why}), so the bucket and keys were not checked"
        failed = self.steps[-1]
        if self.verdict == "unreachable":
            return f"could not reach {self.endpoint} ({failed.outcome}), so the bucket and keys were not checked{kept}"
        if self.verdict == "error":
            return (
                f"{failed.name} failed at {self.endpoint} with an unexpected error ({failed.outcome}), "
                f"so the bucket and keys were not checked{kept}"
            )
        return f"{failed.name} refused at {self.endpoint}: {self.code} ({self.why}){kept}"


def run_steps(
    endpoint: str,
    written: str,
    steps: Sequence[tuple[StepName, StepFn]],
    deadline: Deadline,
    within: Callable[[StepFn, float], Finding | None] = run_within,
) -> ProbeResult:
    """Run the steps in order within the deadline; the first refusal, silence or
    unexpected error ends the check. `written` names the test object the write makes."""
    done: list[Step] = []

    def result(verdict: Verdict, found: Finding | None = None) -> ProbeResult:
        wrote = bool(done) and done[0] == Step("write", "ok")
        deleted = Step("delete", "ok") in done
        code, field_, why = (
            (found.code, found.field, found.why) if found and found.kind == "refused" else (None, None, "")
        )
        left = written if wrote and not deleted else None
        return ProbeResult(verdict, endpoint, tuple(done), deadline.elapsed_ms(), code, field_, why, left)

    for name, step in steps:
        budget = deadline.left()
        try:
            found = within(step, budget) if budget > 0 else TIMED_OUT
        except Exception as exc:  # noqa: BLE001 - an SDK raising what it does not document: a verdict
            done.append(Step(name, type(exc).__name__))
            return result("error")
        if found is None or found.kind == "not_permitted":
            done.append(Step(name, "ok" if found is None else "not permitted"))
            continue
        done.append(Step(name, found.code))
        return result("refused" if found.kind == "refused" else "unreachable", found)
    return result("ok")
