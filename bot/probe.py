"""The storage credential probe: write a small object at the vendor's endpoint
for the chosen region, read its size back, delete it. It runs before anyone is
asked to approve and again just before the PATCH, so a wrong bucket, key or
region is found before a recording is lost, not after. What an answer means is
decided in bot/probe_verdicts.py; this module only talks to the SDKs."""

from __future__ import annotations

import gc
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from bot.catalog import Vendor, known_vendor, vendor_info, vendor_name
from bot.metrics import Metrics
from bot.models import StorageConfig, StorageField, fingerprint, typed_problems
from bot.probe_verdicts import (
    AZURE_REFUSALS,
    S3_REFUSALS,
    TIMED_OUT,
    Answer,
    Deadline,
    Finding,
    ProbeResult,
    Step,
    StepFn,
    StepName,
    classify_azure,
    classify_s3,
    refused,
    run_steps,
)

__all__ = ["PROBE_BODY", "PROBE_PREFIX", "ProbeMode", "ProbeResult", "Prober", "Step"]

log = logging.getLogger(__name__)

# The SDKs log each request's headers at DEBUG, and the Authorization header
# names the access key: their loggers never go below WARNING, whatever the root level.
for _sdk in ("botocore", "boto3", "s3transfer", "urllib3", "azure"):
    logging.getLogger(_sdk).setLevel(logging.WARNING)

PROBE_PREFIX = ".recbot-probe/"
PROBE_BODY = b"recbot checks that recordings can be written here; this object is deleted at once.\n"

ProbeMode = Literal["require", "warn", "off"]
# A typed value the vendor would not accept, refused before any connection.
INVALID_CODES = {"bucket": "InvalidBucketName", "access_key": "InvalidAccessKey", "secret_key": "InvalidSecretKey"}


class _Found(Exception):
    """Carries what an SDK call met out to its step."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding


def _step(run: Callable[[float], None]) -> StepFn:
    def step(budget: float) -> Finding | None:
        try:
            run(budget)
        except _Found as found:
            return found.finding
        return None

    return step


def _no_region_redirect(context: dict[str, Any], **_: Any) -> None:
    """botocore follows an S3 redirect to the bucket's own region (signing again, for a
    second request) unless the request counts as redirected already; recbot refuses the
    region instead (classify_s3). tests/test_probe_endpoints.py sees that one request is sent."""
    context.setdefault("s3_redirect", {})["redirected"] = True


class Prober:
    """Probes storage configs as RECBOT_STORAGE_PROBE says. The endpoint overrides
    point every vendor at one local server (tests, air-gapped sites). `resolve` looks a
    host name up (DNS), `clock` times the check: seams for the tests."""

    def __init__(
        self,
        mode: ProbeMode = "require",
        *,
        s3_endpoint: str | None = None,
        azure_endpoint: str | None = None,
        timeout: float = 5.0,
        resolve: Callable[[str, int], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.mode = mode
        self._metrics = metrics or Metrics()
        self._s3_endpoint = s3_endpoint.rstrip("/") if s3_endpoint else None
        self._azure_endpoint = azure_endpoint.rstrip("/") if azure_endpoint else None
        self._timeout = timeout
        self._resolve = resolve or _look_up
        self._clock = clock
        # One session keeps the loaded service models (building them is ~100 ms of CPU per client);
        # a session is not thread-safe, so clients are made under a lock. Clients themselves are.
        # It is made at the first check: the SDKs are imported only then (see _s3_client).
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
        """Write, read back and delete one small object with `storage`'s keys, in memory only,
        within the timeout for the whole check. Never raises: anything unexpected is a verdict."""
        began = self._clock()
        result = self._check(storage)
        sdk = _SDK_OF_AZURE if storage.vendor == Vendor.AZURE else _SDK_OF_S3
        if sdk not in _frozen_after and sdk in sys.modules:  # the first check that loaded it
            _frozen_after.add(sdk)
            _freeze_what_lives_on()
        vendor = vendor_key(storage.vendor)
        self._metrics.storage_checks.labels(vendor=vendor, outcome=result.verdict).inc()
        self._metrics.storage_check_seconds.labels(vendor=vendor).observe(max(0.0, self._clock() - began))
        return result

    def _check(self, storage: StorageConfig) -> ProbeResult:
        """The check itself; `probe` counts and times it."""
        problems = typed_problems(storage)  # first: nothing is looked up or shown from a value the vendor refuses
        shown = self._shown(storage, problems)
        if problems:  # the form refuses these already; nothing typed may choose where recbot connects
            field, why = next(iter(problems.items()))
            result = ProbeResult("refused", shown, (), 0, INVALID_CODES[field], field, why)
        else:
            began = Deadline(self._timeout, self._clock)
            name = PROBE_PREFIX + secrets.token_hex(8)
            try:
                azure = storage.vendor == Vendor.AZURE
                steps = self._azure_steps(storage, name) if azure else self._s3_steps(storage, name)
                # The timeout is the endpoint's: it starts once the SDK is loaded and the client made,
                # local work that the first check after a start pays (loading boto3 takes a while).
                result = run_steps(shown, name, steps, Deadline(self._timeout, self._clock))
            except Exception as exc:  # noqa: BLE001 - a client that cannot be made: its type, never its words (a key)
                result = ProbeResult("error", shown, (), began.elapsed_ms(), why=f"unexpected {type(exc).__name__}")
        log.info("storage probe at %s: %s %s", shown, result.verdict, result.code or "")
        return result

    def _shown(self, storage: StorageConfig, problems: Mapping[StorageField, str]) -> str:
        """The endpoint as people see it: the catalog's host, never a key; a vendor recbot
        does not know by its code alone, and an Azure account it refuses not at all."""
        info = known_vendor(storage.vendor)
        if info is None:
            return vendor_name(storage.vendor)
        if info.vendor == Vendor.AZURE:
            host = self._azure_endpoint or "blob.core.windows.net"
            if "access_key" in problems or storage.access_key is None:
                return host
            return f"{host} (account {fingerprint(storage.access_key)})"
        return self._s3_endpoint or info.endpoint(storage.region)[0]

    def _s3_client(self, storage: StorageConfig, timeout: float) -> Any:
        # Imported here, not at start: boto3 and botocore are tens of thousands of objects
        # that every full garbage collection would walk, slowing every ack of a bot that never probes.
        import boto3
        from botocore.config import Config
        from botocore.handlers import add_expect_header

        info = vendor_info(storage.vendor)
        host, region = info.endpoint(storage.region)
        url = self._s3_endpoint or f"https://{host}"  # the catalog's host: typed text never chooses it
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
                    # A local override serves every bucket under one host; real vendors want virtual
                    # hosts (botocore puts a name with '.' in the path: catalog.request_host says the same).
                    s3={"addressing_style": "path" if self._s3_endpoint or info.path_style else "virtual"},
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    # One attempt per request: `max_attempts` counts retries, `total_max_attempts` attempts.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    # S3-compatible vendors refuse the newer default checksum headers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        # No "Expect: 100-continue" on the write: against a silent endpoint it waits a second more.
        client.meta.events.unregister("before-call.s3", add_expect_header)
        client.meta.events.register("before-call.s3", _no_region_redirect)
        return client

    def _s3_steps(self, storage: StorageConfig, name: str) -> list[tuple[StepName, StepFn]]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            ParamValidationError,
            ReadTimeoutError,
        )

        client = self._s3_client(storage, self._timeout)
        regions = vendor_info(storage.vendor).regions

        def call(step: StepName, method: Any, **kwargs: Any) -> Any:
            try:
                return method(Bucket=storage.bucket, Key=name, **kwargs)
            except ClientError as exc:
                raise _Found(classify_s3(step, _s3_answer(exc.response), regions)) from None
            except ParamValidationError:  # botocore refuses the bucket name before sending anything
                raise _Found(refused("InvalidBucketName", S3_REFUSALS)) from None
            except (ConnectTimeoutError, ReadTimeoutError):
                raise _Found(TIMED_OUT) from None
            except BotoCoreError as exc:
                raise _Found(Finding("unreachable", type(exc).__name__)) from None

        def read(budget: float) -> None:
            _check_size(call("read", client.head_object)["ContentLength"])

        return [
            ("write", _step(lambda budget: call("write", client.put_object, Body=PROBE_BODY))),
            ("read", _step(read)),
            ("delete", _step(lambda budget: call("delete", client.delete_object))),
        ]

    def _azure_steps(self, storage: StorageConfig, name: str) -> list[tuple[StepName, StepFn]]:
        from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
        from azure.storage.blob import BlobServiceClient

        account = storage.access_key.get_secret_value()  # type: ignore[union-attr]
        host = vendor_info(Vendor.AZURE).request_host(0, storage.bucket, account)
        url = f"{self._azure_endpoint}/{account}" if self._azure_endpoint else f"https://{host}"
        credential = {"account_name": account, "account_key": storage.secret_key.get_secret_value()}  # type: ignore[union-attr]
        blob = BlobServiceClient(account_url=url, credential=credential, retry_total=0).get_blob_client(
            container=storage.bucket, blob=name
        )

        def call(step: StepName, budget: float, run: Callable[..., Any]) -> Any:
            try:
                return run(connection_timeout=budget, read_timeout=budget)
            except HttpResponseError as exc:
                error_code = getattr(exc, "error_code", None)
                code = str(getattr(error_code, "value", error_code) or "")
                raise _Found(classify_azure(step, Answer(exc.status_code or 0, code))) from None
            except (ServiceRequestError, ServiceResponseError) as exc:
                timed_out = "timed out" in str(exc).lower()
                raise _Found(TIMED_OUT if timed_out else Finding("unreachable", type(exc).__name__)) from None
            except AzureError as exc:
                raise _Found(Finding("unreachable", type(exc).__name__)) from None

        def write(budget: float) -> None:
            if not self._azure_endpoint:
                self._account_exists(host)
            call("write", budget, lambda **t: blob.upload_blob(PROBE_BODY, overwrite=True, **t))

        def read(budget: float) -> None:
            _check_size(call("read", budget, blob.get_blob_properties).size)

        return [
            ("write", _step(write)),
            ("read", _step(read)),
            ("delete", _step(lambda budget: call("delete", budget, blob.delete_blob))),
        ]

    def _account_exists(self, host: str) -> None:
        """The account name is the host's first label: DNS saying the vendor's own host
        does not exist means no such account, a refusal (not "could not reach")."""
        try:
            self._resolve(host, 443)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_NONAME:
                raise _Found(refused("NoSuchAccount", AZURE_REFUSALS)) from None
            raise _Found(Finding("unreachable", "name lookup failed")) from None


# The storage SDKs, imported at the first check of their kind (see _s3_client), and those whose
# first check (which also loads a service model) has been frozen since.
_SDK_OF_S3, _SDK_OF_AZURE = "boto3", "azure.storage.blob"
_frozen_after: set[str] = set()


def _freeze_what_lives_on() -> None:
    """What loading an SDK made (its modules, a service model) lives as long as the process: it
    is moved out of the collector's generations, as start-up's state is, so that full
    collections do not walk it (11-16 ms each after an S3 check, against none before)."""
    gc.collect()
    gc.freeze()


def vendor_key(vendor: int) -> str:
    """A vendor as a metric label: the catalog's key (`amazon_s3`, `azure`, ...), `unknown` for
    a code recbot does not know, so the label keeps to a small fixed set whatever Agora holds."""
    info = known_vendor(vendor)
    return info.vendor.name.lower() if info else "unknown"


def _look_up(host: str, port: int) -> object:
    # socket.getaddrinfo looked up at each call, as urllib3 does: one seam for the SDKs and recbot.
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _s3_answer(response: dict[str, Any]) -> Answer:
    error = response.get("Error") or {}
    metadata = response.get("ResponseMetadata") or {}
    details = {str(k): str(v) for k, v in error.items() if k != "Code"}
    return Answer(
        int(metadata.get("HTTPStatusCode") or 0),
        str(error.get("Code") or ""),
        metadata.get("HTTPHeaders") or {},
        details,
    )


def _check_size(size: int) -> None:
    if size != len(PROBE_BODY):
        raise _Found(Finding("refused", "SizeMismatch", None, f"{size} bytes read back, {len(PROBE_BODY)} written"))
