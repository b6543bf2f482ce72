"""How long `./run doctor --http` takes when Slack and Agora accept connections
and never answer (a firewall that drops, a hung proxy). Run by hand:

    .venv/bin/python -m bench.doctor_silent [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fakes.http import SilentServer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    silent = SilentServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    env |= {
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": "bench",
        "AGORA_CUSTOMER_ID": "bench",
        "AGORA_CUSTOMER_SECRET": "bench",
        "AGORA_APP_ID": "BENCH",
        "RECBOT_APPROVERS": "UBOB,UCAROL",
        "RECBOT_APPROVAL_CHANNEL": "CAPPROVE",
        "SLACK_API_URL": silent.url + "/api/",
        "AGORA_API_URL": silent.url,
        "PYTHONPATH": str(ROOT),
    }
    seconds = []
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(runs):
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "recbot", "doctor", "--http"], cwd=cwd, env=env, capture_output=True, text=True
            )
            seconds.append(time.monotonic() - began)
    silent.stop()
    print(done.stdout, end="")
    print(f"exit {done.returncode}; {runs} runs: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")


if __name__ == "__main__":
    main()
