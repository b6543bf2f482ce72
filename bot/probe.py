"""The storage credential probe: write a small object at the vendor's endpoint
for the chosen region, read its size back, delete it. It runs before anyone is
asked to approve and again just before the PATCH, so a wrong bucket, key or
region is found before a recording is lost, not after."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from bot.catalog import Vendor, vendor_info
from bot.models import StorageConfig, fingerprint

log = logging.getLogger(__name__)

# The SDKs log each request's headers at DEBUG, and the Authorization header
# names the access key: their loggers never go below WARNING, whatever the root level.
for _sdk in ("botocore", "boto3", "s3transfer", "urllib3", "azure"):
    logging.getLogger(_sdk).setLevel(logging.WARNING)

PROBE_PREFIX = ".recbot-probe/"
PROBE_BODY = b"recbot checks that recordings can be written here; this object is deleted at once.\n"

ProbeMode = Literal["require", "warn", "off"]
Verdict = Literal["ok", "refused", "unreachable"]
Field = Literal["bucket", "access_key", "secret_key", "region"]

# A vendor's error code -> the form field it concerns (a definite refusal).
S3_REFUSALS: dict[str, Field] = {
    "NoSuchBucket": "bucket",
    "InvalidBucketName": "bucket",
    "AccessDenied": "access_key",
    "AllAccessDisabled": "access_key",
    "AccountProblem": "access_key",
    "InvalidAccessKeyId": "access_key",
    "SignatureDoesNotMatch": "secret_key",
    "AuthorizationHeaderMalformed": "region",
    "PermanentRedirect": "region",
    "IllegalLocationConstraintException": "region",
    "InvalidRegion": "region",
}
AZURE_REFUSALS: dict[str, Field] = {
    "ContainerNotFound": "bucket",
    "InvalidResourceName": "bucket",
    "AuthenticationFailed": "secret_key",
    "InvalidAuthenticationInfo": "secret_key",
    "AuthorizationFailure": "secret_key",
    "AuthorizationPermissionMismatch": "access_key",
    "AccountIsDisabled": "access_key",
}
WHY: dict[Field, str] = {
    "bucket": "check the bucket (container) name",
    "access_key": "this access key may not write to the bucket",
    "secret_key": "the secret key does not belong to this access key",
    "region": "the bucket is in another region than the one chosen",
}


@dataclass(frozen=True)
class Step:
    name: Literal["write", "read", "delete"]
    outcome: str  # "ok", "not permitted", or the vendor's error code / the network failure


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found; nothing in it carries a key."""

    verdict: Verdict
    endpoint: str
    steps: tuple[Step, ...]
    millis: int
    code: str | None = None
    field: Field | None = None
    left_behind: str | None = None  # an object the keys may not delete (write-only keys are legitimate)

    def summary(self) -> str:
        if self.verdict == "ok":
            done = ", ".join(step.name for step in self.steps if step.outcome == "ok")
            text = f"{done}: ok at {self.endpoint}, {self.millis} ms"
            if self.left_behind:
                text += f"; delete not permitted (write-only keys), so `{self.left_behind}` stays in the bucket"
            return text
        failed = self.steps[-1]
        if self.verdict == "unreachable":
            return f"could not reach {self.endpoint} ({failed.outcome}), so the bucket and keys were not checked"
        why = WHY[self.field] if self.field else "the vendor refused it"
        return f"{failed.name} refused at {self.endpoint}: {self.code} ({why})"


class _Refused(Exception):
    def __init__(self, code: str, field: Field | None) -> None:
        self.code, self.field = code, field


class _Unreachable(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


class Prober:
    """Probes storage configs as RECBOT_STORAGE_PROBE says. The endpoint
    overrides point every vendor at one local server (tests, air-gapped sites)."""

    def __init__(
        self,
        mode: ProbeMode = "require",
        *,
        s3_endpoint: str | None = None,
        azure_endpoint: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.mode = mode
        self._s3_endpoint = s3_endpoint.rstrip("/") if s3_endpoint else None
        self._azure_endpoint = azure_endpoint.rstrip("/") if azure_endpoint else None
        self._timeout = timeout
        # One session keeps the loaded service models (building them is ~100 ms of CPU per client);
        # a session is not thread-safe, so clients are made under a lock. Clients themselves are.
        # It is made at the first check: the SDKs are imported only then (see _s3).
        self._session: Any = None
        self._session_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def blocks(self) -> bool:
        """Whether a definite refusal stops the change (else it is a warning)."""
        return self.mode == "require"

    def probe(self, storage: StorageConfig) -> ProbeResult:
        """Write, read back and delete one small object with `storage`'s keys, in memory only."""
        assert storage.access_key is not None and storage.secret_key is not None
        name = PROBE_PREFIX + secrets.token_hex(8)
        if storage.vendor == Vendor.AZURE:
            endpoint, steps = self._azure(storage, name)
        else:
            endpoint, steps = self._s3(storage, name)
        began = time.monotonic()
        done: list[Step] = []
        left_behind = None
        try:
            for step_name, run in steps:
                try:
                    run()
                except _Refused as refused:
                    if step_name == "delete" and refused.field == "access_key":
                        done.append(Step("delete", "not permitted"))
                        left_behind = name
                        continue
                    done.append(Step(step_name, refused.code))
                    return self._result("refused", endpoint, done, began, refused.code, refused.field)
                done.append(Step(step_name, "ok"))
        except _Unreachable as unreachable:
            done.append(Step(steps[len(done)][0], unreachable.why))
            return self._result("unreachable", endpoint, done, began)
        return self._result("ok", endpoint, done, began, left_behind=left_behind)

    def _result(
        self,
        verdict: Verdict,
        endpoint: str,
        steps: list[Step],
        began: float,
        code: str | None = None,
        field: Field | None = None,
        left_behind: str | None = None,
    ) -> ProbeResult:
        result = ProbeResult(
            verdict, endpoint, tuple(steps), round((time.monotonic() - began) * 1000), code, field, left_behind
        )
        log.info("storage probe at %s: %s %s", endpoint, verdict, code or "")
        return result

    def _s3(self, storage: StorageConfig, name: str) -> tuple[str, list[tuple[Any, Any]]]:
        # Imported here, not at start: boto3 and botocore are tens of thousands of objects
        # that every full garbage collection would walk, slowing every ack of a bot that never probes.
        import boto3
        from botocore.config import Config
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            ParamValidationError,
            ReadTimeoutError,
        )

        info = vendor_info(storage.vendor)
        host, region = info.endpoint(storage.region)
        url = self._s3_endpoint or f"https://{host}"
        if self._s3_endpoint:
            region = "us-east-1"  # one local server stands in for every vendor and region
        with self._session_lock:
            if self._session is None:
                self._session = boto3.session.Session()
            client = self._session.client(
                "s3",
                endpoint_url=url,
                region_name=region,
                aws_access_key_id=storage.access_key.get_secret_value(),  # type: ignore[union-attr]
                aws_secret_access_key=storage.secret_key.get_secret_value(),  # type: ignore[union-attr]
                config=Config(
                    signature_version="s3v4",
                    # A local override serves every bucket under one host; real vendors want virtual hosts.
                    s3={"addressing_style": "path" if self._s3_endpoint or info.path_style else "virtual"},
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": 1, "mode": "standard"},
                    # S3-compatible vendors refuse the newer default checksum headers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        bucket = storage.bucket

        def call(method: Any, **kwargs: Any) -> Any:
            try:
                return method(Bucket=bucket, Key=name, **kwargs)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "error"))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in S3_REFUSALS or 400 <= status < 500:
                    raise _Refused(code if code != "404" else "NoSuchBucket", S3_REFUSALS.get(code)) from None
                raise _Unreachable(f"{code}, HTTP {status}") from None
            except ParamValidationError:  # boto3 refuses the bucket name before sending anything
                raise _Refused("InvalidBucketName", "bucket") from None
            except (ConnectTimeoutError, ReadTimeoutError):
                raise _Unreachable("timed out") from None
            except BotoCoreError as exc:
                raise _Unreachable(type(exc).__name__) from None

        def read() -> None:
            size = call(client.head_object)["ContentLength"]
            if size != len(PROBE_BODY):
                raise _Refused(f"size {size} read back, {len(PROBE_BODY)} written", None)

        return host if not self._s3_endpoint else url, [
            ("write", lambda: call(client.put_object, Body=PROBE_BODY)),
            ("read", read),
            ("delete", lambda: call(client.delete_object)),
        ]

    def _azure(self, storage: StorageConfig, name: str) -> tuple[str, list[tuple[Any, Any]]]:
        from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
        from azure.storage.blob import BlobServiceClient

        account = storage.access_key.get_secret_value()  # type: ignore[union-attr]
        url = (
            f"{self._azure_endpoint}/{account}" if self._azure_endpoint else f"https://{account}.blob.core.windows.net"
        )
        # The account name is the access key: shown as its fingerprint only.
        shown = self._azure_endpoint or "blob.core.windows.net"
        shown = f"{shown} (account {fingerprint(account)})"

        def call(step: str) -> None:
            try:
                base64.b64decode(storage.secret_key.get_secret_value(), validate=True)  # type: ignore[union-attr]
            except binascii.Error:
                raise _Refused("InvalidAccountKey", "secret_key") from None
            try:
                client = BlobServiceClient(
                    account_url=url,
                    credential={"account_name": account, "account_key": storage.secret_key.get_secret_value()},  # type: ignore[union-attr]
                    retry_total=0,
                    connection_timeout=self._timeout,
                    read_timeout=self._timeout,
                )
                blob = client.get_blob_client(container=storage.bucket, blob=name)
                if step == "write":
                    blob.upload_blob(PROBE_BODY, overwrite=True)
                elif step == "read":
                    size = blob.get_blob_properties().size
                    if size != len(PROBE_BODY):
                        raise _Refused(f"size {size} read back, {len(PROBE_BODY)} written", None)
                else:
                    blob.delete_blob()
            except HttpResponseError as exc:
                error_code = getattr(exc, "error_code", None)
                code = str(getattr(error_code, "value", error_code) or f"HTTP {exc.status_code}")
                if code in AZURE_REFUSALS or 400 <= (exc.status_code or 0) < 500:
                    raise _Refused(code, AZURE_REFUSALS.get(code)) from None
                raise _Unreachable(code) from None
            except (ServiceRequestError, ServiceResponseError) as exc:
                raise _Unreachable("timed out" if "timed out" in str(exc).lower() else type(exc).__name__) from None
            except AzureError as exc:
                raise _Unreachable(type(exc).__name__) from None

        return shown, [
            ("write", lambda: call("write")),
            ("read", lambda: call("read")),
            ("delete", lambda: call("delete")),
        ]
