"""A fleet-wide key rotation over 200 entry points x 4 regions, planned, approved and applied
as a job, against an Agora emulator that answers 429 above 50 requests per second, with
AGORA_RATE_LIMIT 40; while it runs, a person's `/recording get` every half second. Reports the
time to apply the whole job, the Agora calls per second it achieved against the share of the
rate left to it, 429s, the person's answer times, and the progress message's edits.

With --kill, two instances on one PostgreSQL work the job: one here, one in a process of its
own (as `./run --http` runs it), killed with SIGKILL halfway through; the bench reports how long
until every target the dead one held was taken over (STRANDED_AFTER, the production value)
and the job done. Run by hand:

    .venv/bin/python -m bench.bulk_apply [--entry-points 200] [--rate 40]
    .venv/bin/python -m bench.bulk_apply --kill [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from contextlib import nullcontext
from itertools import pairwise
from pathlib import Path

from cryptography.fernet import Fernet

from bench.common import bench_environment, fleet_agora, fleet_parser, postgres_schema
from bench.fleet_scan import percentile
from bench.processes import TimedSlack
from bot.bulk_change import BulkRequest
from bot.settings import load_settings
from tests.conftest import APP_ID, BOT_TOKEN, POSTGRES_URL, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.test_budget_instances import start_process

ASK_EVERY = 0.5  # seconds between a person's gets during the job
REQUESTER, APPROVER, PERSON = "UALICE", "UBOB", "UCAROL"
ROTATION = {
    "targets": {"app_id": APP_ID, "regions": ["cn", "ap", "na", "eu"], "vendor": 1, "bucket": "rec-bucket"},
    "change": {"storage": {"kind": "keys", "access_key": "AKIAROTATED000042", "secret_key": "ROTATED-secret-0042"}},
}
ENDED = ("done", "failed", "cancelled", "expired")


def main() -> None:
    parser = fleet_parser()
    parser.add_argument("--kill", action="store_true", help="two instances on PostgreSQL, one killed halfway")
    parser.add_argument("--postgres", help=f"the PostgreSQL of --kill (default {POSTGRES_URL})")
    args = parser.parse_args()
    slack, agora = TimedSlack(BOT_TOKEN).start(), fleet_agora(args.entry_points)
    postgres = postgres_schema(args.postgres or POSTGRES_URL) if args.kill else nullcontext()
    with tempfile.TemporaryDirectory() as folder, postgres as url:
        extra = {
            "AGORA_RATE_LIMIT": str(args.rate),
            "RECBOT_APPROVERS": APPROVER,
            "RECBOT_STORAGE_PROBE": "off",  # the fake's bucket is no real one; the check is measured elsewhere
            "RECBOT_DRIFT_INTERVAL_SECONDS": "0",
        }
        if url:
            extra["RECBOT_SEAL_KEY"] = Fernet.generate_key().decode()
        environment = bench_environment(slack, agora, url or Path(folder) / "bench.db", **extra)
        settings = load_settings(_env_file=None, **environment)
        bot = start_bot(settings, fast_agora(settings))
        other = start_process(environment, Path(folder))[0] if args.kill else None
        try:
            run = Run(bot, slack, agora, other)
            run.apply()
        finally:
            bot.stop()
            if other is not None and other.poll() is None:
                other.kill()
    run.report(args)
    slack.stop()
    agora.stop()


class Run:
    """One job, asked, approved and applied, and what was seen meanwhile."""

    def __init__(self, bot: RunningBot, slack: TimedSlack, agora, other: subprocess.Popen[str] | None) -> None:
        self.bot, self.slack, self.agora, self.other = bot, slack, agora, other
        self.asked: list[tuple[str, float]] = []
        self.killed_at: float | None = None
        self.taken_over_at: float | None = None

    def apply(self) -> None:
        services = self.bot.services
        began_plan = time.monotonic()
        planned = services.bulk.ask(BulkRequest.model_validate(ROTATION), REQUESTER)
        assert planned.job is not None, planned.note
        self.job_id, self.targets = planned.job.id, len(planned.plan.rows)
        self.plan_seconds = time.monotonic() - began_plan
        self.began = time.monotonic()
        services.bulk.approve(self.job_id, APPROVER, is_approver=True)
        dead: set[str] = set()
        while (job := services.store.jobs.get(self.job_id)) is not None and job.state not in ENDED:
            time.sleep(ASK_EVERY)
            name = f"get{len(self.asked)}"
            self.asked.append((name, time.monotonic()))
            SlackDriver(self.bot.url, SIGNING_SECRET, self.slack.response_url(name)).command("get live na", user=PERSON)
            if self.other is not None and self.killed_at is None and self._landed() >= self.targets // 2:
                self.other.send_signal(signal.SIGKILL)
                self.other.wait(10)
                self.killed_at = time.monotonic()
                rows = services.store.jobs.targets(self.job_id, "in_flight")
                dead = {r.claimed_by for r in rows if r.claimed_by not in (None, services.jobs.claimer)}
                self.held = len(rows) - sum(r.claimed_by == services.jobs.claimer for r in rows)
            if dead and self.taken_over_at is None and not self._held_by(dead):
                self.taken_over_at = time.monotonic()
        self.done = time.monotonic()
        settle = self.done + 10  # the last gets' answers may still be on their way
        while time.monotonic() < settle and len(self.slack.by_name()) < len(self.asked):
            time.sleep(0.05)
        self.end = job.state if job else "gone"
        self.progress_ref = job.progress_ref if job else None
        self.outcomes = services.store.jobs.progress(self.job_id)

    def _landed(self) -> int:
        return sum(self.agora.landed().values())

    def _held_by(self, claimers: set[str]) -> bool:
        rows = self.bot.services.store.jobs.targets(self.job_id, "in_flight")
        return any(r.claimed_by in claimers for r in rows)

    def report(self, args) -> None:
        span = self.done - self.began
        calls = [r for r in self.agora.calls() if self.began <= r.at <= self.done and "/regions/" in r.path]
        people = len(self.asked) / span  # a get is one Agora call
        every = (len(calls) - 1) / (calls[-1].at - calls[0].at)  # the job's and the person's, first to last
        achieved = every - people
        share = args.rate - people
        edits = self._edits()
        gaps = [b - a for a, b in pairwise(edits)]
        got = self.slack.by_name()
        shown = [(name, at) for name, at in self.asked if "Recording configuration of" in got.get(name, (0, ""))[1]]
        answered = sorted(got[name][0] - at for name, at in shown)
        where = "two instances on one PostgreSQL, one killed halfway" if args.kill else "one instance, SQLite"
        print(f"{where}; AGORA_RATE_LIMIT {args.rate}/s; Agora answers 429 above 50/s")
        shape = f"{args.entry_points} entry points x 4 regions"
        print(f"targets: {self.targets} ({shape}); the plan read them in {self.plan_seconds:.1f} s")
        print(f"job: {self.end} in {span:.1f} s; outcomes {_nonzero(self.outcomes)}")
        print(f"Agora calls during the job: {len(calls)} ({every:.1f}/s); 429s received: {self.agora.rate_limited}")
        print(f"  the job's share of the rate (less the person's {people:.1f} gets/s): {share:.1f}/s")
        print(f"  the job's calls: {achieved:.1f}/s, {achieved / share:.0%} of its share")
        if answered:
            print(
                f"a person's gets during the job: {len(self.asked)}, answered {len(answered)}: "
                f"p50 {percentile(answered, 50) * 1000:.0f} ms, p99 {percentile(answered, 99) * 1000:.0f} ms, "
                f"max {answered[-1] * 1000:.0f} ms"
            )
        if gaps:
            print(f"progress message: {len(edits)} edits, shortest gap between two {min(gaps):.2f} s")
        if self.killed_at is not None:
            print(f"killed halfway, holding {self.held} targets in flight")
            if self.taken_over_at is not None:
                print(f"  kill -> every target it held taken over: {self.taken_over_at - self.killed_at:.1f} s")
            print(f"  kill -> job {self.end}: {self.done - self.killed_at:.1f} s")

    def _edits(self) -> list[float]:
        """When each edit of the progress message arrived at Slack."""
        ref = self.progress_ref
        if ref is None:
            return []
        return [
            c.at
            for c in self.slack.of("chat.update")
            if c.params.get("channel") == ref.channel and c.params.get("ts") == ref.ts
        ]


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n) or "none"


if __name__ == "__main__":
    main()
