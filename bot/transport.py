"""recbot's own HTTP calls (Agora's API, Slack's response_url): directly on kept connections
(bot/wire.py), or through the operator's proxy on urllib3's ProxyManager. Not through
requests, which prepares, merges and wraps every call: half of what a call cost recbot's CPU,
and that CPU is what the next command's ack waits behind (issue 17's profile). The proxy and
CA-bundle settings are read from the environment once per origin, as requests reads them;
redirects are never followed, since where recbot connects comes from its settings alone."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from contextvars import ContextVar
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
from bot.wire import Answer, Origin

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Who is calling, for whoever reads Agora's (or a proxy's) logs: not urllib3's default.
USER_AGENT = f"recbot/{__version__}"

# What a call raises when no answer came: no connection, a dropped one, a timeout.
TransportError = urllib3.exceptions.HTTPError


def _cause(exc: TransportError) -> BaseException:
    """What happened, under urllib3's wrappers: its retries' and a proxy's errors."""
    reason: BaseException = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    while isinstance(reason, urllib3.exceptions.ProxyError) and reason.original_error is not None:
        reason = reason.original_error
    return reason


def timed_out(exc: TransportError) -> bool:
    """Whether no answer came in time (urllib3 files a refused connection under its timeouts too,
    and whatever happened on a call through a proxy under the proxy's errors)."""
    reason = _cause(exc)
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def untrusted_certificate(exc: TransportError) -> bool:
    """Whether the call failed on a TLS certificate the CA bundle does not vouch for (or that names
    another host): nothing was sent, and sending again will not help."""
    reason = _cause(exc)
    return isinstance(reason, urllib3.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(reason)


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


def tls_context() -> ssl.SSLContext:
    """Certificates checked against the CA bundle requests would use, TLS 1.2 at least, HTTP/1.1."""
    bundle = _ca_settings()
    context = ssl.create_default_context(cafile=bundle.get("ca_certs"), capath=bundle.get("ca_cert_dir"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


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
        self._connect_retries = connect_retries
        self._pool_size = pool_size
        # By origin: its proxy (which takes the whole URL), or its own kept connections (the path alone).
        self._routes: dict[str, urllib3.ProxyManager | Origin] = {}
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

    def _route(self, scheme: str, netloc: str) -> urllib3.ProxyManager | Origin:
        origin = f"{scheme}://{netloc}"
        route = self._routes.get(origin)
        if route is None:
            with self._lock:
                route = self._routes.get(origin)
                if route is None:
                    route = self._routes[origin] = self._new_route(origin, scheme)
        return route

    def _new_route(self, origin: str, scheme: str) -> urllib3.ProxyManager | Origin:
        proxies = get_environ_proxies(origin)  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, as requests reads them
        proxy = proxies.get(scheme) or proxies.get("all")
        if not proxy:
            parts = urlsplit(origin)
            if scheme not in ("http", "https") or parts.hostname is None:
                raise urllib3.exceptions.LocationValueError(f"recbot cannot call {scheme}:// origins")
            return Origin(
                parts.hostname,
                parts.port or (443 if scheme == "https" else 80),
                connect_timeout=self._timeout.connect_timeout,  # type: ignore[arg-type]
                read_timeout=self._timeout.read_timeout,  # type: ignore[arg-type]
                tls=tls_context() if scheme == "https" else None,
                pool_size=self._pool_size,
                connect_retries=self._connect_retries,
            )
        settings: dict[str, Any] = {"maxsize": self._pool_size, "cert_reqs": "CERT_REQUIRED", **_ca_settings()}
        proxy = prepend_scheme_if_needed(proxy, "http")  # "proxy:3128" means http://, as for requests
        username, password = get_auth_from_url(proxy)  # credentials in the URL, sent as requests sends them
        credentials = f"{username}:{password}" if username else None
        # Also on an https:// origin's CONNECT, all its proxy sees of the call.
        to_proxy = urllib3.make_headers(user_agent=USER_AGENT, proxy_basic_auth=credentials)
        manager = urllib3.ProxyManager(proxy, proxy_headers=to_proxy, **settings)
        manager.pool_classes_by_scheme = _POOLS
        return manager

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
        route = self._route(parts.scheme, parts.netloc)
        headers = {"user-agent": USER_AGENT, **headers}
        if isinstance(route, Origin):
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            return route.send(method, target, body=body, headers=headers, read_timeout=read_timeout)
        return self._through_proxy(route, method, url, body, headers, read_timeout)

    def _through_proxy(
        self,
        proxy: urllib3.ProxyManager,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        read_timeout: float | None,
    ) -> Answer:
        """Through urllib3's proxy manager: its whole answer in time by an alarm that hangs up."""
        timeout, within = self._timeout, self._answer_within
        if read_timeout is not None:
            timeout = urllib3.Timeout(connect=self._timeout.connect_timeout, read=read_timeout)
            within = (within[0], read_timeout)
        timing = _answer_within.set(within)
        try:
            answer = proxy.urlopen(
                method,
                url,
                body=body,
                headers=headers,  # "user-agent", make_headers' spelling: one header through a proxy
                timeout=timeout,
                retries=self._retries,
                redirect=False,
            )
        finally:
            _answer_within.reset(timing)
        return Answer(answer.status, answer.reason or "", answer.headers, answer.data)

    def close(self) -> None:
        with self._lock:
            routes, self._routes = list(self._routes.values()), {}
        for route in routes:
            route.clear() if isinstance(route, urllib3.ProxyManager) else route.close()
        self._answer_within[0].close()
