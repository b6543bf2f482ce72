"""What a start imports: the storage check's vendor SDKs cost every command CPU
(the collector walks what they allocate), so only a check may load them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_SDKS = ("boto3", "botocore", "azure")


def test_the_program_and_every_listener_load_no_vendor_sdk() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, recbot.app, recbot.serve, bot.probe, handlers; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({VENDOR_SDKS!r})))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"
