"""The drift watch over 200 entry points x 4 regions (`RECBOT_DRIFT_ALL`)
against an Agora emulator that answers 429 above 50 requests per second:
how long a pass takes, how soon an outside change is announced, and how long
a `/recording get` waits while a pass runs. Run by hand:

    .venv/bin/python -m bench.drift_pass [--entry-points 200] [--rate 40]
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

from bench.common import bench_settings, fleet_arguments, fleet_fakes
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot


def main() -> None:
    args = fleet_arguments()
    slack, agora = fleet_fakes(args.entry_points)
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(
            slack,
            agora,
            Path(folder) / "bench.db",
            AGORA_RATE_LIMIT=str(args.rate),
            RECBOT_DRIFT_ALL="true",
            RECBOT_APPROVERS="UBOB",
            RECBOT_APPROVAL_CHANNEL="CAPPROVE",
        ).model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.1})  # passes back to back: below the 30 s floor
        bot = start_bot(settings, fast_agora(settings))
        drift = bot.services.drift
        asker = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url("get"))
        try:
            began = time.monotonic()
            assert drift.wait_passes(1, timeout=600)
            first = time.monotonic() - began
            done = drift.passes
            began = time.monotonic()
            assert drift.wait_passes(done + 1, timeout=600)
            steady = time.monotonic() - began
            changed = copy.deepcopy(LIVE_CONFIG)
            changed["storageConfig"]["bucket"] = "console-bucket"
            agora.put(APP_ID, "ep100" if args.entry_points > 100 else "live", "eu", changed)
            put_at = time.monotonic()
            time.sleep(1.0)  # the pass is under way: a person's command competes with it
            asked_at = time.monotonic()
            asker.command("get live na", user="UBOB")
            asked = slack.wait_for(
                "response_url", where=lambda c: "Recording configuration of `live`" in str(c.params)
            )[0]
            alert = slack.wait_for("chat.postMessage", timeout=600, where=lambda c: "Changed outside" in str(c.params))[
                0
            ]
        finally:
            bot.stop()
    reads = len([r for r in agora.calls("GET") if "/regions/" in r.path])
    print(f"targets: {args.entry_points} x 4 = {args.entry_points * 4}, rate {args.rate}/s, reads sent {reads}")
    print(f"429s received: {agora.rate_limited}")
    print(f"first pass (list, read, remember every target): {first:.1f} s")
    print(f"a pass over remembered targets: {steady:.1f} s")
    print(f"outside change -> alert posted: {alert.at - put_at:.1f} s (at most one pass plus the interval)")
    print(f"get during a pass: answered {asked.at - asked_at:.2f} s after it was issued")
    slack.stop()
    agora.stop()


if __name__ == "__main__":
    main()
