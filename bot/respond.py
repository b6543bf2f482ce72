"""Answers on a Slack `response_url`, over kept connections.

Bolt's own `respond()` opens a new connection for every answer: in production
a TLS handshake with hooks.slack.com per command, CPU that the next command's
ack then waits behind. This one keeps the connections, and is what every
listener's `respond` is (see recbot/app.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Histogram
from slack_bolt.context.respond import Respond
from slack_sdk.webhook import WebhookResponse

from bot.transport import Transport, TransportError

HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class AnswerUnconfirmed(Exception):
    """Slack did not confirm an answer on a response_url (no answer in time, or the connection
    failed once the answer was sent): the person may have it, or not. Slack's side, not recbot's."""


class ResponsePool:
    """Kept connections for every answer of the process (bot/transport.py): proxy settings
    are read once per host, a connection that could not be made is tried once more (then
    nothing was sent), nothing else is sent twice."""

    def __init__(self) -> None:
        self._transport = Transport(connect_timeout=3.05, read_timeout=10.0, connect_retries=1)

    def post(self, url: str, message: dict[str, Any], read_timeout: float | None = None) -> WebhookResponse:
        """POST `message` to `url`; Slack's answer is waited for 10 s, or `read_timeout`."""
        body = json.dumps(message).encode()
        answer = self._transport.send("POST", url, body=body, headers=HEADERS, read_timeout=read_timeout)
        return WebhookResponse(url=url, status_code=answer.status, body=answer.text, headers=dict(answer.headers))

    def close(self) -> None:
        self._transport.close()


class FirstAnswer:
    """Times a slash command from its arrival (time.monotonic()) to its first answer, once:
    a later answer (replacing the first, a failure's notice) is not observed again."""

    def __init__(self, seconds: Histogram, arrived: float) -> None:
        self._seconds = seconds  # recbot_answer_seconds of the command's verb
        self._arrived = arrived
        self._done = False

    def answered(self) -> None:
        if not self._done:
            self._done = True
            self._seconds.observe(time.monotonic() - self._arrived)


class PooledRespond(Respond):
    """Bolt's `respond()`, the same arguments, posted through a `ResponsePool`; with `first`,
    the first answer Slack took is timed."""

    def __init__(self, *, response_url: str | None, pool: ResponsePool, first: FirstAnswer | None = None) -> None:
        super().__init__(response_url=response_url)
        self._pool = pool
        self._first = first

    def _post(self, message: dict[str, Any], read_timeout: float | None = None) -> WebhookResponse:
        assert self.response_url is not None
        try:
            answer = self._pool.post(self.response_url, message, read_timeout)
        except TransportError:
            raise AnswerUnconfirmed from None  # the URL is a credential of sorts: not in the message
        if self._first is not None and 200 <= answer.status_code < 300:
            self._first.answered()
        return answer

    def __call__(  # type: ignore[override]
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[str, Any]] | None = None,
        attachments: Sequence[dict[str, Any]] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        read_timeout: float | None = None,
    ) -> WebhookResponse:
        """Bolt's arguments; `read_timeout` waits that long for Slack's answer instead of 10 s."""
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            return self._post(_message(**text), read_timeout)
        return self._post(
            _message(
                text,
                blocks,
                attachments,
                response_type,
                replace_original,
                delete_original,
                unfurl_links,
                unfurl_media,
                thread_ts,
                metadata,
            ),
            read_timeout,
        )


def _message(
    text: str = "",
    blocks: Sequence[dict[str, Any]] | None = None,
    attachments: Sequence[dict[str, Any]] | None = None,
    response_type: str | None = None,
    replace_original: bool | None = None,
    delete_original: bool | None = None,
    unfurl_links: bool | None = None,
    unfurl_media: bool | None = None,
    thread_ts: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The message as Bolt builds it: text always, the rest when given (empty lists left out)."""
    message = {
        "text": text,
        "blocks": blocks,
        "attachments": attachments,
        "response_type": response_type,
        "replace_original": replace_original,
        "delete_original": delete_original,
        "unfurl_links": unfurl_links,
        "unfurl_media": unfurl_media,
        "thread_ts": thread_ts,
        "metadata": metadata,
    }
    return {k: v for k, v in message.items() if k == "text" or (v is not None and v != [])}
