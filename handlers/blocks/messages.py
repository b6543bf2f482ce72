"""Short ephemeral messages: usage, refusals, upstream errors. Every text given to `usage` and
`error` is plain text, typed or from Agora, so they escape it: nothing in it can mention, link or
mark up, whoever wrote it."""

from __future__ import annotations

import re
from typing import Any

from bot import switch
from bot.commands import USAGE
from bot.models import Target

# How recbot's own messages name a person (`<@U123>`); see escape_keeping_mentions.
_ESCAPED_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{1,31})&gt;")


def escape(text: str) -> str:
    """Make user-supplied text inert in mrkdwn (no mentions, links or markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_keeping_mentions(text: str) -> str:
    """`text` escaped, but for the user mentions (`<@U123>`) recbot's own words put in it: a
    message that names who holds a request. A channel-wide `<!channel>`, a channel or a link
    stays inert, wherever it came from."""
    return _ESCAPED_MENTION.sub(r"<@\1>", escape(text))


def code(name: str) -> str:
    """A name (typed, or as Agora holds it) as an inert code span: no mention, link or markup,
    and `*` or `_` in it turns nothing bold or italic."""
    return escape(switch.code(name))


def target_name(target: Target) -> str:
    """A target as mrkdwn: its entry point and App ID as code spans."""
    region = "every region" if target.is_every_region else target.region
    return f"{code(target.entry_point)} ({region}, app {code(target.app_id)})"


def text_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]


def usage(problem: str | None = None) -> list[dict[str, Any]]:
    """The usage text, after the problem with what was typed, if any."""
    return text_blocks(f":warning: {escape(problem)}\n\n{escape(USAGE)}" if problem else escape(USAGE))


def error(text: str) -> list[dict[str, Any]]:
    """A refusal or an upstream failure; `text` is plain text, shown as written."""
    return text_blocks(f":x: {escape(text)}")
