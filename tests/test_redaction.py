"""redaction.hide on its own: every form a secret may be written back in, and overlapping
secrets, hidden to their last character (the Agora client's tests drive it through Agora)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.redaction import REDACTED, SHORTEST_QUOTE, hide

FORMS = {
    "url": lambda s: quote(s, safe=""),
    "json": lambda s: json.dumps(s)[1:-1],
    "json, not ASCII-only": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
}
# Characters that URL-encoding or JSON-escaping write otherwise: each form then differs from the key.
ESCAPED = st.text(alphabet='abcXYZ019/+=%"\\\u00e9\u4e2d\t', min_size=12, max_size=40)


@pytest.mark.parametrize(
    ("key", "form"),
    [
        ("wJa/rXU+nFE/MI7MD+ENG/bPx", "url"),  # an AWS-style key: no run of 8 survives URL-encoding
        ('pa"ss\\wo"rd\\xyz', "json"),
        ("cl\u00e9-secr\u00e8te-\u00e9t\u00e9", "json"),
        ("cl\u00e9-secr\u00e8te-\u00e9t\u00e9", "json, not ASCII-only"),
    ],
)
def test_a_key_written_back_escaped_is_hidden_whole(key: str, form: str) -> None:
    assert hide(f"bad key {FORMS[form](key)}", [key]) == f"bad key {REDACTED}"


@given(key=ESCAPED, form=st.sampled_from(sorted(FORMS)))
def test_no_run_of_an_escaped_form_survives(key: str, form: str) -> None:
    written = FORMS[form](key)
    shown = hide(f"x {written} y", [key])
    runs = {written[i : i + SHORTEST_QUOTE] for i in range(len(written) - SHORTEST_QUOTE + 1)}
    assert not [run for run in runs if run.lower() in shown.lower()], shown


def test_a_short_secret_inside_a_longer_one_does_not_cut_the_longer_ones_span() -> None:
    """The two quotes overlap: the span is the longer one's, to its last character."""
    assert hide("ABCDEFGHIJKL", ["ABCDEFGHIJKL", "HIJK"]) == REDACTED
