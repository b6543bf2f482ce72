"""Client of Agora's custom recording configuration API: signed, retried, typed errors."""

from __future__ import annotations

import contextvars
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.metrics import Metrics, status_class
from bot.models import RecordingConfig, Target
from bot.ratelimit import Limiter, Reporting
from bot.redaction import hide
from bot.signing import sign
from bot.transport import Answer, Transport, TransportError, timed_out, untrusted_certificate

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A person's call waits at most this long for the rate limiter, then is refused
# (AgoraBusy): a scan or a 429 pause must not leave a command hanging silently.
INTERACTIVE_WAIT_SECONDS = 5.0
# A person's call is sent again only within this long of its first attempt: once Agora has kept
# them waiting a whole timeout, three more would make a hung Agora cost them 44 s, not 10.
PERSON_RETRY_WINDOW_SECONDS = 5.0
# Whether the work of the current Slack request has sent Agora anything but a read: what a
# failure afterwards can truthfully tell the person (each listener runs in a context of its own).
sent_a_change: contextvars.ContextVar[bool] = contextvars.ContextVar("sent_a_change", default=False)
T = TypeVar("T")


def sending(call: Callable[[], T]) -> tuple[T, bool]:
    """`call()`'s result, and whether it sent Agora anything but a read (what counts as an apply:
    a call the rate limiter refused sent nothing). The request's own note keeps what it had."""
    before = sent_a_change.get()
    sent_a_change.set(False)
    try:
        result = call()
    finally:
        sent = sent_a_change.get()
        sent_a_change.set(before or sent)
    return result, sent


class AgoraError(Exception):
    """An Agora call failed; `upstream_message` is what Agora said, if anything."""

    status: int | None = None

    def __init__(self, upstream_message: str = "", status: int | None = None, retry_in: float | None = None) -> None:
        self.upstream_message = upstream_message
        if status is not None:
            self.status = status
        self.retry_in = retry_in  # Agora's Retry-After, in seconds from the answer, when it gave one
        super().__init__(f"Agora API error {self.status}: {upstream_message}")

    def when_to_retry(self, otherwise: str) -> str:
        """`try again in N s` when Agora said how long to wait (Retry-After), else `otherwise`."""
        if self.retry_in is None:
            return otherwise
        if not 0 < self.retry_in <= _LONGEST_WAIT_TOLD:
            return otherwise  # none, or too long to be meant (a misconfigured proxy): not repeated
        seconds = math.ceil(self.retry_in)
        return f"try again in {_wait_words(seconds)} (Agora asked recbot to wait that long)"

    def user_message(self) -> str:
        """What a person should read, and what they can do about it."""
        return f"Agora answered {self.status}: {self.upstream_message or 'no detail given'}."


_LONGEST_WAIT_TOLD = 7 * 24 * 3600  # seconds


def _wait_words(seconds: int) -> str:
    """A wait in the unit a person reads it in, rounded up: 90 s, 15 min, 3 h, 2 days (never
    120 min or 48 h: the next unit then)."""
    for unit, size, fewer_than in (("s", 1, 120), ("min", 60, 120), ("h", 3600, 48)):
        if (count := math.ceil(seconds / size)) < fewer_than:
            return f"{count} {unit}"
    return f"{math.ceil(seconds / 86400)} days"


class AgoraBadRequest(AgoraError):
    status = 400

    def user_message(self) -> str:
        return f"Agora refused the request as invalid: {self.upstream_message or 'no detail given'}."


class AgoraUnauthorized(AgoraError):
    status = 401

    def user_message(self) -> str:
        return (
            "Agora rejected recbot's credentials: AGORA_CUSTOMER_ID / AGORA_CUSTOMER_SECRET "
            "are wrong or revoked. Ask whoever runs recbot to fix them (`./run doctor` checks)."
        )


class AgoraForbidden(AgoraError):
    """A 403, which Agora does not document: it knew the credentials and refused them this call
    (a project they have no access to, a service not enabled). Not sent again; nothing landed."""

    status = 403

    def user_message(self) -> str:
        said = f" ({self.upstream_message})" if self.upstream_message else ""
        return (
            f"Agora refused recbot access (403){said}: the Customer ID in AGORA_CUSTOMER_ID may have no access "
            "to this App ID's project, or the service may not be enabled for it. Ask whoever runs recbot to "
            "check in Agora Console (`./run doctor` checks)."
        )


class AgoraCredentialsUnusable(AgoraError):
    """The credentials hold a character no HTTP header can carry: nothing was sent."""

    def user_message(self) -> str:
        return (
            "recbot's AGORA_CUSTOMER_ID / AGORA_CUSTOMER_SECRET hold a character that cannot be sent "
            "(not printable ASCII). Ask whoever runs recbot to set them again (`./run doctor` checks)."
        )


class AgoraNotFound(AgoraError):
    status = 404

    def user_message(self) -> str:
        return (
            "No such entry point in that App ID and region. Check the entry point's name "
            "(case-sensitive), the region (cn, ap, na, eu) and `--app`."
        )


class AgoraUnknownApp(AgoraNotFound):
    """The list of an app's entry points answered 404: Agora has no such App ID."""

    def user_message(self) -> str:
        return (
            "Unknown App ID: Agora has no project with that App ID. Check `--app` (or AGORA_APP_ID) "
            "against Agora Console -> Projects; App IDs are case-sensitive."
        )


class AgoraRateLimited(AgoraError):
    status = 429

    def user_message(self) -> str:
        retry = self.when_to_retry("try again in a minute")
        return f"Agora is rate-limiting recbot right now. Nothing was changed; {retry}."


class AgoraBusy(AgoraError):
    """The rate limiter would have made a person's call wait too long: nothing was sent."""

    def user_message(self) -> str:
        return "Agora is busy right now (recbot is keeping under its rate limit); try again in a moment."


class AgoraPaused(AgoraBusy):
    """Agora itself answered 429 and asked for a pause, longer than a person's call may wait:
    nothing was sent. `retry_in`: seconds left of the pause."""

    def __init__(self, retry_in: float) -> None:
        super().__init__("Agora's Retry-After would have kept this call waiting", retry_in=retry_in)
        self.retry_in: float = retry_in

    def user_message(self) -> str:
        return (
            "Agora asked recbot to slow down (it answered 429, too many requests): nothing was sent; "
            f"try again in {math.ceil(self.retry_in)} s."
        )


class AgoraUnavailable(AgoraError):
    """5xx after retries, timeouts, connection failures, unreadable answers."""

    def user_message(self) -> str:
        return (
            "Agora is not answering properly right now "
            f"({self.upstream_message or 'no detail'}). Nothing was changed; {self.when_to_retry('try again later')}."
        )


class AgoraUntrusted(AgoraUnavailable):
    """The TLS certificate shown for AGORA_API_URL (by Agora, or by a proxy on the way) is not one
    the CA bundle vouches for: nothing was sent, and trying again will not help."""

    def user_message(self) -> str:
        return (
            "recbot does not trust the TLS certificate it was shown for Agora's API, so nothing was sent. "
            "If a proxy or gateway re-signs traffic, ask whoever runs recbot to set REQUESTS_CA_BUNDLE to "
            "its CA bundle (`./run doctor` checks)."
        )


class AgoraRedirected(AgoraError):
    """A 3xx: the address recbot calls (AGORA_API_URL) sends it elsewhere. recbot follows no
    redirect, since only its settings choose where it connects: the call was not carried out, and
    trying again will not help. `location`: the scheme and host it was sent to, when one was given."""

    def __init__(self, upstream_message: str, status: int, location: str | None) -> None:
        super().__init__(upstream_message, status)
        self.location = location

    def user_message(self) -> str:
        said = f" ({self.upstream_message})" if self.upstream_message else ""
        return (
            f"Agora's API answered {self.status}{said}, sending recbot to another address, which recbot does "
            "not follow. Ask whoever runs recbot to check AGORA_API_URL (`./run doctor` checks)."
        )


_ORIGIN = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?"
)


def redirected_to(location: str | None) -> str | None:
    """The scheme and host of a redirect's Location, when it names an http(s) one: all an operator
    needs to mend AGORA_API_URL, and nothing of its path, query or user to repeat."""
    try:
        parts = urlsplit((location or "").strip())
        origin = f"{parts.scheme}://{parts.netloc}"
        if not _ORIGIN.fullmatch(origin) or parts.port == 0:
            return None
    except ValueError:  # a port out of range
        return None
    return origin


REDIRECTS = frozenset({301, 302, 303, 307, 308})


_BY_STATUS: dict[int, type[AgoraError]] = {
    400: AgoraBadRequest,
    401: AgoraUnauthorized,
    403: AgoraForbidden,
    404: AgoraNotFound,
    429: AgoraRateLimited,
}


def entry_points_path(app_id: str) -> str:
    """The list of an app's entry points, the App ID percent-encoded as one segment."""
    return f"/v1/projects/{quote(app_id, safe='')}/fls/entry_points"


def config_path(target: Target) -> str:
    """The resource path, each parameter percent-encoded as one segment."""
    ep, region = (quote(part, safe="") for part in (target.entry_point, target.region))
    return f"{entry_points_path(target.app_id)}/{ep}/settings/record/custom/regions/{region}"


def switch_path(app_id: str, entry_point: str) -> str:
    """The custom recording switch of every stream of an entry point (no region in it)."""
    return f"{entry_points_path(app_id)}/{quote(entry_point, safe='')}/settings/record/custom/auto"


def stream_tasks_path(target: Target) -> str:
    """The custom recording tasks of single streams of an entry point in one region."""
    ep, region = (quote(part, safe="") for part in (target.entry_point, target.region))
    return f"{entry_points_path(target.app_id)}/{ep}/admin/record/custom/regions/{region}/tasks"


def stream_start_path(target: Target, stream: str) -> str:
    """PUT: record one stream; its name is the `id` query value, percent-encoded whole."""
    return f"{stream_tasks_path(target)}?id={quote(stream, safe='')}"


def stream_stop_path(target: Target, stream: str) -> str:
    """DELETE: stop recording one stream; its name is one percent-encoded segment."""
    return f"{stream_tasks_path(target)}/{quote(stream, safe='')}"


class EntryPoint(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)


class EntryPointList(BaseModel):
    """The answer of `GET /v1/projects/{appid}/fls/entry_points`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # Required: an answer without it (an empty 2xx) must not read as an app with no entry points.
    entry_points: list[EntryPoint] = Field(alias="entryPointList")


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds from now: delay-seconds, or an HTTP-date (always
    GMT, so a date without a zone, as asctime's form, is GMT too)."""
    value = (value or "").strip()
    if not value:
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except (TypeError, ValueError, OverflowError):
        return None


def _upstream_message(response: Answer, hidden: tuple[str, ...] = ()) -> str:
    """What Agora said of a failure (its message, else its status line's words), shown to people,
    logged and stored: without any of the `hidden` values it was sent, quoted in any form (a 400
    may quote the request's storage keys back)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return hide(str(message) if message else response.reason, hidden)[:300]


def _secrets_sent(payload: dict[str, Any] | None) -> tuple[str, ...]:
    """The storage keys a request body carries (only a storage change has them)."""
    storage = (payload or {}).get("storageConfig")
    if not isinstance(storage, dict):
        return ()
    return tuple(value for key in ("secretKey", "accessKey") if isinstance(value := storage.get(key), str))


class AgoraClient:
    """GET and PATCH of one entry point's custom recording configuration, and
    the list of an app's entry points.

    One keep-alive session; 429, 5xx and connection errors are retried with
    exponential backoff (Retry-After honoured). PATCH sets absolute values, so
    retrying it is safe. With a `limiter`, every call waits for its token, and a
    429 pauses the limiter for every thread (and instance). `wait_limit` bounds
    that wait and picks the lane: a person's call (the default) goes first and is
    refused with AgoraBusy rather than kept waiting; background work passes None,
    takes what people leave, and waits as long as it takes. A person's call is retried only
    within `retry_window` seconds of its first attempt; background work retries every time.
    Every attempt sent is counted into `metrics` (recbot_agora_*), by method and its answer's
    status class.
    """

    def __init__(
        self,
        *,
        base_url: str,
        customer_id: str,
        customer_secret: str,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        max_backoff: float = 30.0,
        retry_window: float = PERSON_RETRY_WINDOW_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        limiter: Limiter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._host = urlsplit(self._base).netloc
        self._customer_id = customer_id
        self._customer_secret = customer_secret
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._max_backoff = max_backoff
        self._retry_window = retry_window
        self._sleep = sleep
        self._limiter = limiter
        # One pooled connection per concurrent listener, so keep-alive survives bursts; the
        # proxy and CA-bundle settings are read once, here.
        self._transport = Transport(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._transport.prepare(self._base)
        self.report_to(metrics or Metrics())

    def report_to(self, metrics: Metrics) -> None:
        """Count every attempt into `metrics`, and the limiter's waits and tokens if it reports:
        build_services gives a client passed in (tests tune one) its process's Metrics."""
        self._metrics = metrics
        if isinstance(self._limiter, Reporting):
            self._limiter.report_to(metrics)

    def __repr__(self) -> str:
        return f"AgoraClient(base_url={self._base!r}, customer_id={self._customer_id!r})"

    def close(self) -> None:
        self._transport.close()
        if self._limiter is not None:
            self._limiter.close()

    def list_entry_points(self, app_id: str, *, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS) -> list[str]:
        """The names of every entry point of `app_id`."""
        try:
            data = self._call("GET", entry_points_path(app_id), f"entry points of {app_id}", None, wait_limit)
        except AgoraNotFound as exc:
            raise AgoraUnknownApp(exc.upstream_message) from None
        try:
            return [entry.name for entry in EntryPointList.model_validate(data).entry_points]
        except ValidationError as exc:
            raise AgoraUnavailable(f"unexpected answer ({exc.error_count()} invalid fields)") from None

    def get_config(self, target: Target, *, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS) -> RecordingConfig:
        """The live configuration of `target`."""
        data = self._call("GET", config_path(target), target.describe(), None, wait_limit)
        try:
            config = RecordingConfig.model_validate(data)
        except ValidationError as exc:
            raise AgoraUnavailable(f"unexpected answer ({exc.error_count()} invalid fields)") from None
        if config.mp4_config is None and config.hls_config is None and config.storage_config is None:
            # None of them, or each null: shown, it would read as recording off with no storage.
            raise AgoraUnavailable("unexpected answer (no mp4Config, hlsConfig or storageConfig in it)")
        return config

    def set_config(
        self,
        target: Target,
        change: RecordingConfig,
        *,
        wait_limit: float | None = INTERACTIVE_WAIT_SECONDS,
        resend: bool = True,
    ) -> None:
        """PATCH `change` (only the parts that are set) onto `target`. `resend` False: never sent
        again after an attempt that may have landed (5xx, no answer), for a caller that reads
        back instead, so that Agora gets it once (a fleet-wide job's exactly once per target)."""
        self._call("PATCH", config_path(target), target.describe(), change.wire_json(), wait_limit, resend)

    def set_switch(
        self, app_id: str, entry_point: str, enabled: bool, *, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS
    ) -> None:
        """Switch custom recording on or off for every stream of an entry point
        (the configuration is kept). An absolute value, so retrying it is safe."""
        what = f"recording switch of {entry_point} (app {app_id})"
        self._call("PATCH", switch_path(app_id, entry_point), what, {"enabled": enabled}, wait_limit)

    def start_stream(self, target: Target, stream: str, *, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS) -> None:
        """Record one stream (Agora wants the entry point's switch off first). Idempotent."""
        self._call("PUT", stream_start_path(target, stream), f"stream task of {target.describe()}", None, wait_limit)

    def stop_stream(self, target: Target, stream: str, *, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS) -> None:
        """Stop recording one stream started with `start_stream`."""
        self._call("DELETE", stream_stop_path(target, stream), f"stream task of {target.describe()}", None, wait_limit)

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        payload: dict[str, Any] | None,
        wait_limit: float | None,
        resend: bool = True,
    ) -> Any:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        hidden = (*_secrets_sent(payload), self._customer_secret)
        uncertain: AgoraError | None = None  # an earlier attempt that may have reached Agora and landed
        first_sent = 0.0
        for attempt in range(self._max_retries + 1):
            if self._limiter is not None and not self._limiter.acquire(wait_limit):
                raise self._not_sent_again(uncertain)
            if method != "GET":
                sent_a_change.set(True)
            if attempt:
                self._metrics.agora_retries.inc()
            else:
                first_sent = time.monotonic()
            try:
                response = self._send(method, path, body)
            except TransportError as exc:
                self._count(method, None)
                if untrusted_certificate(exc):
                    log.warning("agora %s %s: its TLS certificate is not trusted (REQUESTS_CA_BUNDLE)", method, what)
                    raise uncertain or AgoraUntrusted("TLS certificate not trusted") from None
                reason = "timed out" if timed_out(exc) else "connection failed"
                log.warning("agora %s %s %s (attempt %d)", method, what, reason, attempt + 1)
                delay = self._retry_in(attempt, None, wait_limit, first_sent)
                if delay is None or not resend:
                    raise AgoraUnavailable(reason) from None
                uncertain = AgoraUnavailable(reason)
                self._sleep(delay)
                continue
            except ValueError:
                # Settings refuse such credentials; a header that cannot be encoded (http.client's
                # ValueError, UnicodeEncodeError among them) must still not escape as a listener's
                # traceback, nor be retried as a network failure.
                raise AgoraCredentialsUnusable("credentials cannot be sent") from None
            self._count(method, response.status)
            if 200 <= response.status < 300:  # documented as 200; a DELETE's 204 is success too
                return self._json(response)
            # A 404 is an answer, not a failure: a region an entry point has no configuration in (a scan
            # meets hundreds), or a mistyped name, which the caller is told of; it is never retried.
            level = logging.DEBUG if response.status == 404 else logging.WARNING
            log.log(level, "agora %s %s answered %d (attempt %d)", method, what, response.status, attempt + 1)
            retry_after = _retry_after(response.headers.get("Retry-After"))
            if response.status == 429 and self._limiter is not None:
                # Every thread of the process slows down, not only this call's retry.
                delay = self._retry_in(attempt, retry_after, wait_limit, first_sent)
                self._limiter.pause(self._backoff(attempt, retry_after) if delay is None else delay)
                if delay is not None:
                    continue
                if attempt < self._max_retries:  # a person's call past its window: told Agora's wait
                    raise uncertain or AgoraRateLimited(_upstream_message(response, hidden), 429, retry_after)
            elif response.status in RETRY_STATUSES and (resend or response.status == 429):
                delay = self._retry_in(attempt, retry_after, wait_limit, first_sent)
                if delay is not None:
                    if response.status != 429:
                        uncertain = AgoraUnavailable(_upstream_message(response, hidden), response.status)
                    self._sleep(delay)
                    continue
            if uncertain is not None and method != "GET":
                # An earlier attempt may have landed, and no later answer says it did not: read it back.
                raise uncertain
            if response.status in REDIRECTS:
                location = redirected_to(response.headers.get("Location"))
                raise AgoraRedirected(_upstream_message(response, hidden), response.status, location)
            error = _BY_STATUS.get(response.status, AgoraUnavailable)
            raise error(_upstream_message(response, hidden), response.status, retry_after)
        raise AssertionError("unreachable")  # pragma: no cover

    def _not_sent_again(self, uncertain: AgoraError | None) -> AgoraError:
        """Why a call is not sent (again) for the limiter: an earlier attempt that may have landed
        says so (a PATCH is then read back); else Agora's pause still to run, or recbot's budget."""
        if uncertain:
            return uncertain
        assert self._limiter is not None
        paused = self._limiter.paused_for()
        return AgoraPaused(paused) if paused > 0 else AgoraBusy("recbot's rate limit would have kept this call waiting")

    def _retry_in(
        self, attempt: int, retry_after: float | None, wait_limit: float | None, first_sent: float
    ) -> float | None:
        """Seconds to wait before sending the call again, or None: its retries are used up, or it is
        a person's call (`wait_limit` set) whose next attempt would go out past the retry window."""
        if attempt == self._max_retries:
            return None
        delay = self._backoff(attempt, retry_after)
        if wait_limit is not None and time.monotonic() + delay - first_sent > self._retry_window:
            return None
        return delay

    def _count(self, method: str, status: int | None) -> None:
        """One attempt that reached the wire: its answer's class (none: no answer), and a 429 apart."""
        self._metrics.agora_requests.labels(method=method, status_class=status_class(status)).inc()
        if status == 429:
            self._metrics.agora_rate_limited.inc()

    def _send(self, method: str, path: str, body: bytes) -> Answer:
        headers = sign(
            customer_id=self._customer_id,
            customer_secret=self._customer_secret,
            host=self._host,
            method=method,
            path=path,
            body=body,
        )
        if body:
            headers["content-type"] = "application/json"
        return self._transport.send(method, self._base + path, body=body or None, headers=headers)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Jitter spreads retries from several bot processes; not security-relevant.
        delay = self._backoff_base * (2**attempt) * (1 + random.random() / 2)  # noqa: S311
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self._max_backoff)

    @staticmethod
    def _json(response: Answer) -> Any:
        if not response.body:
            return {}
        try:
            return response.json()
        except ValueError:
            raise AgoraUnavailable("answer was not JSON") from None
