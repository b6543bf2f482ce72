"""Submit of a storage change -> the form's final answer, with the storage
probe on (against moto's S3 server on 127.0.0.1) and off. The ack itself never
waits for the probe: it answers with a "checking" view at once. Run by hand:

    .venv/bin/python -m bench.probe_submit [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_settings
from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, LIVE_CONFIG, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator
from tests.fakes.slack import FakeSlack
from tests.storage_servers import MotoS3
from tests.test_change_flow import open_form, state


def run(
    probe: str, rounds: int, slack: FakeSlack, agora: AgoraEmulator, moto: MotoS3, folder: Path
) -> dict[str, list[float]]:
    keys = moto.user(f"bench-{probe}", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")
    settings = bench_settings(
        slack,
        agora,
        folder / f"{probe}.db",
        RECBOT_APPROVERS="UBOB",
        RECBOT_APPROVAL_CHANNEL="CAPPROVE",
        RECBOT_STORAGE_PROBE=probe,
        RECBOT_STORAGE_ENDPOINT_OVERRIDE=moto.url,
    )
    bot = start_bot(settings, fast_agora(settings))
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    acks, answers = [], []
    try:
        for i in range(rounds):
            entry_point = f"{probe}{i}"
            agora.put(APP_ID, entry_point, "na", LIVE_CONFIG)
            view = open_form(driver, slack, text=f"set {entry_point} na")
            updates = len(slack.of("views.update"))
            values = state(
                change=True, vendor=1, region=0, bucket="bench-bucket", access=keys.access, secret=keys.secret
            )
            began = time.monotonic()
            answer = driver.submit("UALICE", view, values)
            acks.append(time.monotonic() - began)
            assert answer.json()["response_action"] == "update"
            final = slack.wait_for("views.update", count=updates + 1)[-1]
            assert "approval" in str(final.params["view"])
            answers.append(final.at - began)
    finally:
        bot.stop()
    return {"ack": acks, "final answer": answers}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    slack, agora, moto = FakeSlack(BOT_TOKEN).start(), AgoraEmulator(CUSTOMER_ID, CUSTOMER_SECRET).start(), MotoS3()
    moto.bucket("bench-bucket")
    try:
        with tempfile.TemporaryDirectory() as folder:
            for probe in ("off", "require"):
                for what, seconds in run(probe, rounds, slack, agora, moto, Path(folder)).items():
                    ms = sorted(s * 1000 for s in seconds)
                    p95 = ms[int(len(ms) * 0.95) - 1]
                    p50 = statistics.median(ms)
                    print(f"probe {probe:7} {what:12} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms")
    finally:
        moto.stop()
        slack.stop()
        agora.stop()


if __name__ == "__main__":
    main()
