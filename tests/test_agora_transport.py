"""Where the Agora client connects: an operator's proxy settings, read once at start
(requests would otherwise rescan the environment on every call), and never where a
redirect points."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bot.agora import AgoraClient, AgoraError
from bot.models import Target
from tests.conftest import APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.http import LoopbackServer


class Proxy:
    """A forward proxy on 127.0.0.1 that answers every request itself and records its request target."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server = LoopbackServer(self._handle).start()
        self.url = self._server.url

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.targets.append(path)
        return 200, {"Content-Type": "application/json"}, json.dumps(LIVE_CONFIG).encode()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = Proxy()
    yield server
    server.stop()


def client_for(agora: AgoraEmulator) -> AgoraClient:
    return AgoraClient(base_url=agora.url, customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, max_retries=0)


TARGET = Target(app_id=APP_ID, entry_point="live", region="na")


def test_http_proxy_in_the_environment_at_start_carries_every_call(
    agora: AgoraEmulator, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = client_for(agora)
    monkeypatch.delenv("HTTP_PROXY")  # read at start: a later change does not matter
    try:
        assert client.get_config(TARGET).storage_config is not None
        assert client.get_config(TARGET).mp4
    finally:
        client.close()
    assert len(proxy.targets) == 2
    assert all(t.startswith(agora.url + "/v1/projects/") for t in proxy.targets)  # absolute-form: a proxied request
    assert agora.calls() == []


def test_no_proxy_sends_calls_directly(agora: AgoraEmulator, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = client_for(agora)
    try:
        assert client.get_config(TARGET).mp4
    finally:
        client.close()
    assert proxy.targets == []
    assert len(agora.calls("GET")) == 1


def test_without_proxy_settings_calls_go_directly(
    agora: AgoraEmulator, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = client_for(agora)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # set after start: not read any more
    try:
        assert client.get_config(TARGET).mp4
    finally:
        client.close()
    assert proxy.targets == []
    assert len(agora.calls("GET")) == 1


def test_a_redirect_is_not_followed(agora: AgoraEmulator, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts come from the settings alone: an answer that points elsewhere is an error, not a hop."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    agora.inject(Fault(302, headers={"Location": proxy.url + "/elsewhere"}, message="moved"))
    client = client_for(agora)
    try:
        with pytest.raises(AgoraError) as raised:
            client.get_config(TARGET)
    finally:
        client.close()
    assert raised.value.status == 302 and "moved" in raised.value.user_message()
    assert proxy.targets == []
