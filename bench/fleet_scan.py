"""`/recording list all` over 200 entry points x 4 regions against an Agora
emulator that answers 429 above 50 requests per second, with an interactive
`/recording get` issued while the scan runs. Run by hand:

    .venv/bin/python -m bench.fleet_scan [--entry-points 200] [--rate 40]
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.common import bench_settings, fleet_arguments, fleet_fakes
from tests.conftest import SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


def main() -> None:
    args = fleet_arguments()
    slack, agora = fleet_fakes(args.entry_points)
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(slack, agora, Path(folder) / "bench.db", AGORA_RATE_LIMIT=str(args.rate))
        bot = start_bot(settings, fast_agora(settings))
        scanner = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url("scan"))
        asker = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url("get"))
        try:
            began = time.monotonic()
            scanner.command("list all")
            threading.Timer(3.0, lambda: asker.command("get live na", user="UBOB")).start()
            table = slack.wait_for("response_url", timeout=600, where=lambda c: "Page 1 of" in str(c.params))[0]
            asked = slack.wait_for(
                "response_url", where=lambda c: "Recording configuration of `live`" in str(c.params)
            )[0]
        finally:
            bot.stop()
    reads = [r for r in agora.calls("GET") if "/regions/" in r.path]
    scan_reads = [r for r in reads if r.at >= began]
    span = scan_reads[-1].at - scan_reads[0].at
    get_asked = began + 3.0
    print(f"entry points x regions: {args.entry_points} x 4 = {args.entry_points * 4} reads, rate {args.rate}/s")
    print(f"reads sent: {len(reads)}, 429s received: {agora.rate_limited}")
    achieved = len(scan_reads) / span
    print(f"calls per second achieved: {achieved:.1f} ({achieved / args.rate:.0%} of the rate)")
    print(f"command -> full table: {table.at - began:.1f} s")
    print(f"interactive get during the scan: answered {asked.at - get_asked:.2f} s after it was issued")
    slack.stop()
    agora.stop()


if __name__ == "__main__":
    main()
