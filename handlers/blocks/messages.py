"""Short ephemeral messages: usage, refusals, upstream errors. Every text given to `usage` and
`error` is plain text, typed or from Agora, so they escape it: nothing in it can mention, link or
mark up, whoever wrote it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from bot import switch
from bot.commands import USAGE
from bot.models import Target

# How recbot's own messages name a person (`<@U123>`), once escaped; see escape_keeping_mentions.
_ESCAPED_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{1,31})&gt;")


def escape(text: str) -> str:
    """Make user-supplied text inert in mrkdwn (no mentions, links or markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_keeping_mentions(text: str, users: Iterable[str]) -> str:
    """`text` escaped, but for the mentions (`<@U123>`) of `users`, the people recbot's own
    words in it name (who holds a request). Any other mention, a channel-wide `<!channel>`,
    a channel or a link stays inert, wherever it came from (Agora's words, what was typed)."""
    named = set(users)
    return _ESCAPED_MENTION.sub(lambda m: f"<@{m[1]}>" if m[1] in named else m[0], escape(text))


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


def answer_unconfirmed(ref: str, sent_to_agora: bool) -> str:
    """What a person is told when Slack did not confirm recbot's answer to them: it may be
    there or not, and what recbot did meanwhile."""
    done = (
        "A change was sent to Agora: check whether it is in effect with `/recording get` before you run the "
        "command again."
        if sent_to_agora
        else "Nothing was sent to Agora; if you do not see the answer above, run the command again."
    )
    return f"Slack did not confirm that recbot's answer reached you (ref {ref}). {done}"


def slack_refused(ref: str, error: str, sent_to_agora: bool) -> str:
    """What a person is told when Slack refused a call recbot made while doing what they asked
    (a form it could not update, say): Slack's word for it, and what recbot left behind."""
    done = (
        "A change was sent to Agora: check whether it is in effect with `/recording get` before you try again."
        if sent_to_agora
        else "Nothing was sent to Agora; try again."
    )
    return f"Slack refused recbot's update ({error}) (ref {ref}). {done}"


def went_wrong(ref: str, sent_to_agora: bool) -> str:
    """What a person is told when recbot failed unexpectedly while doing what they asked:
    what it left behind, as far as recbot knows, and the reference its log carries."""
    if sent_to_agora:
        return (
            f"Something went wrong on recbot's side after a change was sent to Agora, so whether it is "
            f"in effect is unknown (ref {ref}). Check it with `/recording get`, and give whoever runs recbot "
            "the reference."
        )
    return (
        f"Something went wrong on recbot's side; nothing was sent to Agora (ref {ref}). Try again; "
        "if it happens again, give whoever runs recbot the reference."
    )


MAX_SECTION = 3000  # Slack's limit on a section's text


def fitting(lines: list[str], most: int, rest: Callable[[int], str], limit: int = MAX_SECTION) -> str:
    """At most `most` of `lines`, each whole, as many as fit in `limit` characters together with
    `rest(n)`, the line that counts the n left out (none when none is): a line cut in the middle
    (a name's code span left open) or a count cut off would say nothing of what is missing."""
    shown: list[str] = []
    for line in lines[:most]:
        left = len(lines) - len(shown) - 1
        needed = len("\n".join([*shown, line])) + (len("\n" + rest(left)) if left else 0)
        if needed > limit:
            break
        shown.append(line)
    if len(shown) < len(lines):
        shown.append(rest(len(lines) - len(shown)))
    return "\n".join(shown)
