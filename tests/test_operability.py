"""Operability: JSON logs with a request id, redaction, /healthz, clean SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.logs import REDACTED, RedactingFilter
from tests.conftest import CUSTOMER_SECRET, SIGNING_SECRET
from tests.driver import SlackDriver
from tests.fakes.agora import Fault

ROOT = Path(__file__).resolve().parent.parent


def scrubbed(redactor: RedactingFilter, message: str, *args: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    redactor.filter(record)
    return record.getMessage()


@given(secret=st.text(min_size=4, max_size=60), before=st.text(max_size=30), after=st.text(max_size=30))
def test_known_secrets_never_survive_redaction(secret: str, before: str, after: str) -> None:
    assert secret not in scrubbed(RedactingFilter([secret]), "%s%s%s", before, secret, after)


def test_secret_shaped_values_are_redacted_without_knowing_them() -> None:
    redactor = RedactingFilter()
    line = scrubbed(redactor, 'token xoxb-123-abc body {"secretKey": "s3cr3t", "accessKey":"AKIA1"} secret_key=zzz&x=1')
    assert "xoxb-123" not in line and "s3cr3t" not in line and "AKIA1" not in line and "zzz" not in line
    assert line.count(REDACTED) == 4 and "x=1" in line


def test_a_logged_exception_shows_its_frames_never_its_message() -> None:
    typed_secret = "wJalrXUtnFEMI/typed-by-a-person"  # not a secret the filter knows
    try:
        raise ValueError(f"boom {typed_secret}")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    RedactingFilter([CUSTOMER_SECRET]).filter(record)
    logged = record.getMessage()
    assert "typed-by-a-person" not in logged and "boom" not in logged
    assert logged.startswith("failed\nValueError\n") and f'File "{__file__}"' in logged
    assert "test_a_logged_exception_shows_its_frames_never_its_message" in logged and record.exc_info is None


def test_http_mode_json_logs_and_clean_sigterm(settings_overrides, slack, agora, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    env |= {k: str(v) for k, v in settings_overrides.items()} | {"RECBOT_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "recbot", "--http", "--host", "127.0.0.1", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            found = re.search(r"serving HTTP on 127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "".join([*lines, process.stderr.read()[-3000:]]) if process.poll() is not None else lines
        agora.inject(Fault(500, method="GET"))
        driver = SlackDriver(f"http://127.0.0.1:{port}", SIGNING_SECRET, slack.response_url())
        assert driver.command("get live na").status_code == 200
        slack.wait_for("response_url")
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    records = [json.loads(line) for line in (lines + rest.splitlines()) if line.strip()]
    assert process.returncode == 0
    retry = next(r for r in records if "answered 500" in r["message"])
    assert re.fullmatch(r"[0-9a-f]{12}", retry["request_id"])
    assert records[-1]["message"] == "recbot stopped cleanly"
    assert CUSTOMER_SECRET not in json.dumps(records)
