"""bot/transport.py, recbot's own HTTP calls: kept connections per origin, the request target as
an origin server expects it, the operator's proxy read once per origin, redirects never followed,
and no answer told apart as a timeout or a connection that failed."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot import __version__
from bot.transport import Transport, TransportError, _ca_settings, timed_out, untrusted_certificate
from tests.fakes.http import (
    CROWDED_CONNECT_TIMEOUT,
    HANG_UP,
    LoopbackServer,
    SilentServer,
    TricklingServer,
    crowded,
)


class Recorder:
    """An HTTP server on 127.0.0.1 that records each request and the connections it accepts."""

    def __init__(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b'{"ok": true}',
        *,
        serving: bool = True,
    ) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.answer = (status, headers or {"Content-Type": "application/json"}, body)
        self._server = LoopbackServer(self._handle)
        accepted = self._server._server.get_request
        self.connections = 0

        def counting() -> tuple[socket.socket, object]:
            self.connections += 1
            return accepted()

        self._server._server.get_request = counting  # type: ignore[method-assign]
        self.listener = self._server._server.socket
        self.url = self._server.url
        if serving:
            self.serve()

    def serve(self) -> None:
        self._server.start()

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, path, body))
        self.headers.append(headers)
        return self.answer

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.stop()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """A forward proxy in HTTP_PROXY, NO_PROXY unset; it answers every request itself."""
    recorder = Recorder()
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    monkeypatch.delenv("http_proxy", raising=False)  # read before HTTP_PROXY where both are set
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield recorder
    recorder.stop()


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def transport(**kwargs: float) -> Transport:
    return Transport(connect_timeout=kwargs.get("connect", 2.0), read_timeout=kwargs.get("read", 5.0))


def test_calls_to_one_origin_share_a_kept_connection_and_send_the_path_alone(
    server: Recorder, no_proxy_settings: None
) -> None:
    client = transport()
    try:
        answers = [
            client.send("POST", f"{server.url}/response/r{n}?a=1&b=%2F", body=b"{}", headers={"X-N": str(n)})
            for n in range(4)
        ]
    finally:
        client.close()
    assert [a.status for a in answers] == [200] * 4
    assert answers[0].json() == {"ok": True} and answers[0].headers["content-type"] == "application/json"
    assert [r[1] for r in server.requests] == [f"/response/r{n}?a=1&b=%2F" for n in range(4)]
    assert server.connections == 1
    assert [(h["x-n"], h["user-agent"]) for h in server.headers] == [
        (str(n), f"recbot/{__version__}") for n in range(4)
    ]


def test_a_url_without_a_path_asks_for_the_root(server: Recorder, no_proxy_settings: None) -> None:
    client = transport()
    try:
        client.send("GET", server.url, headers={})
    finally:
        client.close()
    assert server.requests == [("GET", "/", b"")]


@pytest.mark.parametrize("connect_retries", [0, 1])
def test_a_redirect_is_an_answer_not_a_hop(no_proxy_settings: None, connect_retries: int) -> None:
    elsewhere = Recorder()
    moved = Recorder(status=302, headers={"Location": elsewhere.url + "/else"}, body=b"")
    client = Transport(connect_timeout=2.0, read_timeout=5.0, connect_retries=connect_retries)
    try:
        answer = client.send("GET", moved.url + "/here", headers={})
    finally:
        client.close()
        moved.stop()
        elsewhere.stop()
    assert answer.status == 302 and answer.headers["location"].endswith("/else")
    assert elsewhere.requests == []


def test_the_proxy_of_an_origin_is_read_once_at_its_first_call(
    server: Recorder, proxy: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = transport()
    try:
        client.send("POST", server.url + "/response/r1", body=b"{}", headers={})
        monkeypatch.delenv("HTTP_PROXY")  # read already: the next call of this origin still goes through it
        client.send("POST", server.url + "/response/r2", body=b"{}", headers={})
    finally:
        client.close()
    assert [r[1] for r in proxy.requests] == [server.url + "/response/r1", server.url + "/response/r2"]
    assert server.requests == []


def test_prepare_reads_the_proxy_settings_before_any_call(
    server: Recorder, proxy: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = transport()
    client.prepare(server.url + "/v1")
    monkeypatch.delenv("HTTP_PROXY")
    try:
        client.send("GET", server.url + "/v1/x", headers={})
    finally:
        client.close()
    assert [r[1] for r in proxy.requests] == [server.url + "/v1/x"]


def test_no_proxy_sends_that_origin_directly(
    server: Recorder, proxy: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = transport()
    try:
        client.send("GET", server.url + "/direct", headers={})
    finally:
        client.close()
    assert proxy.requests == [] and [r[1] for r in server.requests] == ["/direct"]


def test_an_upstream_that_never_answers_times_out(no_proxy_settings: None) -> None:
    silent = SilentServer().start()
    client = transport(read=0.2)
    try:
        with pytest.raises(TransportError) as raised:
            client.send("GET", silent.url + "/x", headers={})
    finally:
        client.close()
        silent.stop()
    assert timed_out(raised.value)


TRICKLED_BODY = b'{"mp4Config": {"enabled": true}, "padding": "' + b"x" * 200 + b'"}'
TRICKLED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(TRICKLED_BODY)
    + TRICKLED_BODY
)


@pytest.mark.parametrize(
    "at_once", [TRICKLED.index(b"\r\n\r\n") + 4, TRICKLED.index(b"\r\n") + 2, 0], ids=["body", "headers", "status"]
)
def test_an_answer_that_trickles_in_ends_as_a_timeout_once_its_time_is_up(at_once: int, no_proxy_settings) -> None:
    """A byte every 50 ms never trips a 0.5 s read timeout: the whole answer must be in within it."""
    trickling = TricklingServer(TRICKLED, at_once, every=0.05)  # 230+ bytes: 12 s or more in all
    client = transport(read=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as raised:
            client.send("GET", trickling.url + "/config", headers={})
        took = time.monotonic() - started
    finally:
        client.close()
        trickling.stop()
    assert timed_out(raised.value)
    assert 0.5 <= took < 3.0


def test_a_calls_own_read_timeout_bounds_its_whole_answer(no_proxy_settings: None) -> None:
    """A shorter time for one call (a notice's 3 s) holds for a trickle too, not only for silence."""
    trickling = TricklingServer(TRICKLED, TRICKLED.index(b"\r\n\r\n") + 4, every=0.05)
    client = transport(read=10.0)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as raised:
            client.send("POST", trickling.url + "/response/r1", body=b"{}", headers={}, read_timeout=0.5)
        took = time.monotonic() - started
    finally:
        client.close()
        trickling.stop()
    assert timed_out(raised.value) and took < 3.0


def test_a_closed_transport_leaves_no_alarm_thread_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a proxy (urllib3) an alarm hangs up on a late answer; direct calls need none."""
    proxy = TricklingServer(TRICKLED, TRICKLED.index(b"\r\n\r\n") + 4, every=0.05)
    through_proxy(monkeypatch, "HTTP_PROXY", proxy)
    client = transport(read=0.3)
    try:
        with pytest.raises(TransportError):
            client.send("GET", "http://agora.invalid/config", headers={})  # its alarm went off: the threads are up
        assert [t for t in threading.enumerate() if getattr(t, "_target", None) == client._answer_within[0]._keep_time]
    finally:
        client.close()
        proxy.stop()
    clocks = [t for t in threading.enumerate() if getattr(t, "_target", None) == client._answer_within[0]._keep_time]
    assert clocks == []


def test_an_answer_trickling_in_within_its_time_is_read_whole(no_proxy_settings: None) -> None:
    body = b'{"ok": true}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    trickling = TricklingServer(answer, len(answer) - len(body), every=0.02)  # 12 bytes in about 0.25 s
    client = transport(read=3.0)
    try:
        got = client.send("GET", trickling.url + "/x", headers={})
        again = client.send("GET", trickling.url + "/x", headers={})  # the kept connection still works
    finally:
        client.close()
        trickling.stop()
    assert got.json() == again.json() == {"ok": True}


def through_proxy(monkeypatch: pytest.MonkeyPatch, variable: str, proxy: TricklingServer) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, proxy.url)


def test_a_proxy_trickling_its_answer_to_connect_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tunnel to an https origin is read while connecting: it must be whole in time too."""
    established = b"HTTP/1.1 200 Connection established\r\nVia: " + b"x" * 100 + b"\r\n\r\n"
    proxy = TricklingServer(established, 0, every=0.05)  # about 7 s in all
    through_proxy(monkeypatch, "HTTPS_PROXY", proxy)
    client = transport(read=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as raised:
            client.send("GET", "https://agora.invalid/config", headers={})  # never reached: the proxy is
        took = time.monotonic() - started
    finally:
        client.close()
        proxy.stop()
    assert timed_out(raised.value)
    assert took < 3.0


def test_an_answer_trickling_in_through_a_proxy_is_told_as_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3 files what happens on a call through a proxy under the proxy's errors."""
    proxy = TricklingServer(TRICKLED, TRICKLED.index(b"\r\n\r\n") + 4, every=0.05)
    through_proxy(monkeypatch, "HTTP_PROXY", proxy)
    client = transport(read=0.5)
    try:
        with pytest.raises(TransportError) as raised:
            client.send("GET", "http://agora.invalid/config", headers={})
    finally:
        client.close()
        proxy.stop()
    assert timed_out(raised.value)


def test_a_refused_connection_is_no_timeout(no_proxy_settings: None) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for client in (transport(), Transport(connect_timeout=2.0, read_timeout=5.0, connect_retries=1)):
        try:
            with pytest.raises(TransportError) as raised:
                client.send("POST", f"http://127.0.0.1:{port}/x", body=b"{}", headers={})
        finally:
            client.close()
        assert not timed_out(raised.value) and not untrusted_certificate(raised.value)


def test_a_request_whose_answer_was_lost_is_not_sent_again(no_proxy_settings: None) -> None:
    """Only a connection that could not be made is tried again: a dropped answer may have landed."""
    posts: list[str] = []

    def hang_up(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        posts.append(path)
        return HANG_UP, {}, b""

    dropping = LoopbackServer(hang_up).start()
    client = Transport(connect_timeout=2.0, read_timeout=5.0, connect_retries=1)
    try:
        with pytest.raises(TransportError) as raised:
            client.send("POST", dropping.url + "/response/r1", body=b"{}", headers={})
    finally:
        client.close()
        dropping.stop()
    assert posts == ["/response/r1"]
    assert not timed_out(raised.value)


def test_a_connection_that_could_not_be_made_is_tried_once_more_and_the_request_sent_once(
    no_proxy_settings: None,
) -> None:
    """The first attempt's SYNs are all dropped: it times out before a byte of the request is sent."""
    server = Recorder(serving=False)
    client = Transport(connect_timeout=CROWDED_CONNECT_TIMEOUT, read_timeout=5.0, connect_retries=1)
    try:
        with crowded(server.listener, server.serve) as dropped:
            answer = client.send("POST", server.url + "/response/r1", body=b"{}", headers={})
            assert dropped() >= 2  # the first attempt's SYN and its resend: that connection was never made
    finally:
        client.close()
        server.stop()
    assert answer.status == 200 and answer.json() == {"ok": True}
    assert server.requests == [("POST", "/response/r1", b"{}")] and server.connections == 1


def test_without_connect_retries_a_connection_that_could_not_be_made_is_not_tried_again(
    no_proxy_settings: None,
) -> None:
    """As above, room made after the first attempt's two SYNs: an attempt made again would get in."""
    server = Recorder(serving=False)
    client = Transport(connect_timeout=CROWDED_CONNECT_TIMEOUT, read_timeout=5.0, connect_retries=0)
    try:
        with crowded(server.listener, server.serve) as dropped:
            with pytest.raises(TransportError) as raised:
                client.send("POST", server.url + "/response/r1", body=b"{}", headers={})
            assert dropped() == 2  # one attempt's SYN and its resend, no other
    finally:
        client.close()
        server.stop()
    assert timed_out(raised.value)
    assert server.requests == [] and server.connections == 0


def test_a_connection_that_could_not_be_made_twice_is_not_tried_a_third_time(no_proxy_settings: None) -> None:
    server = Recorder(serving=False)
    client = Transport(connect_timeout=CROWDED_CONNECT_TIMEOUT, read_timeout=5.0, connect_retries=1)
    try:
        with crowded(server.listener, server.serve, until_dropped=5) as dropped:  # room for a third attempt alone
            with pytest.raises(TransportError) as raised:
                client.send("POST", server.url + "/response/r1", body=b"{}", headers={})
            assert dropped() == 4  # two attempts, two SYNs each
    finally:
        client.close()
        server.stop()
    assert timed_out(raised.value)
    assert server.requests == [] and server.connections == 0


def test_calls_from_many_threads_each_get_their_own_answer(no_proxy_settings: None) -> None:
    def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, json.dumps({"path": path}).encode()

    echoing = LoopbackServer(echo).start()
    client = transport()
    got: dict[int, str] = {}

    def call(n: int) -> None:
        got[n] = client.send("GET", f"{echoing.url}/n/{n}", headers={}).json()["path"]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        client.close()
        echoing.stop()
    assert got == {n: f"/n/{n}" for n in range(16)}


def test_the_ca_bundle_is_the_operators_else_certifis(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert _ca_settings() == {"ca_certs": certifi.where()}
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert _ca_settings() == {"ca_certs": str(bundle)}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))  # a directory of certificates; it comes first
    assert _ca_settings() == {"ca_cert_dir": str(tmp_path)}


@pytest.mark.parametrize("value", ["line\nbreak", "carriage\rreturn", "beyond Latin-1 \u2713"])
def test_a_header_that_cannot_be_sent_is_refused_before_anything_is_sent(value: str, server: Recorder) -> None:
    """http.client refuses a line break or a character beyond Latin-1 in a header (a ValueError,
    UnicodeEncodeError among them); the Agora client tells that as its credentials' problem."""
    client = transport()
    try:
        with pytest.raises(ValueError):
            client.send("GET", server.url + "/x", headers={"X-Value": value})
    finally:
        client.close()
    assert server.requests == []


def test_all_proxy_carries_an_origin_without_a_proxy_of_its_scheme(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Recorder()
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    client = transport()
    try:
        client.send("GET", server.url + "/via-all", headers={})
    finally:
        client.close()
        proxy.stop()
    assert [r[1] for r in proxy.requests] == [server.url + "/via-all"] and server.requests == []


class TlsServer:
    """HTTPS on 127.0.0.1 with a certificate of its own, made here and trusted by nobody."""

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recbot test")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_file = directory / "server.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = directory / "server.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.recorder = Recorder()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert_file, key_file)
        server = self.recorder._server._server
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
        self.url = self.recorder.url.replace("http://", "https://")

    def stop(self) -> None:
        self.recorder.stop()


def test_https_trusts_only_the_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy_settings: None
) -> None:
    """A certificate the bundle does not vouch for is refused before anything is sent; the
    operator's REQUESTS_CA_BUNDLE (a private CA, a TLS-inspecting proxy) is honoured."""
    tls = TlsServer(tmp_path)
    try:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        refusing = transport()
        with pytest.raises(TransportError) as raised:
            refusing.send("GET", tls.url + "/secret", headers={})
        refusing.close()
        assert tls.recorder.requests == []
        assert untrusted_certificate(raised.value) and not timed_out(raised.value)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert_file))
        trusting = transport()
        assert trusting.send("GET", tls.url + "/trusted", headers={}).status == 200
        trusting.close()
    finally:
        tls.stop()
    assert [r[1] for r in tls.recorder.requests] == ["/trusted"]


def test_an_https_answer_that_trickles_in_ends_as_a_timeout_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy_settings: None
) -> None:
    tls = TlsServer(tmp_path)  # its certificate and key; its own server is not used
    tls.stop()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert_file))
    trickling = TricklingServer(TRICKLED, TRICKLED.index(b"\r\n\r\n") + 4, every=0.05, tls=tls.context)
    client, url = transport(read=0.5), trickling.url
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as raised:
            client.send("GET", url + "/config", headers={})
        took = time.monotonic() - started
    finally:
        client.close()
        trickling.stop()
    assert url.startswith("https://") and timed_out(raised.value)
    assert 0.5 <= took < 3.0


@pytest.mark.parametrize("connect_retries", [0, 1])
def test_a_redirect_through_a_proxy_is_not_followed_either(
    server: Recorder, proxy: Recorder, connect_retries: int
) -> None:
    proxy.answer = (307, {"Location": server.url + "/else"}, b"")  # every request answered with a redirect
    client = Transport(connect_timeout=2.0, read_timeout=5.0, connect_retries=connect_retries)
    try:
        answer = client.send("GET", server.url + "/here", headers={})
    finally:
        client.close()
    assert answer.status == 307
    assert [r[1] for r in proxy.requests] == [server.url + "/here"] and server.requests == []


def test_proxy_credentials_in_its_url_are_sent_to_the_proxy(server: Recorder, proxy: Recorder, monkeypatch) -> None:
    """As requests sends them: an authenticating company proxy keeps working."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://svc:p%40ss@"))
    client = transport()
    try:
        assert client.send("GET", server.url + "/x", headers={}).status == 200
    finally:
        client.close()
    assert [r[1] for r in proxy.requests] == [server.url + "/x"]
    assert proxy.headers[0]["proxy-authorization"] == "Basic " + base64.b64encode(b"svc:p@ss").decode()
    assert proxy.headers[0]["user-agent"] == f"recbot/{__version__}"


@contextmanager
def raw_proxy(monkeypatch: pytest.MonkeyPatch, variable: str, answer: bytes) -> Iterator[list[bytes]]:
    """A proxy in `variable` (with credentials) that records the head of the one request it gets,
    exactly as it came, and answers `answer`."""
    heads: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_once() -> None:
            connection, _ = listener.accept()
            with connection:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += connection.recv(4096)
                heads.append(head)
                connection.sendall(answer)

        proxy = threading.Thread(target=answer_once, daemon=True)
        proxy.start()
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, f"http://svc:p%40ss@127.0.0.1:{port}")
        yield heads
        proxy.join(timeout=10)


def test_the_connect_of_an_https_origin_names_recbot_and_carries_the_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For https:// (Agora, Slack), the CONNECT line and its headers are all a proxy's log shows."""
    with raw_proxy(monkeypatch, "HTTPS_PROXY", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as heads:
        client = transport()
        try:
            with pytest.raises(TransportError):  # the name is never looked up here: the proxy would
                client.send("GET", "https://agora.invalid/v1/x", headers={"Authorization": "hmac secret"})
        finally:
            client.close()
    (head,) = heads
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("connect agora.invalid:443 http/")
    assert f"user-agent: recbot/{__version__}" in lines
    assert "proxy-authorization: basic " + base64.b64encode(b"svc:p@ss").decode().lower() in lines
    assert "secret" not in head.decode()  # the call's own headers go inside the tunnel only


def test_a_call_through_a_proxy_to_an_http_origin_says_who_it_is_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with raw_proxy(monkeypatch, "HTTP_PROXY", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") as heads:
        client = transport()
        try:
            assert client.send("GET", "http://agora.invalid/v1/x", headers={}).status == 200
        finally:
            client.close()
    (head,) = heads
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "get http://agora.invalid/v1/x http/1.1"
    assert [line for line in lines if line.startswith("user-agent:")] == [f"user-agent: recbot/{__version__}"]


def test_a_proxy_without_a_scheme_is_an_http_proxy(server: Recorder, proxy: Recorder, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))  # "127.0.0.1:port", as curl takes it
    client = transport()
    try:
        client.send("GET", server.url + "/x", headers={})
    finally:
        client.close()
    assert [r[1] for r in proxy.requests] == [server.url + "/x"] and server.requests == []


def test_a_proxy_recbot_cannot_use_fails_each_call_not_the_start(
    server: Recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://svc:hunter2@127.0.0.1:1080")
    client = transport()
    try:
        client.prepare(server.url + "/v1")  # a start: logged, not raised
        with pytest.raises(TransportError):
            client.send("GET", server.url + "/x", headers={})
    finally:
        client.close()
    assert server.requests == []
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "bot.transport"]
    assert "cannot be used" in warning and "ALL_PROXY" in warning and "hunter2" not in warning
