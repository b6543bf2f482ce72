"""Short ephemeral messages: usage, refusals, upstream errors."""

from __future__ import annotations

from typing import Any

from bot.commands import USAGE


def escape(text: str) -> str:
    """Make user-supplied text inert in mrkdwn (no mentions, links or markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]


def usage(problem: str | None = None) -> list[dict[str, Any]]:
    """The usage text, after the problem with what was typed, if any."""
    return text_blocks(f":warning: {problem}\n\n{USAGE}" if problem else USAGE)


def error(text: str) -> list[dict[str, Any]]:
    return text_blocks(f":x: {text}")
