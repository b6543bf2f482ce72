"""Ack latency of recbot against a bare Bolt app, and command -> views.open.

    .venv/bin/python -m bench.ack_latency [--requests 2000] [--concurrency 10] [--batch 100] [--opens 30]

Four processes on 127.0.0.1: this client; the Slack fake and the Agora
emulator (`bench.processes fakes`, Agora answering at once); recbot as it runs
in production (`python -m bot --http`); and a bare Bolt app that only acks
(`bench.processes bare`), both on waitress. Signed `/recording get live na`
commands go to both apps in alternating batches, so drift of the machine hits
both alike. Latency runs from sending a request to reading its HTTP response:
Slack's view of the ack. recbot's work after the ack (the Agora read, the
response_url post) runs meanwhile and is part of what it costs.

The views.open timing uses a second recbot whose Agora emulator delays every
GET by 2.5 s, and measures from sending `/recording set` to the Slack fake
receiving `views.open` (both on the system-wide monotonic clock).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, SIGNING_SECRET
from tests.driver import SlackDriver

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.post(url + "/slack/events", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_recbot(workdir: Path, name: str, slack_url: str, agora_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    env |= {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
        "AGORA_API_URL": agora_url,
        "AGORA_APP_ID": APP_ID,
        "DATABASE_URL": f"sqlite:///{workdir / name}.db",
        "RECBOT_APPROVERS": "UBOB",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--http", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url)
    return process, url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(driver: SlackDriver, text: str) -> float:
    start = time.perf_counter()
    response = driver.command(text)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"unexpected status {response.status_code}: {response.text[:200]}")
    return elapsed


def run_batches(
    drivers: dict[str, SlackDriver], command: str, total: int, concurrency: int, batch: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(max(1, total // batch)):
            for name, driver in drivers.items():
                samples[name] += pool.map(lambda _, d=driver: timed(d, command), range(batch))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="commands per app")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--opens", type=int, default=30, help="/recording set runs for the views.open timing")
    parser.add_argument("--command", default="get live na", help="the /recording text to send (try: help)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="recbot-bench-"))
    children: list[subprocess.Popen] = []
    try:
        fakes = subprocess.Popen(
            [sys.executable, "-m", "bench.processes", "fakes"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        children.append(fakes)
        urls = json.loads(fakes.stdout.readline())
        slack_url = urls["slack"]
        response_url = slack_url.replace("/api/", "/response/bench")
        recbot, recbot_url = start_recbot(workdir, "recbot", slack_url, urls["agora"])
        slow_recbot, slow_url = start_recbot(workdir, "slow", slack_url, urls["slow_agora"])
        children += [recbot, slow_recbot]
        bare_port = free_port()
        children.append(
            subprocess.Popen([sys.executable, "-m", "bench.processes", "bare", str(bare_port), slack_url], cwd=ROOT)
        )
        bare_url = f"http://127.0.0.1:{bare_port}"
        wait_until_up(bare_url)
        drivers = {
            "recbot": SlackDriver(recbot_url, SIGNING_SECRET, response_url),
            "bare bolt": SlackDriver(bare_url, SIGNING_SECRET, response_url),
        }
        run_batches(drivers, args.command, args.batch * 2, args.concurrency, args.batch)  # warm-up, not counted
        samples = run_batches(drivers, args.command, args.requests, args.concurrency, args.batch)
        print(
            f"ack latency: {args.requests} signed `/recording {args.command}` per app, concurrency {args.concurrency}"
        )
        for name, values in samples.items():
            p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
            print(f"  {name:9}  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        ours, bare = samples["recbot"], samples["bare bolt"]
        print(
            f"  ratio      p50 {percentile(ours, 0.5) / percentile(bare, 0.5):6.2f}     "
            f"p99 {percentile(ours, 0.99) / percentile(bare, 0.99):6.2f}"
        )

        slow = SlackDriver(slow_url, SIGNING_SECRET, response_url)
        opened_url = slack_url.replace("/api/", "/_opened")
        open_times = []
        for _ in range(args.opens):
            before = len(requests.get(opened_url, timeout=5).json())
            sent = time.monotonic()
            slow.command("set live na")
            while len(arrivals := requests.get(opened_url, timeout=5).json()) == before:
                time.sleep(0.005)
            open_times.append(arrivals[before] - sent)
        print(f"command -> views.open, `/recording set` with Agora's GET delayed 2.5 s, {args.opens} runs")
        print(
            f"  p50 {percentile(open_times, 0.5) * 1000:6.2f} ms  p99 {percentile(open_times, 0.99) * 1000:6.2f} ms  "
            f"max {max(open_times) * 1000:6.2f} ms"
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


if __name__ == "__main__":
    main()
