"""What recbot remembers of a configuration: never a key, and every change seen."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.catalog import CATALOG
from bot.models import RecordingConfig
from bot.observation import Observation, changes_between, observe, under_key_of

KEY = b"k" * 32
# A "#" prefix keeps a key from being a chance substring of the stored JSON's own field names
# ("storage_" once was); no quote or backslash, so JSON escaping cannot hide a key that leaked.
keys = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\#'), min_size=7, max_size=39
).map(lambda text: "#" + text)


@st.composite
def configs(draw: st.DrawFn) -> RecordingConfig:
    wire: dict = {"mp4Config": {"enabled": draw(st.booleans())}, "hlsConfig": {"enabled": draw(st.booleans())}}
    if draw(st.booleans()):
        info = draw(st.sampled_from(list(CATALOG.values())))
        region = draw(st.sampled_from([r.code for r in info.regions])) if info.has_regions else 0
        wire["storageConfig"] = {
            "vendor": int(info.vendor),
            "region": region,
            "bucket": draw(st.from_regex(r"[a-z0-9-]{3,20}", fullmatch=True)),
            "accessKey": draw(keys),
            "secretKey": draw(keys),
        }
    return RecordingConfig.model_validate(wire)


@given(configs())
def test_an_observation_holds_neither_key(config: RecordingConfig) -> None:
    observation = observe(config, KEY)
    stored = observation.to_json()
    storage = config.storage_config
    if storage is not None:
        for secret in (storage.access_key, storage.secret_key):
            assert secret is not None and secret.get_secret_value() not in stored
    assert Observation.from_json(stored) == observation


@given(configs(), configs())
def test_changes_are_empty_exactly_when_the_observations_are_equal(a: RecordingConfig, b: RecordingConfig) -> None:
    before, after = observe(a, KEY), observe(b, KEY)
    changes = changes_between(before, after)
    assert (changes == []) == (before == after)
    text = repr(changes)
    for config in (a, b):
        if config.storage_config is not None:
            assert config.storage_config.secret_key.get_secret_value() not in text
            assert config.storage_config.access_key.get_secret_value() not in text


@given(configs(), keys)
def test_a_new_secret_key_alone_is_a_change_shown_only_as_changed(config: RecordingConfig, new_secret: str) -> None:
    if config.storage_config is None or config.storage_config.secret_key.get_secret_value() == new_secret:
        return
    changed = config.model_copy(deep=True)
    wire = changed.wire_json()
    wire["storageConfig"]["secretKey"] = new_secret
    (change,) = changes_between(observe(config, KEY), observe(RecordingConfig.model_validate(wire), KEY))
    assert (change.label, change.after) == ("Storage keys", "changed")


def test_the_keys_digest_depends_on_the_digest_key() -> None:
    config = RecordingConfig.model_validate(
        {"storageConfig": {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "AK12345678", "secretKey": "S" * 20}}
    )
    assert observe(config, KEY).keys_digest != observe(config, b"other" * 8).keys_digest


def test_from_json_refuses_what_to_json_did_not_write() -> None:
    import pytest

    with pytest.raises(ValueError):
        Observation.from_json('{"mp4": true}')


with_storage = configs().filter(lambda config: config.storage_config is not None)


@given(with_storage, with_storage)
def test_a_digest_made_under_another_key_never_counts_as_a_key_change(a: RecordingConfig, b: RecordingConfig) -> None:
    """After the seal key is replaced the old digests say nothing; the other fields still do."""
    remembered, live = observe(a, b"old" * 11), observe(b, KEY)
    labels = [change.label for change in changes_between(under_key_of(remembered, live), live)]
    assert labels == [change.label for change in changes_between(remembered, live) if change.label != "Storage keys"]


@given(configs(), configs())
def test_under_the_same_key_the_remembered_digest_is_kept(a: RecordingConfig, b: RecordingConfig) -> None:
    remembered, live = observe(a, KEY), observe(b, KEY)
    assert under_key_of(remembered, live) == remembered
