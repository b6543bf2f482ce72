"""slack_sdk's Web API client, made to follow no redirect: urllib would send the token's
Authorization header on to wherever a redirect points (a captive portal, a misconfigured
SLACK_API_URL). A redirect is Slack's answer as it stands: a SlackApiError with its 3xx."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.request import HTTPRedirectHandler, HTTPSHandler, ProxyHandler, Request

from slack_sdk import WebClient


class _NoRedirects(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError, which slack_sdk reads as the answer


class NoRedirectWebClient(WebClient):
    """A WebClient whose calls follow no redirect; otherwise as slack_sdk's (its proxy, TLS
    context, retries and answer parsing)."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if not url.lower().startswith("http") or not isinstance(self.proxy, str | None):
            return super()._perform_urllib_http_request_internal(url, req)  # refused there, as ever
        # As slack_sdk opens it (an explicit proxy, else urllib's from the environment), but for redirects.
        proxy = [ProxyHandler({"http": self.proxy, "https": self.proxy})] if self.proxy is not None else []
        opener = urllib.request.build_opener(*proxy, HTTPSHandler(context=self.ssl), _NoRedirects())
        with opener.open(req, timeout=self.timeout) as resp:
            if resp.headers.get_content_type() == "application/gzip":
                return {"status": resp.code, "headers": resp.headers, "body": resp.read()}
            charset = resp.headers.get_content_charset() or "utf-8"
            return {"status": resp.code, "headers": resp.headers, "body": resp.read().decode(charset)}


@contextmanager
def unlogged_answers() -> Iterator[None]:
    """slack_sdk logs an answer it cannot read as JSON as an ERROR, quoting its start, before it
    raises: where recbot says what went wrong in one line of its own (a start's checks), that line
    would be a second one, quoting whatever answered."""
    sdk = logging.getLogger("slack_sdk.web.base_client")
    was, sdk.disabled = sdk.disabled, True
    try:
        yield
    finally:
        sdk.disabled = was
