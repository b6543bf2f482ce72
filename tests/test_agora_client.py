"""The Agora client against the emulator, and its signing, for all inputs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote, unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from urllib3 import HTTPHeaderDict

import bot.agora
from bot.agora import (
    AgoraBadRequest,
    AgoraBusy,
    AgoraClient,
    AgoraCredentialsUnusable,
    AgoraForbidden,
    AgoraNotFound,
    AgoraPaused,
    AgoraRateLimited,
    AgoraRedirected,
    AgoraUnauthorized,
    AgoraUnavailable,
    AgoraUnknownApp,
    AgoraUntrusted,
    _retry_after,
    _secrets_sent,
    _upstream_message,
    config_path,
)
from bot.applying import refusal
from bot.models import FormatConfig, RecordingConfig, StorageConfig, Target
from bot.ratelimit import TokenBucket
from bot.signing import body_digest, sign, signing_string
from bot.transport import Answer
from tests.conftest import APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, SECRET_KEY
from tests.fake_time import FakeTime
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.http import TricklingServer
from tests.test_transport import TlsServer

LIVE = Target(app_id=APP_ID, entry_point="live", region="na")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(agora: AgoraEmulator, sleeps: list[float]) -> AgoraClient:
    return AgoraClient(
        base_url=agora.url,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        read_timeout=1,
        sleep=sleeps.append,
    )


def test_get_parses_config(client: AgoraClient) -> None:
    config = client.get_config(LIVE)
    assert config.mp4 and not config.hls
    assert config.storage_config is not None and config.storage_config.bucket == "rec-bucket"


@pytest.mark.parametrize(
    "answer", [{}, {"message": "surprise"}, {"mp4Config": None, "hlsConfig": None, "storageConfig": None}]
)
def test_a_configuration_answer_with_none_of_its_objects_is_unexpected_not_all_off(client, agora, answer) -> None:
    agora.put(APP_ID, "odd", "na", answer)
    with pytest.raises(AgoraUnavailable) as caught:
        client.get_config(Target(app_id=APP_ID, entry_point="odd", region="na"))
    assert caught.value.upstream_message == "unexpected answer (no mp4Config, hlsConfig or storageConfig in it)"


def test_a_configuration_answered_204_without_a_body_is_unexpected_not_all_off(client, agora) -> None:
    agora.inject(Fault(204, method="GET"))
    with pytest.raises(AgoraUnavailable, match="no mp4Config, hlsConfig or storageConfig"):
        client.get_config(LIVE)
    assert len(agora.calls()) == 1


@pytest.mark.parametrize("status", [200, 202, 204])
def test_a_list_of_entry_points_answered_without_its_list_is_unexpected_not_empty(client, agora, status) -> None:
    agora.inject(Fault(status, method="GET"))  # {"message": ...}, or no body at all for a 204
    with pytest.raises(AgoraUnavailable, match="unexpected answer"):
        client.list_entry_points(APP_ID)


def test_a_configuration_of_one_object_is_read_with_the_others_unset(client, agora) -> None:
    agora.put(APP_ID, "mp4only", "na", {"mp4Config": {"enabled": True}})
    config = client.get_config(Target(app_id=APP_ID, entry_point="mp4only", region="na"))
    assert config.mp4 and not config.hls and config.storage_config is None


def test_patch_sends_signed_json_body(client: AgoraClient, agora: AgoraEmulator) -> None:
    client.set_config(LIVE, RecordingConfig(hls_config=FormatConfig(enabled=True)))
    (patch,) = agora.calls("PATCH")
    assert patch.status == 200 and patch.json() == {"hlsConfig": {"enabled": True}}
    assert patch.headers["content-type"] == "application/json"
    assert agora.config(APP_ID, "live", "na")["hlsConfig"] == {"enabled": True}


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, AgoraBadRequest), (401, AgoraUnauthorized), (403, AgoraForbidden), (404, AgoraNotFound)],
)
def test_client_errors_are_typed_and_not_retried(client, agora, status, error) -> None:
    agora.inject(Fault(status, message="upstream says no"))
    with pytest.raises(error) as caught:
        client.get_config(LIVE)
    assert caught.value.upstream_message == "upstream says no"
    assert len(agora.calls()) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_nor_sent_again_and_names_the_setting(client, agora, sleeps, status) -> None:
    before = agora.config(APP_ID, "live", "na")
    agora.inject(Fault(status, {"Location": "https://elsewhere.example:8443/dev/v1/x?token=abc"}, method="PATCH"))
    with pytest.raises(AgoraRedirected) as caught:
        client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)))
    assert len(agora.calls()) == 1 and sleeps == []
    assert caught.value.status == status and caught.value.location == "https://elsewhere.example:8443"
    assert "AGORA_API_URL" in caught.value.user_message() and "does not follow" in caught.value.user_message()
    assert f"answered {status}" in caught.value.user_message()
    assert agora.config(APP_ID, "live", "na") == before


def test_a_redirect_is_told_as_such_to_a_call_that_is_never_sent_again(client, agora) -> None:
    agora.inject(Fault(307, {"Location": "https://elsewhere.example/"}, method="PATCH"))
    with pytest.raises(AgoraRedirected):
        client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)), resend=False)
    assert len(agora.calls()) == 1


@pytest.mark.parametrize("status", [300, 304])
def test_a_3xx_that_sends_nowhere_else_is_not_a_redirect(client, agora, status) -> None:
    agora.inject(Fault(status, method="PATCH"))
    with pytest.raises(AgoraUnavailable) as caught:
        client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)), resend=False)
    assert type(caught.value) is AgoraUnavailable and caught.value.status == status


@pytest.mark.parametrize(
    "final", [Fault(302, {"Location": "https://elsewhere.example/"}), Fault(400), Fault(404), Fault(401)]
)
def test_a_change_that_may_have_landed_is_uncertain_whatever_the_next_attempt_is_told(client, agora, final) -> None:
    """A 503 that applied the change, then a final answer that would say it did not: the caller must
    read back, not tell a person nothing changed."""
    agora.inject(Fault(503, applies=True, method="PATCH"), Fault(final.status, final.headers, method="PATCH"))
    with pytest.raises(AgoraUnavailable) as caught:
        client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)))
    assert type(caught.value) is AgoraUnavailable and caught.value.status == 503
    assert agora.config(APP_ID, "live", "na")["mp4Config"] == {"enabled": False}  # it had landed


def test_a_read_is_told_what_its_last_answer_said(client, agora) -> None:
    """A read changes nothing, so a 503 before a 404 leaves a 404: no such entry point."""
    agora.inject(Fault(503, method="GET"), Fault(404, message="no such entry point", method="GET"))
    with pytest.raises(AgoraNotFound):
        client.get_config(LIVE)


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (None, None),
        ("", None),
        ("/dev/v1/elsewhere", None),  # relative: the same host, nothing to show
        ("http://api.example", "http://api.example"),
        ("  https://[2001:db8::1]:8443/p  ", "https://[2001:db8::1]:8443"),
        ("https://user:secret@api.example/", None),
        ("javascript:alert(1)", None),
        ("ftp://api.example/", None),
        ("https://api.example:99999/", None),
        ("https://api.example:0/", None),
        ("https://bücher.example/", None),
        ("https://api.example\x07/", None),
        ("https://ho st/", None),
        ("https://api.example:/", None),
        ("http://<!channel>/", None),
        ("https://a.example%0d%0aX-Evil:1/", None),
        ("https://" + "a" * 300 + ".example/", None),
        ("//api.example/", None),
        ("http:///dev/v1", None),
        ("https://:8443/", None),
        ("https://api.example  ", "https://api.example"),
    ],
)
def test_only_an_http_origin_of_a_redirect_is_kept(location, shown) -> None:
    assert bot.agora.redirected_to(location) == shown


@given(st.text())
def test_what_is_kept_of_any_location_is_an_http_origin_and_nothing_more(location: str) -> None:
    kept = bot.agora.redirected_to(location)
    if kept is not None:
        assert re.fullmatch(r"https?://[!-~]+", kept) and "@" not in kept
        assert not any(mark in kept.split("://", 1)[1] for mark in "/?#")


def test_a_404_is_logged_at_debug_and_retries_and_failures_at_warning(client, agora, caplog) -> None:
    """A scan meets a 404 for every region an entry point has no configuration in,
    hundreds per scan: an answer, not a failure, and no WARNING each."""
    agora.inject(Fault(404, message="no such configuration"), Fault(503))
    with caplog.at_level(logging.DEBUG, logger="bot.agora"):
        with pytest.raises(AgoraNotFound):
            client.get_config(LIVE)
        client.get_config(LIVE)  # a 503, retried: still a warning
    answered = [(record.levelno, record.getMessage()) for record in caplog.records if "answered" in record.getMessage()]
    assert [(level, "404" in line, "503" in line) for level, line in answered] == [
        (logging.DEBUG, True, False),
        (logging.WARNING, False, True),
    ]


def test_429_honours_retry_after(client, agora, sleeps) -> None:
    agora.inject(Fault(429, {"Retry-After": "7"}, "slow down"))
    client.get_config(LIVE, wait_limit=None)  # a person's call is not kept 7 s (see the retry window's tests)
    assert [c.status for c in agora.calls()] == [429, 200]
    assert sleeps == [7.0]


def test_backoff_grows_exponentially_and_stops_after_three_retries(client, agora, sleeps) -> None:
    agora.inject(*[Fault(503)] * 4)
    with pytest.raises(AgoraUnavailable):
        client.get_config(LIVE)
    assert len(agora.calls()) == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]


def test_rate_limit_persisting_is_typed(client, agora) -> None:
    agora.inject(*[Fault(429, {"Retry-After": "0"})] * 4)
    with pytest.raises(AgoraRateLimited):
        client.get_config(LIVE)


def test_patch_is_retried_too(client, agora) -> None:
    agora.inject(Fault(502, method="PATCH"))
    client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)))
    assert [c.status for c in agora.calls("PATCH")] == [502, 200]


def test_read_timeout_is_retried_then_unavailable(client, agora) -> None:
    agora.inject(*[Fault(200, delay=1.5)] * 4)
    with pytest.raises(AgoraUnavailable, match="timed out"):
        client.get_config(LIVE, wait_limit=None)
    assert len(agora.calls()) == 4


def hurried(agora: AgoraEmulator, sleeps: list[float], window: float = 0.2) -> AgoraClient:
    """A client whose person's calls may be retried for `window` s only, with a 0.3 s read timeout."""
    return AgoraClient(
        base_url=agora.url,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        read_timeout=0.3,
        retry_window=window,
        sleep=sleeps.append,
    )


def test_an_agora_that_trickles_its_answer_is_a_timeout_after_one_read_timeout(sleeps) -> None:
    """Headers at once, then a byte every 50 ms: each read is quick, the answer never whole."""
    body = b'{"mp4Config": {"enabled": true}, "hlsConfig": {"enabled": false}}' + b" " * 400
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    trickling = TricklingServer(answer + body, len(answer), every=0.05)
    client = AgoraClient(
        base_url=trickling.url, customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, read_timeout=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(AgoraUnavailable) as raised:
            client.get_config(LIVE)
        person_waited = time.monotonic() - started
    finally:
        client.close()
        trickling.stop()
    assert raised.value.upstream_message == "timed out"
    assert person_waited < 15.0  # three attempts of 0.3 s and backoff (about 3 s), not 23 s for the first


def test_a_persons_call_is_not_sent_again_once_a_timeout_outlasted_the_retry_window(agora, sleeps) -> None:
    agora.inject(*[Fault(200, delay=0.6)] * 4)
    with pytest.raises(AgoraUnavailable, match="timed out"):
        hurried(agora, sleeps).get_config(LIVE)
    assert len(agora.calls()) == 1 and sleeps == []


def test_background_work_retries_a_timeout_whatever_the_retry_window(agora, sleeps) -> None:
    agora.inject(*[Fault(200, delay=0.6)] * 4)
    with pytest.raises(AgoraUnavailable, match="timed out"):
        hurried(agora, sleeps).get_config(LIVE, wait_limit=None)
    assert len(agora.calls()) == 4 and len(sleeps) == 3


def test_a_slow_server_error_ends_a_persons_call_once_past_the_retry_window(agora, sleeps) -> None:
    agora.inject(*[Fault(503, delay=0.25)] * 4)
    with pytest.raises(AgoraUnavailable) as raised:
        hurried(agora, sleeps).set_switch(APP_ID, "live", True)
    assert raised.value.status == 503
    assert [c.status for c in agora.calls()] == [503]


def test_a_persons_call_is_not_kept_waiting_past_the_window_for_a_retry_after(agora, sleeps) -> None:
    agora.inject(Fault(503, {"Retry-After": "30"}), Fault(503, {"Retry-After": "30"}))
    with pytest.raises(AgoraUnavailable) as raised:
        hurried(agora, sleeps, window=5.0).get_config(LIVE)
    assert raised.value.status == 503 and sleeps == [] and len(agora.calls()) == 1
    assert hurried(agora, sleeps, window=5.0).get_config(LIVE, wait_limit=None).mp4  # background waits it out
    assert sleeps == [30.0] and [c.status for c in agora.calls()] == [503, 503, 200]


def test_the_wait_agora_asked_for_is_passed_on_to_the_person(agora, sleeps) -> None:
    agora.inject(Fault(503, {"Retry-After": "30"}))
    with pytest.raises(AgoraUnavailable) as raised:
        hurried(agora, sleeps, window=5.0).get_config(LIVE)
    assert raised.value.retry_in == 30.0
    assert "try again in 30 s (Agora asked recbot to wait that long)" in raised.value.user_message()


def test_without_a_retry_after_nothing_is_promised() -> None:
    assert AgoraUnavailable("Bad Gateway", 502).user_message().endswith("Nothing was changed; try again later.")
    assert AgoraRateLimited("slow down").user_message().endswith("try again in a minute.")
    assert AgoraRateLimited("slow down", retry_in=0.0).user_message().endswith("try again in a minute.")


UNITS = {"s": 1, "min": 60, "h": 3600, "days": 86400}


@given(st.floats(min_value=0.001, max_value=7 * 86400, allow_nan=False))
@example(59.5)
@example(60.0)
@example(119.0)
@example(119.5)
@example(7140.0)
@example(7141.0)
@example(7199.0)
@example(7200.0)
@example(169200.0)
@example(169201.0)
@example(172799.0)
@example(172800.0)
def test_any_wait_agora_asks_for_is_told_rounded_up_in_the_unit_a_person_reads(seconds: float) -> None:
    """Never shorter than Agora's wait: seconds below 2 min, minutes below 2 h, hours below 2 days."""
    told = AgoraUnavailable("Service Unavailable", 503, retry_in=seconds).user_message()
    number, unit = re.search(r"try again in (\d+) (s|min|h|days) ", told).groups()  # type: ignore[union-attr]
    whole = math.ceil(seconds)
    minutes, hours = math.ceil(seconds / 60), math.ceil(seconds / 3600)
    expected = "s" if whole < 120 else "min" if minutes < 120 else "h" if hours < 48 else "days"
    assert unit == expected
    assert int(number) * UNITS[unit] >= seconds
    assert (int(number) - 1) * UNITS[unit] < whole  # rounded up by less than one unit


def test_a_rate_limit_says_how_long_agora_asked_for_when_it_did() -> None:
    assert AgoraRateLimited("slow down", 429, retry_in=600).user_message() == (
        "Agora is rate-limiting recbot right now. Nothing was changed; "
        "try again in 10 min (Agora asked recbot to wait that long)."
    )


def test_a_refused_change_names_agoras_wait_or_a_minute() -> None:
    told = refusal("The switch was not changed.", AgoraRateLimited("slow down", 429, retry_in=600))
    assert told == (
        "The switch was not changed. Agora is rate-limiting recbot right now; "
        "try again in 10 min (Agora asked recbot to wait that long)."
    )
    assert refusal("Not changed.", AgoraRateLimited("slow down", 429)).endswith("; try again in a minute.")


@pytest.mark.parametrize("seconds", [7 * 86400 + 1, 1e20, math.inf])
def test_a_wait_too_long_to_be_meant_is_not_repeated(seconds: float) -> None:
    assert AgoraUnavailable("Service Unavailable", 503, retry_in=seconds).user_message().endswith("try again later.")


def test_the_window_runs_from_the_first_attempt_not_the_latest(agora, sleeps) -> None:
    """Slow failures, each shorter than the window, add up past it: the second one ends the call."""
    client = AgoraClient(
        base_url=agora.url,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        read_timeout=2.0,
        backoff_base=0.01,
        retry_window=1.0,  # the first answer may come 0.39 s late on a loaded machine, the second never early
        sleep=sleeps.append,
    )
    agora.inject(*[Fault(503, delay=0.6)] * 4)
    with pytest.raises(AgoraUnavailable):
        client.get_config(LIVE)
    assert [c.status for c in agora.calls()] == [503, 503] and len(sleeps) == 1


class Readings:
    """Stands in for bot.agora's `time`: monotonic() gives `readings` in turn, then the last again."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def monotonic(self) -> float:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


@pytest.mark.parametrize(("after", "calls"), [(4.0, 2), (4.6, 1)])
def test_a_person_is_retried_within_five_seconds_of_the_first_attempt_by_default(
    agora, sleeps, monkeypatch, after: float, calls: int
) -> None:
    """The README's 5 s: a retry whose backoff (0.5-0.75 s here) would send it past 5 s is not made."""
    client = AgoraClient(
        base_url=agora.url, customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, sleep=sleeps.append
    )
    monkeypatch.setattr(bot.agora, "time", Readings(100.0, 100.0 + after))
    agora.inject(Fault(503))
    if calls == 2:
        assert client.get_config(LIVE).mp4
    else:
        with pytest.raises(AgoraUnavailable):
            client.get_config(LIVE)
    assert len(agora.calls()) == calls


def test_a_persons_quick_failures_are_still_retried_within_the_window(agora, sleeps) -> None:
    agora.inject(Fault(503), Fault(502))
    assert hurried(agora, sleeps, window=2.0).get_config(LIVE).mp4
    assert [c.status for c in agora.calls()] == [503, 502, 200] and len(sleeps) == 2


def test_connection_refused_is_unavailable(sleeps) -> None:
    dead = AgoraClient(base_url="http://127.0.0.1:9", customer_id="c", customer_secret="s", sleep=sleeps.append)
    with pytest.raises(AgoraUnavailable, match="connection failed"):
        dead.get_config(LIVE)
    assert len(sleeps) == 3


def test_errors_never_carry_the_customer_secret(client, agora) -> None:
    agora.customer_secret = "different"
    with pytest.raises(AgoraUnauthorized) as caught:
        client.get_config(LIVE)
    assert CUSTOMER_SECRET not in str(caught.value) + caught.value.user_message() + repr(client)


def test_unexpected_answer_is_unavailable_without_echoing_it(client, agora) -> None:
    # An unknown vendor code is what Agora holds, shown as such (tests/test_foreign_configs.py); a vendor
    # that is no number at all is an answer recbot cannot read.
    agora.put(APP_ID, "live", "na", {"storageConfig": {"vendor": "forty-two", "accessKey": SECRET_KEY}})
    with pytest.raises(AgoraUnavailable) as caught:
        client.get_config(LIVE)
    assert SECRET_KEY not in str(caught.value)


segment = st.text(min_size=1, max_size=128).filter(
    lambda s: s not in (".", "..") and not any(c.isspace() or not c.isprintable() for c in s)
)


@given(app=segment, entry_point=segment, region=st.sampled_from(["cn", "ap", "na", "eu"]))
def test_path_parameters_are_single_segments(app: str, entry_point: str, region: str) -> None:
    path = config_path(Target(app_id=app, entry_point=entry_point, region=region))
    parts = path.split("/")
    assert len(parts) == 12 and parts[:3] == ["", "v1", "projects"]
    assert (unquote(parts[3]), unquote(parts[6]), parts[11]) == (app, entry_point, region)
    assert "?" not in path and "#" not in path


@given(body=st.binary(max_size=300), path=st.text(min_size=1, max_size=50), secret=st.text(min_size=1, max_size=40))
def test_signature_is_hmac_of_documented_signing_string(body: bytes, path: str, secret: str) -> None:
    headers = sign(customer_id="cid", customer_secret=secret, host="h:1", method="PATCH", path=path, body=body)
    assert headers["digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    message = signing_string("h:1", headers["date"], "PATCH", path, headers["digest"])
    assert message == f"host: h:1\ndate: {headers['date']}\nPATCH {path} HTTP/1.1\ndigest: {headers['digest']}"
    expected = base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()
    assert headers["authorization"].endswith(f'signature="{expected}"')


def test_empty_body_digest_is_hash_of_nothing() -> None:
    assert body_digest(b"") == "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def limited_client(agora: AgoraEmulator, limiter: TokenBucket) -> AgoraClient:
    return AgoraClient(
        base_url=agora.url,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        backoff_base=0.01,
        sleep=lambda _seconds: None,
        limiter=limiter,
    )


def never_sleeps(seconds: float) -> None:
    pytest.fail(f"a person's call slept {seconds} s on the limiter")


def test_during_a_long_429_pause_a_persons_calls_are_refused_and_send_nothing(agora) -> None:
    limiter = TokenBucket(40, clock=lambda: 0.0, sleep=never_sleeps)
    client = limited_client(agora, limiter)
    limiter.pause(60)  # another thread's 429 said: a minute
    for call in (
        lambda: client.get_config(LIVE),
        lambda: client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False))),
        lambda: client.list_entry_points(APP_ID),
    ):
        with pytest.raises(AgoraBusy) as caught:
            call()
        # Agora's own 429, not recbot's pace: the person is told so, and for how long.
        assert caught.value.user_message() == (
            "Agora asked recbot to slow down (it answered 429, too many requests): nothing was sent; try again in 60 s."
        )
    assert agora.calls() == []


def test_a_slow_rate_refuses_a_persons_call_but_background_work_waits(agora) -> None:
    time = FakeTime()
    limiter = TokenBucket(0.1, clock=time.clock, sleep=time.sleep)  # the next token is 10 s away
    client = limited_client(agora, limiter)
    client.get_config(LIVE)  # the one saved token
    with pytest.raises(AgoraBusy) as caught:
        client.get_config(LIVE)
    # recbot's own pace, not Agora's: no 429 to wait out.
    assert caught.value.user_message() == (
        "Agora is busy right now (recbot is keeping under its rate limit); try again in a moment."
    )
    assert time.slept == [] and len(agora.calls()) == 1
    client.get_config(LIVE, wait_limit=None)  # a scan's or the drift watch's read: waits its turn
    assert time.slept == [pytest.approx(10.0)] and len(agora.calls()) == 2


def test_a_persons_call_answered_429_is_not_sent_again_past_the_window(agora, monkeypatch) -> None:
    """Agora's Retry-After of 4 s allows one retry within the 5 s; the second would go out at 8 s."""
    time = FakeTime()
    client = limited_client(agora, TokenBucket(1000, clock=time.clock, sleep=time.sleep))
    agora.inject(*[Fault(429, {"Retry-After": "4"}, "slow down")] * 4)
    monkeypatch.setattr(bot.agora, "time", Readings(100.0, 100.2, 104.3))
    with pytest.raises(AgoraRateLimited) as caught:
        client.get_config(LIVE)
    assert caught.value.user_message() == (
        "Agora is rate-limiting recbot right now. Nothing was changed; "
        "try again in 4 s (Agora asked recbot to wait that long)."
    )
    assert [c.status for c in agora.calls()] == [429, 429]


def test_background_work_answered_429_is_retried_every_time(agora, monkeypatch) -> None:
    time = FakeTime()
    client = limited_client(agora, TokenBucket(1000, clock=time.clock, sleep=time.sleep))
    agora.inject(*[Fault(429, {"Retry-After": "4"}, "slow down")] * 3)
    monkeypatch.setattr(bot.agora, "time", Readings(100.0, 100.2, 104.3, 108.4))
    assert client.get_config(LIVE, wait_limit=None).mp4
    assert [c.status for c in agora.calls()] == [429, 429, 429, 200]


def test_a_429_asking_for_longer_than_a_person_waits_is_told_as_agora_asked(agora) -> None:
    """The person hears Agora's wait; the pause recbot keeps for everyone is Agora's, at most 30 s,
    and a call within it is not sent at all."""
    client = limited_client(agora, TokenBucket(40, clock=lambda: 0.0, sleep=never_sleeps))
    agora.inject(Fault(429, {"Retry-After": "600"}, method="GET"))
    with pytest.raises(AgoraRateLimited) as caught:
        client.get_config(LIVE)
    assert "Nothing was changed; try again in 10 min (Agora asked recbot to wait that long)." in (
        caught.value.user_message()
    )
    assert [c.status for c in agora.calls()] == [429]  # Agora did nothing with it: nothing changed
    with pytest.raises(AgoraPaused) as paused:
        client.get_config(LIVE)
    assert "answered 429" in paused.value.user_message() and "nothing was sent; try again in 30 s" in (
        paused.value.user_message()
    )
    assert len(agora.calls()) == 1


def test_a_patch_retry_refused_after_a_502_may_have_landed(agora) -> None:
    """A 502 PATCH may have reached Agora: the caller must hear "unavailable"
    (the change is read back), not "busy" (nothing was sent)."""
    client = limited_client(agora, TokenBucket(0.1, clock=lambda: 0.0, sleep=never_sleeps))
    agora.inject(Fault(502, method="PATCH"))
    with pytest.raises(AgoraUnavailable) as caught:
        client.set_config(LIVE, RecordingConfig(mp4_config=FormatConfig(enabled=False)))
    assert caught.value.status == 502
    assert [c.status for c in agora.calls("PATCH")] == [502]


def recording_limiter(paused: list[float]) -> TokenBucket:
    """A bucket on the test's clock that records its pauses and sleeps nothing."""

    class Recording(TokenBucket):
        def pause(self, seconds: float) -> None:
            paused.append(seconds)
            super().pause(seconds)

    time = FakeTime()
    return Recording(40, clock=time.clock, sleep=time.sleep)


HTTP_DATE_FORMS = {
    "IMF-fixdate": lambda when: format_datetime(when, usegmt=True),
    "-0000": lambda when: format_datetime(when.replace(tzinfo=None)),
    "asctime": lambda when: time.asctime(when.utctimetuple()),
    "RFC 850": lambda when: when.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
}


@pytest.mark.parametrize("form", HTTP_DATE_FORMS)
def test_a_429_with_an_http_date_pauses_the_limiter_until_that_date(agora, form) -> None:
    paused: list[float] = []
    client = limited_client(agora, recording_limiter(paused))
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=25)
    agora.inject(Fault(429, {"Retry-After": HTTP_DATE_FORMS[form](when)}, method="GET"))
    client.get_config(LIVE, wait_limit=None)  # background: waits the pause out (on the fake clock)
    assert [c.status for c in agora.calls()] == [429, 200]
    (pause,) = paused
    assert 15 < pause <= 25  # the date, seconds from now (a generous bound: the test may be slow, not wrong)


def test_a_429_with_a_past_http_date_pauses_only_for_the_backoff(agora) -> None:
    paused: list[float] = []
    client = limited_client(agora, recording_limiter(paused))
    agora.inject(Fault(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, method="GET"))
    client.get_config(LIVE, wait_limit=None)
    (pause,) = paused
    assert 0 < pause < 0.1  # backoff_base 0.01 with jitter: the past date asks for no wait at all


NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@given(
    when=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)),
    form=st.sampled_from(["IMF-fixdate", "-0000", "asctime"]),
)
def test_retry_after_dates_in_any_form_are_seconds_from_now(when: datetime, form: str) -> None:
    when = when.replace(microsecond=0)
    expected = max(0.0, (when - NOW).total_seconds())
    assert _retry_after(HTTP_DATE_FORMS[form](when), now=NOW) == expected


@given(st.text(max_size=60))
def test_any_retry_after_value_is_none_or_a_wait(value: str) -> None:
    seconds = _retry_after(value, now=NOW)
    assert seconds is None or seconds >= 0


def test_retry_after_seconds_and_nonsense() -> None:
    assert _retry_after("7", now=NOW) == 7.0
    assert _retry_after(" 1.5 ", now=NOW) == 1.5
    assert [_retry_after(v, now=NOW) for v in (None, "", "soon", "-5", "1e3", "Wed, 32 Oct 2015 07:28:00 GMT")] == [
        None
    ] * 6


def test_an_unknown_app_id_is_not_an_unknown_entry_point(client, agora) -> None:
    agora.unknown_apps.add("NOSUCHAPP")
    with pytest.raises(AgoraUnknownApp) as caught:
        client.list_entry_points("NOSUCHAPP")
    assert "Unknown App ID" in caught.value.user_message()
    assert "entry point" not in caught.value.user_message()


@pytest.mark.parametrize("customer_id", ["cust\nid", "cust-id-\u2713"])
def test_credentials_that_cannot_be_sent_are_told_as_such_and_never_retried(
    agora: AgoraEmulator, sleeps: list[float], customer_id: str
) -> None:
    """Settings refuse such an ID; one that slipped past them is neither a network failure nor a traceback."""
    odd = AgoraClient(base_url=agora.url, customer_id=customer_id, customer_secret="s", sleep=sleeps.append)
    try:
        with pytest.raises(AgoraCredentialsUnusable):
            odd.get_config(LIVE)
    finally:
        odd.close()
    assert sleeps == [] and agora.calls() == []


def test_agoras_words_never_carry_back_the_keys_or_the_secret_recbot_sent(client, agora) -> None:
    """A 400 quoting the request's storage keys (or a 503 quoting the customer secret) is shown
    without them: Agora's words go to Slack."""
    storage = StorageConfig(vendor=1, region=0, bucket="hw-bucket", access_key="AKIAEXAMPLE", secret_key=SECRET_KEY)
    change = RecordingConfig(storage_config=storage)
    agora.inject(Fault(400, message=f"invalid key {SECRET_KEY} for access AKIAEXAMPLE", method="PATCH"))
    with pytest.raises(AgoraBadRequest) as refused:
        client.set_config(LIVE, change)
    shown = refused.value.user_message() + str(refused.value)
    assert SECRET_KEY not in shown and "AKIAEXAMPLE" not in shown
    assert "invalid key [redacted] for access [redacted]" in refused.value.user_message()
    agora.inject(*[Fault(503, message=f"upstream said {CUSTOMER_SECRET}")] * 4)
    with pytest.raises(AgoraUnavailable) as failed:
        client.get_config(LIVE)
    assert CUSTOMER_SECRET not in failed.value.user_message() + str(failed.value)


def test_agoras_status_line_is_shown_without_the_secret_too() -> None:
    """An answer that is not JSON is told by its status line's words."""
    answer = Answer(503, f"bad key {CUSTOMER_SECRET}", HTTPHeaderDict(), b"<html>down</html>")
    assert _upstream_message(answer, (CUSTOMER_SECRET,)) == "bad key [redacted]"


KEYS = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789/+=", min_size=16, max_size=40)


def _written_as(secret: str, form: str) -> str:
    return {
        "as is": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "url": quote(secret, safe=""),
        "json": json.dumps(secret).replace("/", "\\/")[1:-1],
        "first 8": secret[:8],
        "last 10": secret[-10:],
    }[form]


@given(KEYS, st.sampled_from(["as is", "upper", "lower", "url", "first 8", "last 10"]), st.text(max_size=60))
def test_a_key_sent_is_never_in_what_agora_said_however_it_is_quoted(secret: str, form: str, around: str) -> None:
    quoted = _written_as(secret, form)
    said = json.dumps({"message": f"{around}{quoted}{around}"}).encode()
    shown = _upstream_message(
        Answer(400, "Bad Request", HTTPHeaderDict(), said),
        _secrets_sent({"storageConfig": {"secretKey": secret, "accessKey": "AKIA0000"}}),
    )
    assert quoted.lower() not in shown.lower()
    assert not any(secret[i : i + 8].lower() in shown.lower() for i in range(len(secret) - 7))


@given(KEYS, st.text(alphabet="01IOilo .,:;!?-_()[]", min_size=1, max_size=80))
def test_words_that_quote_no_key_are_shown_as_agora_wrote_them(secret: str, words: str) -> None:
    """Nothing but a quote is hidden: these words share no character with any key."""
    said = json.dumps({"message": words}).encode()
    assert _upstream_message(Answer(400, "Bad Request", HTTPHeaderDict(), said), (secret,)) == words


@pytest.mark.parametrize(("secret", "hidden"), [("k3Y9", True), ("k3Y9zz7", True), ("k3Y", False)])
def test_a_short_secret_is_hidden_where_quoted_whole_and_one_under_four_characters_is_not(secret, hidden) -> None:
    said = json.dumps({"message": f"bad key {secret} here"}).encode()
    shown = _upstream_message(Answer(400, "Bad Request", HTTPHeaderDict(), said), (secret,))
    assert shown == ("bad key [redacted] here" if hidden else f"bad key {secret} here")


def test_a_key_quoted_where_agoras_words_are_cut_leaves_no_part_of_it() -> None:
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCY"
    said = json.dumps({"message": "x" * 290 + secret}).encode()
    shown = _upstream_message(Answer(400, "Bad Request", HTTPHeaderDict(), said), (secret,))
    assert not any(secret[i : i + 4] in shown for i in range(len(secret) - 3))


def test_a_429_after_a_change_that_may_have_landed_is_told_as_uncertain(agora) -> None:
    """A 503 may have applied the PATCH; the 429 on its retry, past the window, must not hide that:
    the caller reads back instead of saying nothing changed."""
    time = FakeTime()
    client = limited_client(agora, TokenBucket(1000, clock=time.clock, sleep=time.sleep))
    agora.inject(Fault(503, method="PATCH"), Fault(429, {"Retry-After": "60"}, method="PATCH"))
    with pytest.raises(AgoraUnavailable) as raised:
        client.set_config(LIVE, RecordingConfig(mp4=FormatConfig(enabled=True)))
    assert raised.value.status == 503
    assert [c.status for c in agora.calls()] == [503, 429]


def test_an_untrusted_certificate_is_told_as_such_once_and_not_tried_again(
    tmp_path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    """Sending again cannot help a certificate the CA bundle does not vouch for; the person is told
    what to set (REQUESTS_CA_BUNDLE), not to try again later."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    tls = TlsServer(tmp_path)
    client = AgoraClient(
        base_url=tls.url, customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, sleep=sleeps.append
    )
    try:
        with pytest.raises(AgoraUntrusted) as raised:
            client.get_config(LIVE)
    finally:
        client.close()
        tls.stop()
    assert tls.recorder.connections == 1 and sleeps == [] and tls.recorder.requests == []
    told = raised.value.user_message()
    assert "TLS certificate" in told and "REQUESTS_CA_BUNDLE" in told and "try again" not in told
    assert CUSTOMER_SECRET not in told
