"""Secret values hidden in text someone else wrote (an upstream's error message) before it is
shown, logged or stored: quoted whole or in part (8 characters or more), in any case,
URL-encoded or JSON-escaped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"
# A quote shorter than this is left: it would match ordinary words, and says little of a key.
SHORTEST_QUOTE = 8
# A secret shorter than this is not looked for at all (it would match nearly any text); a
# secret shorter than SHORTEST_QUOTE is hidden where it is quoted whole.
SHORTEST_SECRET = 4


def _forms(secret: str) -> set[str]:
    """How a secret may be written back: as it is, URL-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


def hide(text: str, secrets: Iterable[str]) -> str:
    """`text` with every run that quotes one of `secrets` (SHORTEST_QUOTE characters of it or
    more, or the whole of a shorter one, in any case and form) replaced with REDACTED."""
    pieces = {
        form[i : i + size]
        for secret in secrets
        if len(secret) >= SHORTEST_SECRET
        for form in _forms(secret)
        for size in [min(SHORTEST_QUOTE, len(form))]
        for i in range(len(form) - size + 1)
    }
    if not pieces:
        return text
    # A lookahead finds every piece where it starts, overlapping ones too, so a quote is covered
    # to its last character.
    starts = re.compile("(?=(" + "|".join(map(re.escape, pieces)) + "))", re.IGNORECASE)
    spans: list[list[int]] = []
    for found in starts.finditer(text):
        start, end = found.start(), found.start() + len(found.group(1))
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    if not spans:
        return text
    shown, at = [], 0
    for start, end in spans:
        shown += [text[at:start], REDACTED]
        at = end
    shown.append(text[at:])
    return "".join(shown)
