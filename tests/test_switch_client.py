"""The switch and single-stream calls of the Agora client against the emulator,
and the stream name's place in the URL, for all inputs."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.agora import (
    AgoraBadRequest,
    AgoraClient,
    AgoraNotFound,
    AgoraRateLimited,
    AgoraUnauthorized,
    AgoraUnavailable,
    stream_start_path,
    stream_stop_path,
    switch_path,
)
from bot.models import Target
from tests.conftest import APP_ID, CUSTOMER_ID, CUSTOMER_SECRET
from tests.fakes.agora import SWITCH_ON_REFUSAL, AgoraEmulator, Fault

LIVE = Target(app_id=APP_ID, entry_point="live", region="na")
BASE = f"/v1/projects/{APP_ID}/fls/entry_points/live"


@pytest.fixture
def client(agora: AgoraEmulator) -> AgoraClient:
    return AgoraClient(
        base_url=agora.url,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        read_timeout=1,
        sleep=lambda _: None,
    )


def test_the_switch_is_a_signed_patch_without_region(client, agora) -> None:
    assert agora.switch(APP_ID, "live")  # a configured entry point records every stream
    client.set_switch(APP_ID, "live", False)
    (call,) = agora.calls()
    assert (call.method, call.path, call.status) == ("PATCH", f"{BASE}/settings/record/custom/auto", 200)
    assert call.json() == {"enabled": False} and call.headers["content-type"] == "application/json"
    assert not agora.switch(APP_ID, "live")
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["bucket"] == "rec-bucket"  # the configuration is kept
    client.set_switch(APP_ID, "live", True)
    assert agora.switch(APP_ID, "live")


def test_setting_a_configuration_switches_recording_on_in_the_emulator(client, agora) -> None:
    client.set_switch(APP_ID, "live", False)
    client.set_config(LIVE, client.get_config(LIVE).model_copy(update={"storage_config": None}))
    assert agora.switch(APP_ID, "live")


def test_a_stream_task_needs_the_switch_off_and_stops_with_a_delete(client, agora) -> None:
    with pytest.raises(AgoraBadRequest) as refused:
        client.start_stream(LIVE, "cam-1")
    assert refused.value.upstream_message == SWITCH_ON_REFUSAL and agora.tasks == set()
    client.set_switch(APP_ID, "live", False)
    client.start_stream(LIVE, "cam-1")
    assert agora.tasks == {(APP_ID, "live", "na", "cam-1")}
    client.stop_stream(LIVE, "cam-1")
    assert agora.tasks == set()
    paths = [(c.method, c.path, c.status) for c in agora.calls() if c.method != "PATCH"]
    assert paths == [
        ("PUT", f"{BASE}/admin/record/custom/regions/na/tasks?id=cam-1", 400),
        ("PUT", f"{BASE}/admin/record/custom/regions/na/tasks?id=cam-1", 200),
        ("DELETE", f"{BASE}/admin/record/custom/regions/na/tasks/cam-1", 200),
    ]
    assert all(c.body == b"" for c in agora.calls() if c.method != "PATCH")


def test_unknown_entry_points_and_tasks_are_404(client, agora) -> None:
    with pytest.raises(AgoraNotFound):
        client.set_switch(APP_ID, "nosuch", False)
    with pytest.raises(AgoraNotFound):
        client.start_stream(Target(app_id=APP_ID, entry_point="live", region="eu"), "cam-1")  # no config in eu
    with pytest.raises(AgoraNotFound) as missing:
        client.stop_stream(LIVE, "never-started")
    assert missing.value.upstream_message == "task not found"


@pytest.mark.parametrize("status", [201, 202, 204])
def test_any_success_status_is_success_for_the_switch_and_the_streams(client, agora, status) -> None:
    """Agora documents 200; a DELETE's 204 No Content (or a 201, 202) is no server error."""
    agora.inject(*[Fault(status, applies=True, method=method) for method in ("PATCH", "PUT", "DELETE")])
    client.set_switch(APP_ID, "live", False)
    client.start_stream(LIVE, "cam-1")
    assert agora.tasks == {(APP_ID, "live", "na", "cam-1")}
    client.stop_stream(LIVE, "cam-1")
    assert agora.tasks == set() and not agora.switch(APP_ID, "live")
    assert [c.status for c in agora.calls()] == [status] * 3  # each sent once


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, AgoraBadRequest), (401, AgoraUnauthorized), (404, AgoraNotFound)],
)
@pytest.mark.parametrize("call", ["switch", "start", "stop"])
def test_client_errors_are_typed_and_not_retried(client, agora, status, error, call) -> None:
    agora.switches[(APP_ID, "live")] = False
    agora.tasks.add((APP_ID, "live", "na", "cam-1"))
    agora.inject(Fault(status, message="upstream says no"))
    with pytest.raises(error) as caught:
        {
            "switch": lambda: client.set_switch(APP_ID, "live", True),
            "start": lambda: client.start_stream(LIVE, "cam-1"),
            "stop": lambda: client.stop_stream(LIVE, "cam-1"),
        }[call]()
    assert caught.value.upstream_message == "upstream says no" and len(agora.calls()) == 1


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_429_and_5xx_are_retried_then_typed(client, agora, method) -> None:
    agora.switches[(APP_ID, "live")] = False
    agora.tasks.add((APP_ID, "live", "na", "cam-1"))
    calls = {
        "PATCH": lambda: client.set_switch(APP_ID, "live", False),
        "PUT": lambda: client.start_stream(LIVE, "cam-1"),
        "DELETE": lambda: client.stop_stream(LIVE, "cam-1"),
    }
    agora.inject(Fault(503, method=method), Fault(429, {"Retry-After": "0"}, method=method))
    calls[method]()
    assert [c.status for c in agora.calls(method)] == [503, 429, 200]
    agora.tasks.add((APP_ID, "live", "na", "cam-1"))
    agora.inject(*[Fault(429, {"Retry-After": "0"}, method=method)] * 4)
    with pytest.raises(AgoraRateLimited):
        calls[method]()
    agora.inject(*[Fault(500, method=method)] * 4)
    with pytest.raises(AgoraUnavailable):
        calls[method]()


name = st.text(min_size=1, max_size=128).filter(
    lambda s: s not in (".", "..") and not any(c.isspace() or not c.isprintable() for c in s)
)


@given(entry_point=name, stream=name, region=st.sampled_from(["cn", "ap", "na", "eu"]))
def test_stream_names_never_change_which_url_is_hit(entry_point: str, stream: str, region: str) -> None:
    target = Target(app_id=APP_ID, entry_point=entry_point, region=region)
    start = urlsplit(stream_start_path(target, stream))
    stop = urlsplit(stream_stop_path(target, stream))
    for split in (start, stop):
        parts = split.path.split("/")
        assert parts[:6] == ["", "v1", "projects", APP_ID, "fls", "entry_points"]
        assert parts[7:11] == ["admin", "record", "custom", "regions"]
        assert (unquote(parts[6]), parts[11], parts[12]) == (entry_point, region, "tasks")
        assert not split.fragment
    assert len(start.path.split("/")) == 13 and parse_qs(start.query, keep_blank_values=True) == {"id": [stream]}
    assert len(stop.path.split("/")) == 14 and unquote(stop.path.split("/")[13]) == stream and not stop.query


@given(entry_point=name)
def test_the_switch_path_has_one_segment_per_entry_point(entry_point: str) -> None:
    parts = switch_path(APP_ID, entry_point).split("/")
    assert len(parts) == 11 and unquote(parts[6]) == entry_point
    assert parts[7:] == ["settings", "record", "custom", "auto"]
