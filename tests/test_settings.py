"""Settings: one list of every problem, each `<what is wrong>: <how to fix it>`, never a value."""

from __future__ import annotations

import ipaddress
import os
import string
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import example, given
from hypothesis import strategies as st

import bot.settings
from bot.settings import (
    Settings,
    SettingsError,
    cleartext_upstreams,
    how_to_fix,
    is_this_machine,
    load_database_settings,
    load_database_url,
    load_settings,
    unread_names,
)
from tests.conftest import CUSTOMER_SECRET


def problems(mode: str = "http", **values: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(mode, _env_file=None, **values)
    return caught.value.problems


def test_every_problem_listed_once_with_how_to_fix() -> None:
    found = problems(SLACK_BOT_TOKEN="xoxb-secret-value", AGORA_DEFAULT_REGION="mars", AGORA_APP_ID="a/b c")
    message = "\n".join(found)
    for name in ("SLACK_SIGNING_SECRET", "AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET", "AGORA_DEFAULT_REGION"):
        assert message.count(name) == 1
    assert len(found) == 5 and "Signing Secret" in message and "cn, ap, na, eu" in message
    assert "xoxb-secret-value" not in message and "SLACK_BOT_TOKEN" not in message


def test_socket_mode_needs_the_app_token_in_the_same_list(settings_overrides) -> None:
    found = problems("socket", **{**settings_overrides, "RECBOT_APPROVERS": "UBOB,bob"})
    assert len(found) == 2
    assert any(p.startswith("SLACK_APP_TOKEN is missing: ") and "--http" in p for p in found)
    assert any(p.startswith("RECBOT_APPROVERS has 1 entry that is not") for p in found)
    load_settings("http", _env_file=None, **settings_overrides)  # HTTP mode does not need it


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLACK_BOT_TOKEN", "xapp-1-A0-123-abc", "App-Level Token (xapp-...), which HTTP mode does not use"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token", "starts with xoxb-"),
        ("SLACK_APP_TOKEN", "xoxb-123-456-abc", "belongs in SLACK_BOT_TOKEN"),
        ("SLACK_APP_TOKEN", "not-a-token", "starts with xapp-"),
        ("RECBOT_APPROVERS", "UBOB,ubob", "user ID (U..., W...) or user-group ID (S...)"),
        ("RECBOT_REQUESTERS", "C0123", "user ID"),
        ("RECBOT_ALLOWED_CHANNELS", "U123", "channel ID (C..., G..., D...)"),
        # Commas alone would read as unset: everyone may request, in every channel.
        ("RECBOT_REQUESTERS", ", ,", "has no ID, only commas, spaces or invisible characters: list the IDs"),
        ("RECBOT_ALLOWED_CHANNELS", ",,", "has no ID"),
        ("RECBOT_APPROVERS", " , ", "has no ID"),
        ("RECBOT_REQUESTERS", "\u00a0", "has no ID"),  # a no-break space pasted alone
        ("RECBOT_ALLOWED_CHANNELS", "\u3000", "has no ID"),
        ("RECBOT_REQUESTERS", "\x1f", "has no ID"),
        ("RECBOT_REQUESTERS", "   ", "has no ID"),
        ("RECBOT_APPROVAL_CHANNEL", "#approvals", "channel ID (C... or G...)"),
        ("DATABASE_URL", "mysql://root@localhost/recbot", "sqlite:/// (the embedded store) or postgresql://"),
        ("DATABASE_URL", "sqlite:////tmp/x\nERROR forged line.db", "contains a control character"),
        ("DATABASE_URL", "sqlite:///recbot\t.db", "contains a control character"),
        ("DATABASE_URL", "postgresql://db.internal/recbot", "RECBOT_SEAL_KEY is required with a shared"),
        ("RECBOT_SEAL_KEY", "too-short", "not a valid key"),
    ],
)
def test_each_shape_is_checked_and_the_fix_named(settings_overrides, name, value, says) -> None:
    (found,) = problems(**{**settings_overrides, name: value})
    assert says in found
    assert value not in found


def test_a_valid_shared_database_setup_is_accepted(settings_overrides) -> None:
    key = Fernet.generate_key().decode()
    settings = load_settings(
        _env_file=None,
        **{**settings_overrides, "DATABASE_URL": "postgresql://db/recbot", "RECBOT_SEAL_KEY": key},
    )
    assert settings.RECBOT_SEAL_KEY is not None and settings.RECBOT_SEAL_KEY.get_secret_value() == key


def test_invalid_secret_value_is_never_printed() -> None:
    found = problems(RECBOT_REQUIRED_APPROVALS="0", AGORA_CUSTOMER_SECRET=CUSTOMER_SECRET)
    assert CUSTOMER_SECRET not in "\n".join(found)


def test_defaults_and_lists(settings_overrides) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_APPROVERS": "U1, S2 ,"})
    assert settings.RECBOT_APPROVERS == ("U1", "S2")
    assert settings.RECBOT_REQUEST_TTL_SECONDS == 86400 and settings.RECBOT_APPROVAL_FOR == "secrets"
    assert CUSTOMER_SECRET not in repr(settings)


# recbot's own words about settings: Hypothesis draws values from the code's string constants too,
# and a value that is a piece of them ("RECBOT_APPRO") is in the message without being echoed.
OWN_WORDS = Path(bot.settings.__file__).read_text()
VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00,"), min_size=12, max_size=60).filter(
    lambda v: len(v.strip()) >= 8 and v.strip() not in OWN_WORDS  # shorter could match the message's words by chance
)


@given(value=VALUES, name=st.sampled_from(["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "RECBOT_APPROVERS", "DATABASE_URL"]))
def test_whatever_is_typed_is_accepted_or_refused_without_being_echoed(value: str, name: str) -> None:
    base = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "AGORA_CUSTOMER_ID": "c",
        "AGORA_CUSTOMER_SECRET": "s",
        "AGORA_APP_ID": "A",
    }
    try:
        load_settings("socket", _env_file=None, **{**base, "SLACK_APP_TOKEN": "xapp-1", name: value})
    except SettingsError as exc:
        assert exc.problems and value.strip() not in str(exc)


# One value each field must refuse, every field: a new setting without an entry here fails
# test_the_table_covers_every_setting, and so gets its refusal and its fix tested.
BAD_VALUES: dict[str, str] = {
    "SLACK_BOT_TOKEN": "xoxp-a-user-token",
    "SLACK_SIGNING_SECRET": "",
    "SLACK_APP_TOKEN": "not-a-token",
    "SLACK_API_URL": "https://slack.com:99999/api/",
    "AGORA_CUSTOMER_ID": "",
    "AGORA_CUSTOMER_SECRET": "",
    "AGORA_API_URL": "https:///v1",
    "AGORA_APP_ID": "my app",
    "AGORA_DEFAULT_REGION": "mars",
    "AGORA_RATE_LIMIT": "0.001",
    "RECBOT_APPROVERS": "alice",
    "RECBOT_REQUESTERS": "U0ÄPP",
    "RECBOT_ALLOWED_CHANNELS": "#general",
    "RECBOT_APPROVAL_CHANNEL": "approvals",
    "RECBOT_APPROVAL_FOR": "some",
    "RECBOT_REQUIRED_APPROVALS": "11",
    "RECBOT_REQUEST_TTL_SECONDS": "one day",
    "RECBOT_BULK_MAX_TARGETS": "-5",
    "DATABASE_URL": "mysql://root@localhost/recbot",
    "RECBOT_SEAL_KEY": "too-short",
    "RECBOT_LOG_FORMAT": "xml",
    "RECBOT_STORAGE_PROBE": "maybe",
    "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": "Infinity",
    "RECBOT_STORAGE_ENDPOINT_OVERRIDE": "http://minio internal:9000",
    "RECBOT_AZURE_ENDPOINT_OVERRIDE": "http://azurite:10000/?comp=list",
    "RECBOT_DRIFT_INTERVAL_SECONDS": "0.01",
    "RECBOT_DRIFT_ALL": "sometimes",
    "RECBOT_METRICS_ADDR": "metrics.example.com:9464",
}


def test_the_table_covers_every_setting() -> None:
    assert set(BAD_VALUES) == set(Settings.model_fields)


@pytest.mark.parametrize("mode", ["http", "socket"])
@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_has_a_fix_and_a_refusal_says_what_then_how(settings_overrides, mode, name) -> None:
    """`<NAME> <what is wrong>: <how to fix it>`, the fix being the setting's own for the mode."""
    fix = how_to_fix(name, mode)
    assert fix and ": " not in fix  # one ": " per line, between what is wrong and the fix
    base = {**settings_overrides, "SLACK_APP_TOKEN": "xapp-1-A01-token"}
    (line,) = problems(mode, **{**base, name: BAD_VALUES[name]})
    what, _, how = line.partition(": ")
    assert what.startswith(f"{name} ") and len(what) > len(name) + 3 and how == fix, line
    if BAD_VALUES[name]:
        assert BAD_VALUES[name] not in line


def test_a_misplaced_app_token_gets_advice_that_fits_the_mode(settings_overrides) -> None:
    misplaced = {**settings_overrides, "SLACK_APP_TOKEN": "xoxb-2-bot-token-in-the-app-slot"}
    (http,) = problems("http", **misplaced)
    assert "belongs in SLACK_BOT_TOKEN" in http and "--http" not in http and "HTTP mode does not use it" in http
    (socket,) = problems("socket", **misplaced)
    assert "belongs in SLACK_BOT_TOKEN" in socket and "--http" in socket
    (http,) = problems("http", **{**settings_overrides, "SLACK_BOT_TOKEN": "xapp-1-A01-token"})
    assert "--http" not in http and "SLACK_APP_TOKEN" not in http
    (socket,) = problems("socket", **{**misplaced, "SLACK_APP_TOKEN": "xapp-1", "SLACK_BOT_TOKEN": "xapp-1-A01-token"})
    assert "move it to SLACK_APP_TOKEN" in socket


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("AGORA_RATE_LIMIT", "0.001", "must be at least 1"),
        ("AGORA_RATE_LIMIT", "0.99", "must be at least 1"),
        ("AGORA_RATE_LIMIT", "0", "must be at least 1"),
        ("AGORA_RATE_LIMIT", "-5", "must be at least 1"),
        ("AGORA_RATE_LIMIT", "1001", "must be at most 1000"),
        ("AGORA_RATE_LIMIT", "nan", "must be a finite number, not nan, inf or too large to hold"),
        ("AGORA_RATE_LIMIT", "inf", "must be a finite number, not nan, inf or too large to hold"),
        ("AGORA_RATE_LIMIT", "-inf", "must be a finite number, not nan, inf or too large to hold"),
        ("AGORA_RATE_LIMIT", "forty", "is not a number"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "0.01", "must be 0 (off) or from 30 to 86400 seconds"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "29.9", "must be 0 (off) or from 30 to 86400 seconds"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "-1", "must be 0 (off) or from 30 to 86400 seconds"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "86401", "must be 0 (off) or from 30 to 86400 seconds"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "nan", "must be a finite number, not nan, inf or too large to hold"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "inf", "must be a finite number, not nan, inf or too large to hold"),
        ("RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS", "nan", "must be a finite number, not nan, inf or too large to hold"),
        (
            "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS",
            "9" * 5000,
            "must be a finite number, not nan, inf or too large to hold",
        ),
    ],
)
def test_rates_and_intervals_have_sane_bounds(settings_overrides, name, value, says) -> None:
    (line,) = problems(**{**settings_overrides, name: value})
    assert line.startswith(f"{name} {says}: set it to ") and "less than or equal" not in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGORA_RATE_LIMIT", "1"),
        ("AGORA_RATE_LIMIT", "40"),
        ("AGORA_RATE_LIMIT", "1000"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "0"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "30"),
        ("RECBOT_DRIFT_INTERVAL_SECONDS", "86400"),
    ],
)
def test_the_bounds_themselves_are_accepted(settings_overrides, name, value) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, name: value})
    assert getattr(settings, name) == float(value)


URL_SETTINGS = ["SLACK_API_URL", "AGORA_API_URL", "RECBOT_STORAGE_ENDPOINT_OVERRIDE", "RECBOT_AZURE_ENDPOINT_OVERRIDE"]


@pytest.mark.parametrize("name", URL_SETTINGS)
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://host.example:99999/", "has a port that is not a number from 1 to 65535"),
        ("https://host.example:0/", "has a port that is not a number from 1 to 65535"),
        ("https://host.example:http/", "has a port that is not a number from 1 to 65535"),
        ("http://:8080/", "has no host name"),
        ("http:///path", "has no host name"),
        ("https://host example/", "contains spaces or control characters"),
        ("https://host.example/a b", "contains spaces or control characters"),
        ("https://host.example/\tx", "contains spaces or control characters"),
        (
            "http://127.0.0.1:18081/äpi/",
            "contains characters other than ASCII (a host name in its xn-- form, a path %-encoded)",
        ),
        (
            "https://bücher.example/",
            "contains characters other than ASCII (a host name in its xn-- form, a path %-encoded)",
        ),
        ("https://host.example/path?query=1", "must not have a query (?...) or a fragment (#...)"),
        ("https://host.example/#part", "must not have a query (?...) or a fragment (#...)"),
        ("https://host.example/?", "must not have a query (?...) or a fragment (#...)"),
        ("https://user:password@host.example/", "must not hold a user name or password"),
        ("https://999.1.1.1/", "has a host that is neither a host name nor an IP address"),
        ("https://host%20name/", "has a host that is neither a host name nor an IP address"),
        ("https://[::1/", "is not a URL (check the brackets around an IPv6 address)"),
        ("ftp://host.example/", "must be an http:// or https:// URL"),
        ("host.example:8080", "must be an http:// or https:// URL"),
    ],
)
def test_an_override_url_that_cannot_be_used_is_a_settings_error(settings_overrides, name, url, says) -> None:
    (line,) = problems(**{**settings_overrides, name: url})
    assert line == f"{name} {says}: {how_to_fix(name, 'http')}"
    assert "password" not in line.split(": ")[0] or "user name or password" in line


@pytest.mark.parametrize("name", URL_SETTINGS)
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9", "https://api.example.com/prefix/", "http://[::1]:8080", "http://minio_1:9000"]
)
def test_usable_urls_are_accepted(settings_overrides, name, url) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, name: url})
    assert getattr(settings, name).rstrip("/") == url.rstrip("/")


@given(st.ip_addresses(v=4))
@example(ipaddress.IPv4Address("127.0.0.1"))
@example(ipaddress.IPv4Address("128.0.0.1"))
@example(ipaddress.IPv4Address("0.0.0.0"))
def test_only_addresses_that_stay_on_this_machine_count_as_it(address: ipaddress.IPv4Address) -> None:
    """Written as IPv4, as IPv4 within IPv6, or bracketed by no one: the same answer."""
    stays = address in ipaddress.ip_network("127.0.0.0/8") or address == ipaddress.IPv4Address("0.0.0.0")
    assert is_this_machine(str(address)) is stays
    assert is_this_machine(f"::ffff:{address}") is stays


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "::1", "::", "127.8.9.10"])
def test_loopback_names_are_this_machine(host: str) -> None:
    assert is_this_machine(host)


@pytest.mark.parametrize("host", ["localhost.example.com", "mylocalhost", "::2", "2001:db8::1", "10.0.0.5", "agora"])
def test_other_hosts_are_not(host: str) -> None:
    assert not is_this_machine(host)


@pytest.mark.parametrize(
    ("agora_url", "slack_url", "warned"),
    [
        ("https://api.agora.io", "https://slack.com/api/", []),
        ("http://127.0.0.1:9", "http://localhost:8080/api/", []),
        ("http://[::1]:9", "http://0.0.0.0:9/api/", []),
        ("https://agora-emulator:8443", "http://10.1.2.3:8080/api/", ["SLACK_API_URL"]),
        ("http://agora-emulator:8080", "https://slack.com/api/", ["AGORA_API_URL"]),
        ("http://agora.internal.example", "http://slack.internal.example/api/", ["AGORA_API_URL", "SLACK_API_URL"]),
    ],
)
def test_an_upstream_reached_in_clear_across_the_network_is_warned_of(
    settings_overrides, agora_url, slack_url, warned
) -> None:
    urls = {"AGORA_API_URL": agora_url, "SLACK_API_URL": slack_url}
    settings = load_settings(_env_file=None, **{**settings_overrides, **urls})
    warnings = cleartext_upstreams(settings)
    assert [w.split(" ", 1)[0] for w in warnings] == warned
    for warning in warnings:
        assert "use https://" in warning and "unencrypted" in warning
    if "AGORA_API_URL" in warned:
        assert warnings[0].startswith(f"AGORA_API_URL is http:// to {agora_url.split('//')[1].split(':')[0]}, not this")
        assert "storage access and secret keys" in warnings[0]
    for value in (CUSTOMER_SECRET, settings_overrides["SLACK_BOT_TOKEN"]):
        assert all(value not in w for w in warnings)


def test_a_database_url_with_a_broken_port_is_refused(settings_overrides) -> None:
    key = Fernet.generate_key().decode()
    for url in ("postgresql://db:port/recbot", "postgresql://db:99999/recbot", "postgresql://db:65536/recbot"):
        (line,) = problems(**{**settings_overrides, "DATABASE_URL": url, "RECBOT_SEAL_KEY": key})
        assert line.startswith("DATABASE_URL ") and line.endswith(how_to_fix("DATABASE_URL", "http"))
    for url in ("postgresql://db:1/recbot", "postgresql://db:65535/recbot"):  # the bounds, kept
        assert load_settings(_env_file=None, **{**settings_overrides, "DATABASE_URL": url, "RECBOT_SEAL_KEY": key})


def test_a_shared_database_without_a_seal_key_is_refused_by_every_loader(settings_overrides, monkeypatch) -> None:
    """The key is checked when not given at all (its default), not only when given empty."""
    monkeypatch.delenv("RECBOT_SEAL_KEY", raising=False)
    given = {k: v for k, v in settings_overrides.items() if k != "RECBOT_SEAL_KEY"}
    said = "RECBOT_SEAL_KEY is required with a shared (PostgreSQL) database: " + how_to_fix("RECBOT_SEAL_KEY", "http")
    assert problems(**{**given, "DATABASE_URL": "postgresql://db/recbot"}) == [said]
    with pytest.raises(SettingsError) as caught:
        load_database_settings(_env_file=None, DATABASE_URL="postgresql://db/recbot")
    assert caught.value.problems == [said]
    assert load_database_url(_env_file=None, DATABASE_URL="postgresql://db/recbot").DATABASE_URL  # --sql needs none


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECBOT_APPROVERS", "U0ÄPP"),
        ("RECBOT_APPROVERS", "\uff350APP"),  # a fullwidth U
        ("RECBOT_REQUESTERS", "U\u0660\u0661\u0662"),  # Arabic-Indic digits: isalnum and isupper say yes
        ("RECBOT_ALLOWED_CHANNELS", "CÉNÉRAL"),
        ("RECBOT_APPROVAL_CHANNEL", "C0ÄPP"),
    ],
)
def test_non_ascii_look_alikes_of_ids_are_refused(settings_overrides, name, value) -> None:
    (line,) = problems(**{**settings_overrides, name: value})
    assert line.startswith(f"{name} ") and value not in line


ID_SETTINGS = {
    "RECBOT_APPROVERS": "UWS",
    "RECBOT_REQUESTERS": "UWS",
    "RECBOT_ALLOWED_CHANNELS": "CGD",
    "RECBOT_APPROVAL_CHANNEL": "CG",
}
LOOK_ALIKES = "UWSCGDAZ09azÄÉÜß\u0660\u0661\uff35\U0001d414\u0130_-.#@"  # Arabic digits, fullwidth and bold U, İ
ID_LIKE = st.one_of(
    st.from_regex(r"[UWSCGD][A-Z0-9]{1,10}", fullmatch=True),
    st.text(alphabet=st.sampled_from(LOOK_ALIKES) | st.characters(exclude_characters=","), min_size=1, max_size=12),
).filter(lambda v: v == v.strip())


def ascii_id_shape(value: str, prefixes: str) -> bool:
    """The reference: a prefix letter, then one or more ASCII capitals or digits."""
    return (
        len(value) >= 2 and value[0] in prefixes and all(c in string.ascii_uppercase + string.digits for c in value[1:])
    )


@given(value=ID_LIKE, name=st.sampled_from(sorted(ID_SETTINGS)))
@example(value="U0ÄPP", name="RECBOT_APPROVERS")
@example(value="UBOB", name="RECBOT_APPROVERS")
@example(value="Uİ", name="RECBOT_REQUESTERS")
def test_an_id_is_accepted_iff_it_has_the_ascii_shape(value: str, name: str) -> None:
    base = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "AGORA_CUSTOMER_ID": "c",
        "AGORA_CUSTOMER_SECRET": "s",
        "AGORA_APP_ID": "A",
    }
    try:
        load_settings(_env_file=None, **{**base, name: value})
        accepted = True
    except SettingsError as exc:
        (line,) = exc.problems
        assert line.startswith(f"{name} ")
        accepted = False
    assert accepted == ascii_id_shape(value, ID_SETTINGS[name])


def test_an_env_file_that_is_not_utf8_is_one_problem_naming_the_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = "caf\xe9-SECRET".encode("latin-1")
    (tmp_path / ".env").write_bytes(b"SLACK_BOT_TOKEN=xoxb-1\n# the secret\nAGORA_CUSTOMER_SECRET=" + secret + b"\n")
    with pytest.raises(SettingsError) as caught:
        load_settings("http")
    (line,) = caught.value.problems
    assert line == ".env line 3 is not UTF-8 text: save .env with the UTF-8 encoding (Save As in most editors)"


def test_an_empty_value_in_the_environment_counts_as_unset(monkeypatch, settings_overrides) -> None:
    for name, value in settings_overrides.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("SLACK_API_URL", "")
    monkeypatch.setenv("RECBOT_DRIFT_INTERVAL_SECONDS", "")
    monkeypatch.setenv("AGORA_CUSTOMER_ID", "")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert caught.value.problems == [f"AGORA_CUSTOMER_ID is missing: {how_to_fix('AGORA_CUSTOMER_ID', 'http')}"]
    monkeypatch.setenv("AGORA_CUSTOMER_ID", "cust")
    settings = load_settings(_env_file=None)
    assert settings.SLACK_API_URL == "https://slack.com/api/" and settings.RECBOT_DRIFT_INTERVAL_SECONDS == 300


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:9100", ("localhost", 9100)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_the_metrics_address_is_an_ip_and_a_port_or_off(settings_overrides, typed, meant) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_METRICS_ADDR": typed})
    assert settings.RECBOT_METRICS_ADDR == meant


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("::1:9101", "without brackets"),
        ("[10.1.2.3]:9101", "brackets"),
        ("9101", "IP:port"),
        ("10.1.2.3", "IP:port"),
        ("10.1.2.3:65536", "0 to 65535"),
        ("10.1.2.3:-1", "0 to 65535"),
        ("http://10.1.2.3:9101", "is a URL, not an IP address and a port"),
        ("user:pw@127.0.0.1:9464", "is not an IP address and a port (IP:port)"),
        ("[::2]", "has no port"),
        ("10.1.2.3:" + "9" * 5000, "0 to 65535"),
    ],
)
def test_a_metrics_address_that_is_not_one_is_refused(settings_overrides, typed, why) -> None:
    (line,) = problems("http", **{**settings_overrides, "RECBOT_METRICS_ADDR": typed})
    what, _fix = line.split(": ", 1)
    assert what.startswith("RECBOT_METRICS_ADDR ") and why in what and typed not in line


def test_an_empty_metrics_address_in_the_environment_turns_the_listener_off(settings_overrides, monkeypatch) -> None:
    monkeypatch.setenv("RECBOT_METRICS_ADDR", "")
    overrides = {k: v for k, v in settings_overrides.items() if k != "RECBOT_METRICS_ADDR"}
    assert load_settings(_env_file=None, **overrides).RECBOT_METRICS_ADDR is None


REQUIRED = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET", "AGORA_APP_ID")


def only_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The required settings are to come from the `.env` under test, not from this process's environment."""
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)


READ_NAMES = sorted(set(Settings.model_fields) | set(bot.settings.SocketModeSettings.model_fields))


def unread(environ: dict[str, str], env_text: str | None, tmp_path: Path) -> list[str]:
    env_file = tmp_path / ".env"
    if env_text is not None:
        env_file.write_text(env_text)
    return [name.text for name in unread_names(environ, env_file)]


def test_a_typo_of_a_setting_is_named_with_the_name_recbot_reads(tmp_path: Path) -> None:
    found = unread(
        {"RECBOT_APROVERS": "UBOB", "DATABASE_URI": "sqlite:///x"},
        "SLACK_SIGNIN_SECRET=abc\nslack_bot_token=xoxb-1\nAGORA_APP_DI=1\nSLACK_BOT_TOKENS=x\n",
        tmp_path,
    )
    assert found == [
        "DATABASE_URI in the environment is not a name recbot reads: if it is meant as DATABASE_URL, rename it",
        "RECBOT_APROVERS in the environment is not a name recbot reads: if it is meant as RECBOT_APPROVERS, rename it",
        "SLACK_SIGNIN_SECRET in .env is not a name recbot reads: if it is meant as SLACK_SIGNING_SECRET, rename it",
        "slack_bot_token in .env is not read (recbot's names are in capitals): rename it SLACK_BOT_TOKEN",
        "AGORA_APP_DI in .env is not a name recbot reads: if it is meant as AGORA_APP_ID, rename it",
        "SLACK_BOT_TOKENS in .env is not a name recbot reads: if it is meant as SLACK_BOT_TOKEN, rename it",
    ]


def test_a_typo_beside_the_right_name_is_to_be_deleted_not_renamed(tmp_path: Path) -> None:
    found = unread(
        {"SLACK_BOT_TOKEN": "xoxb-1"}, "slack_bot_token=xoxb-2\nRECBOT_APPROVERS=U1\nRECBOT_APROVERS=U2\n", tmp_path
    )
    assert found == [
        "slack_bot_token in .env is not read, and SLACK_BOT_TOKEN is set: delete slack_bot_token",
        "RECBOT_APROVERS in .env is not read, and RECBOT_APPROVERS is set: delete RECBOT_APROVERS",
    ]


def test_names_of_other_tools_and_of_recbot_itself_are_left_alone(tmp_path: Path) -> None:
    others = [
        *("PATH", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_USER_TOKEN", "SLACK_TOKEN", "DATABASE_USER"),
        *("TEST_DATABASE_URL", "RECBOT_TEST_POSTGRES_URL", "RECBOT_METRICS_PORT", "RECBOT_PORT", "RECBOT_SERVICE_HOST"),
    ]  # the last three: what Kubernetes sets for Services named recbot-metrics and recbot
    env_text = "".join(f"{name}=x\n" for name in READ_NAMES + others)
    assert unread(dict.fromkeys(READ_NAMES + others, "x"), env_text, tmp_path) == []
    assert unread({"BAD NAME": "x", "A\u200bB": "x"}, None, tmp_path) == []  # no .env is the usual case
    # Not names a shell sets, though one typo off: shown, they would look right, or split a refusal's line.
    assert (
        unread({"SLACK_BOT_TOKEN\u200b": "x", "SLACK_BOT_TOKEN\n": "x", "SLACK_BOT TOKEN": "x"}, None, tmp_path) == []
    )


@pytest.mark.parametrize("name", READ_NAMES)
def test_every_setting_one_typo_off_is_named_and_never_another_setting(tmp_path: Path, name: str) -> None:
    for typo in (name[:-1], name + "S", name[:3] + name[4:], name[:4] + name[5] + name[4] + name[6:]):
        if typo in READ_NAMES:
            continue
        (found,) = unread_names({typo: "x"}, tmp_path / "no.env")
        assert (
            found.meant is not None
            and found.meant in READ_NAMES
            and found.text.startswith(f"{typo} in the environment")
        )


def test_a_typo_in_small_letters_is_named_with_the_name_recbot_reads(tmp_path: Path) -> None:
    assert unread({"database_uri": "sqlite:///x"}, "recbot_aprovers=UBOB\n", tmp_path) == [
        "database_uri in the environment is not a name recbot reads: if it is meant as DATABASE_URL, rename it",
        "recbot_aprovers in .env is not a name recbot reads: if it is meant as RECBOT_APPROVERS, rename it",
    ]


def test_an_indented_line_that_is_not_name_equals_value_is_named_by_its_own_number(tmp_path: Path) -> None:
    (found,) = unread({}, "A=1\n  xoxb-pasted-indented\n\n\t SLACK_BOT_TOKEN xoxb-2\nB=2\n", tmp_path)
    assert found.startswith(".env lines 2, 4 are not NAME=value")


def test_a_name_two_typos_off_every_setting_is_left_alone(tmp_path: Path) -> None:
    """Two letters changed side by side, or two swapped and the next one changed, make another name."""
    for name in READ_NAMES:
        assert name[4] != name[5] and not any(c.isdigit() for c in name), name  # so each below is two typos off
        for other in (name[:4] + "00" + name[6:], name[:4] + name[5] + name[4] + "0" + name[7:]):
            assert unread_names({other: "x"}, tmp_path / "no.env") == [], other


def test_a_name_set_without_a_value_sets_nothing_so_its_typo_is_to_be_renamed(tmp_path: Path) -> None:
    """`NAME` alone, or empty (the settings ignore an empty value), leaves the setting missing: the
    typo beside it holds the value, and deleting it would lose that. An empty RECBOT_METRICS_ADDR is off."""
    found = unread(
        {"SLACK_BOT_TOKEN": "", "RECBOT_METRICS_ADDR": ""},
        "RECBOT_APPROVERS\nRECBOT_APROVERS=U2\nslack_bot_token=xoxb-2\nSLACK_SIGNING_SECRET=\n"
        "slack_signing_secret=s\nrecbot_metrics_addr=127.0.0.1:9999\n",
        tmp_path,
    )
    assert found == [
        "RECBOT_APROVERS in .env is not a name recbot reads: if it is meant as RECBOT_APPROVERS, rename it",
        "slack_bot_token in .env is not read (recbot's names are in capitals): rename it SLACK_BOT_TOKEN",
        "slack_signing_secret in .env is not read (recbot's names are in capitals): rename it SLACK_SIGNING_SECRET",
        "recbot_metrics_addr in .env is not read, and RECBOT_METRICS_ADDR is set: delete recbot_metrics_addr",
        ".env line 1 is not NAME=value (a name of letters, digits and _, then =), so recbot ignores it: "
        "write each as NAME=value, or delete it",
    ]


def test_lines_that_are_not_name_equals_value_are_named_by_their_numbers_alone(tmp_path: Path) -> None:
    env_text = (
        "A=1\n\n\nxoxb-pasted-without-a-name\n# a comment\nSLACK_BOT_TOKEN xoxb-2\nB=2\n"
        "Zm9vYmFy+YmF6/cXV4=\nSLACK_BOT_TOKEN\u200b=xoxb-3\nexport C=3\nD='multi\nline'\n"
    )
    found = unread({}, env_text, tmp_path)
    assert found == [
        ".env lines 4, 6, 8, 9 are not NAME=value (a name of letters, digits and _, then =), so recbot "
        "ignores them: write each as NAME=value, or delete it"
    ]
    assert not any("xoxb" in line or "Zm9v" in line for line in found)


def test_a_setting_on_several_lines_of_env_is_named_with_its_lines_and_the_last_is_read(
    tmp_path: Path, monkeypatch
) -> None:
    env_text = (
        "SLACK_BOT_TOKEN=xoxb-first\nSLACK_SIGNING_SECRET=s\nAGORA_CUSTOMER_ID=c\nAGORA_CUSTOMER_SECRET=s\n"
        "AGORA_APP_ID=A\n# later, pasted again\n\nSLACK_BOT_TOKEN=xoxb-second\nOTHER_TOOL=1\nOTHER_TOOL=2\n"
    )
    only_env_file(monkeypatch)
    assert unread({}, env_text, tmp_path) == [
        "SLACK_BOT_TOKEN is on 2 lines of .env (1, 8), and only the last is read: delete the others"
    ]
    settings = load_settings("http", _env_file=tmp_path / ".env")
    assert settings.SLACK_BOT_TOKEN.get_secret_value() == "xoxb-second"


@pytest.mark.parametrize("last", ["SLACK_BOT_TOKEN=", "SLACK_BOT_TOKEN", "export SLACK_BOT_TOKEN=''"])
def test_a_setting_whose_last_line_gives_no_value_is_told_to_delete_that_line(
    tmp_path: Path, monkeypatch, last: str
) -> None:
    """Deleting "the others" would lose the only value (a secret Agora shows once, perhaps)."""
    env_text = "SLACK_BOT_TOKEN=xoxb-1\nSLACK_SIGNING_SECRET=s\n" + last + "\n"
    assert unread({}, env_text, tmp_path) == [
        "SLACK_BOT_TOKEN is on 2 lines of .env (1, 3), and the last, line 3, gives it no value, "
        "so it is unset: delete line 3"
    ]
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    with pytest.raises(SettingsError) as caught:
        load_settings("http", _env_file=tmp_path / ".env")
    assert any(problem.startswith("SLACK_BOT_TOKEN is missing") for problem in caught.value.problems)


def test_a_typo_on_several_lines_is_one_warning(tmp_path: Path) -> None:
    assert unread({}, "SLACK_BOT_TOKN=a\nSLACK_BOT_TOKN=b\nslack_bot_token=c\nslack_bot_token=d\n", tmp_path) == [
        "SLACK_BOT_TOKN in .env is not a name recbot reads: if it is meant as SLACK_BOT_TOKEN, rename it",
        "slack_bot_token in .env is not read (recbot's names are in capitals): rename it SLACK_BOT_TOKEN",
    ]


def test_a_bare_setting_name_alone_is_an_unreadable_line_among_the_others_in_order(tmp_path: Path) -> None:
    assert unread({}, "oops\nSLACK_BOT_TOKEN\nalso oops\n", tmp_path) == [
        ".env lines 1, 2, 3 are not NAME=value (a name of letters, digits and _, then =), so recbot ignores "
        "them: write each as NAME=value, or delete it"
    ]


def test_a_link_where_env_should_be_that_leads_to_a_file_is_read(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "recbot.env").write_text(
        "SLACK_BOT_TOKEN=xoxb-linked\nSLACK_SIGNING_SECRET=s\nAGORA_CUSTOMER_ID=c\nAGORA_CUSTOMER_SECRET=s\n"
        "AGORA_APP_ID=A\n"
    )
    (tmp_path / ".env").symlink_to(tmp_path / "secrets" / "recbot.env")
    only_env_file(monkeypatch)
    assert load_settings("http", _env_file=tmp_path / ".env").SLACK_BOT_TOKEN.get_secret_value() == "xoxb-linked"


def test_a_link_where_env_should_be_that_leads_nowhere_is_said_so(tmp_path: Path) -> None:
    (tmp_path / ".env").symlink_to(tmp_path / "secrets" / "recbot.env")
    with pytest.raises(SettingsError) as caught:
        load_settings("http", _env_file=tmp_path / ".env")
    assert caught.value.problems == [
        f"{tmp_path / '.env'} is a link to {tmp_path / 'secrets' / 'recbot.env'}, which leads to no file "
        "(it is missing, or a loop of links): "
        "make it point to a file (or remove it, and set the environment)"
    ]


def test_a_setting_the_environment_gives_is_not_named_for_its_lines_in_env(tmp_path: Path) -> None:
    assert unread({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_BOT_TOKEN=xoxb-2\nSLACK_BOT_TOKEN=xoxb-3\n", tmp_path) == []
    assert unread({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN=xoxb-2\nSLACK_BOT_TOKEN=xoxb-3\n", tmp_path) == [
        "SLACK_BOT_TOKEN is on 2 lines of .env (1, 2), and only the last is read: delete the others"
    ]


def test_many_unreadable_lines_are_one_warning(tmp_path: Path) -> None:
    (found,) = unread({}, "A=1\n" + "garbage line\n" * 20_000, tmp_path)
    assert found.startswith(".env lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 19,990 more are not NAME=value")


def test_up_to_ten_unreadable_lines_are_numbered_and_the_rest_counted(tmp_path: Path) -> None:
    (ten,) = unread({}, "garbage line\n" * 10, tmp_path)
    assert ten.startswith(".env lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 are not NAME=value (a name"), ten
    (eleven,) = unread({}, "garbage line\n" * 11, tmp_path)
    assert eleven.startswith(".env lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 1 more are not NAME=value"), eleven


@given(secret=st.text(alphabet=string.ascii_letters + string.digits + "-_+/", min_size=12, max_size=40))
def test_no_value_or_unnamed_line_of_env_is_ever_shown(tmp_path_factory: pytest.TempPathFactory, secret: str) -> None:
    env_file = tmp_path_factory.mktemp("env") / ".env"
    env_file.write_text(f"SLACK_SIGNIN_SECRET={secret}\n{secret}\nSLACK_BOT_TOKEN {secret}\n{secret}=\n")
    shown = "\n".join(name.text for name in unread_names({"SLACK_SIGNING_SECRE": secret}, env_file))
    assert secret not in shown


def test_a_folder_where_env_should_be_is_said_so(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(SettingsError) as caught:
        load_settings("http", _env_file=tmp_path / ".env")
    assert caught.value.problems == [
        f"{tmp_path / '.env'} is a folder: make it a file (or remove it, and set the environment)"
    ]


@pytest.mark.timeout(10)  # the failure this guards against is a start that never ends
def test_a_pipe_where_env_should_be_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".env")
    assert unread_names({}, tmp_path / ".env") == []
    with pytest.raises(SettingsError) as caught:
        load_settings("http", _env_file=tmp_path / ".env")
    assert caught.value.problems == [
        f"{tmp_path / '.env'} is not a file (a pipe or a device): "
        "make it a file (or remove it, and set the environment)"
    ]


@pytest.mark.parametrize(
    ("environment", "env_text", "listens"),
    [
        ({}, "RECBOT_METRICS_ADDR=\n", False),
        ({}, "RECBOT_METRICS_ADDR=127.0.0.1:9999\n", True),
        ({"RECBOT_METRICS_ADDR": ""}, "RECBOT_METRICS_ADDR=127.0.0.1:9999\n", False),
        ({"RECBOT_METRICS_ADDR": "127.0.0.1:9999"}, "RECBOT_METRICS_ADDR=\n", True),
    ],
    ids=["empty-in-env-file", "set-in-env-file", "environment-empties-env-file", "environment-sets-over-empty"],
)
def test_an_empty_metrics_address_turns_the_listener_off_wherever_it_is_read(
    settings_overrides, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment, env_text, listens
) -> None:
    monkeypatch.delenv("RECBOT_METRICS_ADDR", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    (tmp_path / ".env").write_text(env_text)
    given = {k: v for k, v in settings_overrides.items() if k != "RECBOT_METRICS_ADDR"}
    settings = load_settings("http", _env_file=tmp_path / ".env", **given)
    assert (settings.RECBOT_METRICS_ADDR is not None) is listens
