"""Settings: one list of every problem, each with how to fix it, never a value."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from bot.settings import SettingsError, load_settings
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
    assert any(p.startswith("SLACK_APP_TOKEN is missing") and "--http" in p for p in found)
    assert any(p.startswith("RECBOT_APPROVERS has 1 entry that is not") for p in found)
    load_settings("http", _env_file=None, **settings_overrides)  # HTTP mode does not need it


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLACK_BOT_TOKEN", "xapp-1-A0-123-abc", "belongs in SLACK_APP_TOKEN"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token", "starts with xoxb-"),
        ("SLACK_APP_TOKEN", "xoxb-123-456-abc", "belongs in SLACK_BOT_TOKEN"),
        ("SLACK_APP_TOKEN", "not-a-token", "starts with xapp-"),
        ("RECBOT_APPROVERS", "UBOB,ubob", "user IDs (U..., W...) or user-group IDs (S...)"),
        ("RECBOT_REQUESTERS", "C0123", "user IDs"),
        ("RECBOT_ALLOWED_CHANNELS", "U123", "channel IDs (C..., G..., D...)"),
        ("RECBOT_APPROVAL_CHANNEL", "#approvals", "channel ID (C... or G...)"),
        ("DATABASE_URL", "mysql://root@localhost/recbot", "sqlite:/// (the embedded store) or postgresql://"),
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


VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00,"), min_size=12, max_size=60).filter(
    lambda v: len(v.strip()) >= 8  # shorter could match the message's own words by chance
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
