"""Sealing secrets at rest, and the key they are sealed with."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from bot.seal import Sealer, SealError, resolve_seal_key

SEALER = Sealer(Fernet.generate_key())


@given(st.text(max_size=500))
def test_seal_round_trips_and_never_holds_the_plaintext(secret: str) -> None:
    sealed = SEALER.seal(secret)
    assert SEALER.unseal(sealed) == secret
    if len(secret) >= 4:
        assert secret.encode() not in sealed


@given(st.text(max_size=200), st.text(max_size=200))
def test_tags_verify_only_their_own_text(text: str, other: str) -> None:
    assert SEALER.verify(text, SEALER.tag(text))
    assert SEALER.verify(other, SEALER.tag(text)) == (other == text)


purposes = st.sampled_from(["button", "drift", "pick", "fleet"])


@given(purposes, purposes, st.text(max_size=100), st.text(max_size=100))
def test_a_signed_value_reads_back_only_for_its_purpose_and_text(
    purpose: str, other_purpose: str, text: str, forged: str
) -> None:
    value = SEALER.signed(purpose, text)
    assert SEALER.read_signed(purpose, value) == text
    assert SEALER.read_signed(other_purpose, value) == (text if other_purpose == purpose else None)
    tag = value.rpartition(".")[2]
    assert SEALER.read_signed(purpose, f"{forged}.{tag}") == (text if forged == text else None)
    assert SEALER.read_signed(purpose, text) is None  # no tag: not genuine
    assert SEALER.read_signed(purpose, None) is None


def test_another_key_cannot_open_or_verify() -> None:
    other = Sealer(Fernet.generate_key())
    with pytest.raises(SealError, match="RECBOT_SEAL_KEY"):
        other.unseal(SEALER.seal("x"))
    assert not other.verify("x", SEALER.tag("x"))
    assert other.digest_key != SEALER.digest_key


def test_key_file_is_generated_once_with_mode_0600(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'recbot.db'}"
    first = resolve_seal_key(None, url)
    key_file = tmp_path / "recbot.db.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert resolve_seal_key(None, url) == first
    Sealer(first)  # a valid Fernet key


def test_shared_database_needs_a_configured_key() -> None:
    with pytest.raises(SealError, match="RECBOT_SEAL_KEY is required"):
        resolve_seal_key(None, "postgresql://db/recbot")


def test_invalid_key_is_refused_without_echo() -> None:
    with pytest.raises(SealError) as caught:
        Sealer(b"not-a-fernet-key-but-secret")
    assert "not-a-fernet-key-but-secret" not in str(caught.value)


def test_a_tag_is_128_bits_and_one_character_short_is_refused() -> None:
    """A button's or metadata's tag is what makes it unforgeable: short, it could be guessed."""
    value = SEALER.signed("button", "r1")
    tag = value.rpartition(".")[2]
    assert len(tag) == 32 and int(tag, 16) >= 0  # 32 hex digits
    assert SEALER.read_signed("button", value[:-1]) is None


def test_the_tag_key_is_not_the_digest_key() -> None:
    """A tag must not be a config digest's prefix: the two keys are derived apart."""
    text = "button:r1"
    assert SEALER.tag(text) != hmac.new(SEALER.digest_key, text.encode(), hashlib.sha256).hexdigest()[:32]
