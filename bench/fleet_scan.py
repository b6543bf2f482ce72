"""`/recording list all` over 200 entry points x 4 regions, on every instance at
once, against an Agora emulator that answers 429 above 50 requests per
second; while the scans run, a person's `/recording get` every half second on
each instance in turn. One instance stores in the embedded SQLite unless
--postgres is given; several share one PostgreSQL (a fresh schema, dropped
afterwards), all in this process. Run by hand:

    .venv/bin/python -m bench.fleet_scan [--entry-points 200] [--rate 40]
    .venv/bin/python -m bench.fleet_scan --instances 3 [--postgres postgresql://postgres@127.0.0.1:5432/test]
    .venv/bin/python -m bench.fleet_scan --postgres postgresql://postgres@127.0.0.1:5432/test   # one, on PostgreSQL
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from cryptography.fernet import Fernet

from bench.common import bench_settings, fleet_agora, fleet_parser, postgres_schema
from bench.processes import TimedSlack
from bot.services import agora_limiter
from bot.shared_budget import SharedBudget
from tests.conftest import BOT_TOKEN, POSTGRES_URL, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.watched_limiter import Grant, WatchedLimiter

ASK_EVERY = 0.5  # seconds between a person's gets during the scans


def main() -> None:
    parser = fleet_parser()
    parser.add_argument("--instances", type=int, default=1, help="1: SQLite; more: one PostgreSQL for all")
    parser.add_argument("--postgres", help=f"the PostgreSQL of the instances (several: default {POSTGRES_URL})")
    args = parser.parse_args()
    slack, agora = TimedSlack(BOT_TOKEN).start(), fleet_agora(args.entry_points)
    grants: list[Grant] = []
    asked: list[tuple[str, float]] = []
    shared = args.instances > 1 or args.postgres is not None
    postgres = postgres_schema(args.postgres or POSTGRES_URL) if shared else nullcontext()
    with tempfile.TemporaryDirectory() as folder, postgres as url:
        database = url or Path(folder) / "bench.db"
        sealing = {"RECBOT_SEAL_KEY": Fernet.generate_key().decode()} if shared else {}
        settings = bench_settings(slack, agora, database, AGORA_RATE_LIMIT=str(args.rate), **sealing)
        limiters = [agora_limiter(settings) for _ in range(args.instances)]
        bots = [start_bot(settings, fast_agora(settings, WatchedLimiter(limiter, grants))) for limiter in limiters]
        try:
            began = time.monotonic()
            for i, bot in enumerate(bots):
                SlackDriver(bot.url, SIGNING_SECRET, slack.response_url(f"scan{i}")).command("list all")
            while len(tables(slack, len(bots))) < len(bots):  # a person asks while the scans run
                time.sleep(ASK_EVERY)
                name = f"get{len(asked)}"
                bot = bots[len(asked) % len(bots)]
                asked.append((name, time.monotonic()))
                SlackDriver(bot.url, SIGNING_SECRET, slack.response_url(name)).command("get live na", user="UBOB")
            while len(answers(slack, asked)) < len(asked):
                time.sleep(0.1)
            done = tables(slack, len(bots))
            transactions = sum(limiter.transactions for limiter in limiters if isinstance(limiter, SharedBudget))
        finally:
            for bot in bots:
                bot.stop()
    reads = [r for r in agora.calls("GET") if "/regions/" in r.path and r.at >= began]
    span = reads[-1].at - reads[0].at
    achieved = (len(reads) - 1) / span
    first_ask = asked[0][1]
    waits = sorted(g.granted - g.asked for g in grants if g.lane == "person" and g.asked >= first_ask)
    answered = sorted(answer - at for (_, at), answer in zip(asked, answers(slack, asked), strict=True))
    print(f"instances: {args.instances} ({'one PostgreSQL' if shared else 'SQLite'}), rate {args.rate}/s in all")
    print(f"entry points x regions: {args.entry_points} x 4 = {args.entry_points * 4} reads per instance")
    print(f"reads sent: {len(reads)}, 429s received: {agora.rate_limited}")
    print(f"combined reads per second: {achieved:.1f} ({achieved / args.rate:.0%} of the rate)")
    print(f"command -> full table: {min(done) - began:.1f} s to {max(done) - began:.1f} s")
    print(f"a person's gets during the scans: {len(asked)}")
    p50, p99 = (percentile(waits, p) * 1000 for p in (50, 99))
    print(f"  waiting for the limiter: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  command -> answer: p50 {percentile(answered, 50):.2f} s, p99 {percentile(answered, 99):.2f} s")
    if shared:
        print(f"limiter transactions with the database: {transactions / span:.1f} per second")
    slack.stop()
    agora.stop()


def tables(slack: TimedSlack, instances: int) -> list[float]:
    """When each scan's table arrived, of those that did."""
    answers = slack.by_name()
    return [answers[f"scan{i}"][0] for i in range(instances) if "Page 1 of" in answers.get(f"scan{i}", (0, ""))[1]]


def answers(slack: TimedSlack, asked: list[tuple[str, float]]) -> list[float]:
    """When each answered `get` got its configuration shown, in the order asked."""
    got = slack.by_name()
    return [got[name][0] for name, _ in asked if "Recording configuration of" in got.get(name, (0, ""))[1]]


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


if __name__ == "__main__":
    main()
