"""Logging: text or one JSON object per line, a request id on every record,
and a redaction filter as the last line of defence against leaked secrets."""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

REDACTED = "[redacted]"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Shapes of secrets we may not know the value of: Slack tokens and key fields in JSON or form bodies.
SECRET_PATTERNS = (
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
    re.compile(r'("?(?:secret_?key|access_?key|secretKey|accessKey)"?\s*[:=]\s*"?)[^",}\s&]+', re.IGNORECASE),
)


def new_request_id() -> str:
    """Twelve hex digits that tie a request's log lines together. Not uuid4: it reads os.urandom,
    a system call that lets go of the GIL on the ack's path, and the ack then waits to get it
    back behind the listeners at work; nothing is secret about a log reference."""
    return f"{random.getrandbits(48):012x}"


def failure_frames(error: BaseException) -> str:
    """Where `error` was raised and how it got there, as a traceback shows it (chained causes
    first): each exception's type and each frame's file, line and function, but never an
    exception's message, a source line or a local, any of which may hold a secret."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    lines = []
    for exc in reversed(chain):
        kind = type(exc)
        lines.append(kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}")
        frames = traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__), lookup_lines=False)
        lines += [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}' for frame in frames]
    return "\n".join(lines)


class RedactingFilter(logging.Filter):
    """Replace known secret values and secret-shaped strings in every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string must not lose the record
            message = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            # Frames only: an exception's message can carry what a person typed, a secret key included.
            message += "\n" + failure_frames(record.exc_info[1])
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = self.scrub(message), None
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(log_format: str, secrets: Iterable[str] = (), level: int = logging.INFO) -> RedactingFilter:
    """Route every record through the redaction filter into one stderr handler."""
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return redactor


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool that runs each task in the submitter's context, so the
    request id set when a Slack request arrived follows the listener after the ack.
    It counts the tasks in flight, so a caller can wait until all acked work is done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        with self._idle:
            self._in_flight += 1
        try:
            future = super().submit(context.run, fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise
        future.add_done_callback(lambda _: self._done())
        return future

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no task is queued or running; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)
