"""recbot's own HTTP calls (Agora's API, Slack's response_url) on urllib3, requests' engine,
directly: requests prepares, merges and wraps every call, half of what a call cost recbot's
CPU, and that CPU is what the next command's ack waits behind (issue 17's profile).
Connections are kept per origin; the operator's proxy and CA-bundle settings are read from
the environment once per origin, as requests reads them; redirects are never followed,
since where recbot connects comes from its settings alone."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from requests.utils import get_auth_from_url, get_environ_proxies, prepend_scheme_if_needed
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from bot import __version__
from bot.alarms import Alarms

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Who is calling, for whoever reads Agora's (or a proxy's) logs: not urllib3's default.
USER_AGENT = f"recbot/{__version__}"

# What a call raises when no answer came: no connection, a dropped one, a timeout.
TransportError = urllib3.exceptions.HTTPError


def timed_out(exc: TransportError) -> bool:
    """Whether no answer came in time (urllib3 files a refused connection under its timeouts too,
    and whatever happened on a call through a proxy under the proxy's errors)."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    while isinstance(reason, urllib3.exceptions.ProxyError) and reason.original_error is not None:
        reason = reason.original_error
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read whole. `headers` is case-insensitive."""

    status: int
    reason: str
    headers: urllib3.HTTPHeaderDict
    body: bytes

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


# The alarms and seconds within which the answer of the call being sent must be whole: urllib3's
# read timeout is for each read, so an answer trickling in a byte at a time would never end.
_answer_within: ContextVar[tuple[Alarms, float] | None] = ContextVar("recbot_answer_within", default=None)


def _hang_up(sock: Any) -> None:
    """End every read and write on `sock` (of a TLS one too: its socket underneath)."""
    while not isinstance(sock, socket.socket) and sock is not None:
        sock = getattr(sock, "socket", None)  # urllib3's TLS within TLS (an https proxy) wraps one
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:  # already closed: the answer ended meanwhile
            pass


class _WholeAnswerInTime:
    """A connection that hangs up on an answer not read whole within the call's time
    (`_answer_within`): the origin's, and a proxy's to CONNECT; what the read then raises
    becomes urllib3's read timeout."""

    sock: Any

    def _in_time(self, read: Callable[[], _T]) -> _T:
        within = _answer_within.get()
        if within is None:
            return read()
        alarms, seconds = within
        sock = self.sock
        late = alarms.after(seconds, lambda: _hang_up(sock))
        try:
            answer = read()
        except Exception:
            if late.cancel():
                raise _not_whole(seconds) from None
            raise
        # Hung up on, it may still have been read "whole": http.client takes the end of the
        # connection for the end of the headers, and of a body of no stated length.
        if late.cancel():
            raise _not_whole(seconds)
        return answer

    def _tunnel(self) -> None:
        self._in_time(super()._tunnel)  # type: ignore[misc]

    def getresponse(self) -> Any:
        return self._in_time(super().getresponse)  # type: ignore[misc]


def _not_whole(seconds: float) -> urllib3.exceptions.ReadTimeoutError:
    return urllib3.exceptions.ReadTimeoutError(
        None,  # type: ignore[arg-type]
        None,
        f"the answer was not whole within {seconds:g} s",
    )


class _HTTPConnection(_WholeAnswerInTime, HTTPConnection):
    pass


class _HTTPSConnection(_WholeAnswerInTime, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


def _ca_settings() -> dict[str, str]:
    """The CA bundle requests would use: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return {"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle}


class Transport:
    """Kept connections to any origin; `connect_retries` tries a connection that could not be
    made again (then nothing was sent), nothing else is ever sent twice. An answer must be
    whole within `read_timeout` of the request sent, not only come in reads that each took less."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float, pool_size: int = 64, connect_retries: int = 0
    ) -> None:
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._answer_within = (Alarms(runners=1), read_timeout)
        self._retries: Retry | bool = (
            Retry(total=connect_retries, connect=connect_retries, read=0, status=0, other=0, allowed_methods=None)
            if connect_retries
            else False
        )
        self._pool_size = pool_size
        # By origin: its proxy (which takes the whole URL), or its own pool (the path alone).
        self._routes: dict[str, tuple[urllib3.PoolManager | urllib3.HTTPConnectionPool, bool]] = {}
        self._managers: list[urllib3.PoolManager] = []
        self._lock = threading.Lock()

    def prepare(self, url: str) -> None:
        """Read the proxy settings of `url`'s origin now (a start), not at its first call. A proxy
        recbot cannot use (a SOCKS one) is logged, without its value, and fails each call instead."""
        parts = urlsplit(url)
        try:
            self._route(parts.scheme, parts.netloc)
        except TransportError as exc:
            log.warning(
                "the proxy set for %s://%s cannot be used (%s): calls there fail until HTTP_PROXY, HTTPS_PROXY "
                "or ALL_PROXY names an http:// or https:// proxy, or NO_PROXY exempts it",
                parts.scheme,
                parts.netloc,
                type(exc).__name__,
            )

    def _route(self, scheme: str, netloc: str) -> tuple[urllib3.PoolManager | urllib3.HTTPConnectionPool, bool]:
        origin = f"{scheme}://{netloc}"
        route = self._routes.get(origin)
        if route is None:
            with self._lock:
                route = self._routes.get(origin)
                if route is None:
                    route = self._routes[origin] = self._new_route(origin, scheme)
        return route

    def _new_route(self, origin: str, scheme: str) -> tuple[urllib3.PoolManager | urllib3.HTTPConnectionPool, bool]:
        settings: dict[str, Any] = {"maxsize": self._pool_size, "cert_reqs": "CERT_REQUIRED", **_ca_settings()}
        proxies = get_environ_proxies(origin)  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, as requests reads them
        proxy = proxies.get(scheme) or proxies.get("all")
        if proxy:
            proxy = prepend_scheme_if_needed(proxy, "http")  # "proxy:3128" means http://, as for requests
            username, password = get_auth_from_url(proxy)  # credentials in the URL, sent as requests sends them
            credentials = f"{username}:{password}" if username else None
            # Also on an https:// origin's CONNECT, all its proxy sees of the call.
            to_proxy = urllib3.make_headers(user_agent=USER_AGENT, proxy_basic_auth=credentials)
            manager: urllib3.PoolManager = urllib3.ProxyManager(proxy, proxy_headers=to_proxy, **settings)
            manager.pool_classes_by_scheme = _POOLS
            self._managers.append(manager)
            return manager, True
        manager = urllib3.PoolManager(**settings)
        manager.pool_classes_by_scheme = _POOLS
        self._managers.append(manager)
        return manager.connection_from_url(origin), False

    def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str],
        read_timeout: float | None = None,
    ) -> Answer:
        """Send one request and read its answer (within `read_timeout`, when given, instead of the
        transport's); TransportError when none came."""
        parts = urlsplit(url)
        opener, proxied = self._route(parts.scheme, parts.netloc)
        target = url if proxied else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout, within = self._timeout, self._answer_within
        if read_timeout is not None:
            timeout = urllib3.Timeout(connect=self._timeout.connect_timeout, read=read_timeout)
            within = (within[0], read_timeout)
        timing = _answer_within.set(within)
        try:
            answer = opener.urlopen(
                method,
                target,
                body=body,
                headers={"user-agent": USER_AGENT, **headers},  # make_headers' spelling: one header through a proxy
                timeout=timeout,
                retries=self._retries,
                redirect=False,
            )
        finally:
            _answer_within.reset(timing)
        return Answer(answer.status, answer.reason or "", answer.headers, answer.data)

    def close(self) -> None:
        with self._lock:
            for manager in self._managers:
                manager.clear()
            self._managers.clear()
            self._routes.clear()
        self._answer_within[0].close()
