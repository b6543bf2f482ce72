"""Agora's HMAC-SHA256 request signing (agora-recording-api.md, "Authentication")."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

DATE_FORMAT = "%a, %d %b %Y %H:%M:%S GMT"


def http_date(now: datetime | None = None) -> str:
    """The `date` header: the current time in GMT."""
    return (now or datetime.now(UTC)).strftime(DATE_FORMAT)


def body_digest(body: bytes) -> str:
    """The `digest` header: SHA-256 of the exact body bytes, base64."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def signing_string(host: str, date: str, method: str, path: str, digest: str) -> str:
    """What the signature covers: host, date, request line and digest."""
    return f"host: {host}\ndate: {date}\n{method} {path} HTTP/1.1\ndigest: {digest}"


def signature(secret: str, message: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


def sign(
    *,
    customer_id: str,
    customer_secret: str,
    host: str,
    method: str,
    path: str,
    body: bytes,
    now: datetime | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request."""
    date = http_date(now)
    digest = body_digest(body)
    sig = signature(customer_secret, signing_string(host, date, method, path, digest))
    return {
        "host": host,
        "date": date,
        "digest": digest,
        "authorization": (
            f'hmac username="{customer_id}", algorithm="hmac-sha256", '
            f'headers="host date request-line digest", signature="{sig}"'
        ),
    }
