"""The ack bench for the working tree and a git ref, in one run, side by side.

    .venv/bin/python -m bench.compare REF [--runs 4] [--requests 2000] [--concurrency 10] [--batch 100]

Run it before landing any change to imports, the request path, the server or
the store's hot queries, with REF the last landed commit (e.g. `origin/main`
or `HEAD~3`): a figure that got worse is a bug.

REF is checked out into a temporary worktree; it runs on this venv when its
requirements files equal the working tree's, else on a venv of its own made
there with scripts/venv.sh. Both recbots (limiter opened, as in
bench.ack_latency), the ack-only Bolt app and the plain same-job Bolt app get
alternating batches of signed `/recording get live na`; each run prints both
builds' figures and their ratios to the two peers. Both recbots start anew for
every run, the working tree's first in odd runs and REF's in even ones: of two
copies of the same code, the one started first measured 1-2% more CPU per
command (why, is not known), so an even number of runs weighs both alike.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.ack_latency import (
    ROOT,
    Processes,
    Samples,
    arguments,
    at_least,
    measure,
    parse,
    percentile,
    ratios,
    report,
    warm_up,
)


def own_figures(samples: Samples) -> tuple[float, float]:
    """(CPU per command, ack p50), in ms: what a change to recbot alone moves, whatever the peers did."""
    return samples.cpu / len(samples.acks) * 1000, percentile(samples.acks, 0.5) * 1000


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def python_for(tree: Path) -> str:
    """This venv's python when `tree` pins the same requirements, else a venv made in `tree`."""
    same = all(
        (tree / name).read_bytes() == (ROOT / name).read_bytes()
        for name in ("requirements.txt", "requirements-dev.txt")
        if (ROOT / name).exists() and (tree / name).exists()
    )
    if same:
        return sys.executable
    print(f"{tree.name}: its requirements differ; making its own venv (once per run)", flush=True)
    subprocess.run(["bash", "-c", "source scripts/venv.sh requirements-dev.txt"], cwd=tree, check=True)
    return str(tree / ".venv" / "bin" / "python")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("ref", help="a commit, branch or tag to compare the working tree with")
    parser.add_argument(
        "--runs",
        type=at_least(1),
        default=4,
        help="measurements, each alternating all four apps (even: each build starts first as often)",
    )
    args = parse(parser)
    try:
        commit = git("rev-parse", "--verify", "--quiet", args.ref + "^{commit}")
    except subprocess.CalledProcessError:
        parser.error(f"{args.ref!r} is not a commit here (try HEAD, HEAD~1 or a commit's hash)")
    label = f"{args.ref} ({commit[:8]})"
    scratch = Path(tempfile.mkdtemp(prefix="recbot-compare-"))
    tree = scratch / "ref"
    git("worktree", "add", "--detach", str(tree), commit)
    processes = Processes()
    try:
        python = python_for(tree)
        bare, plain = processes.peer("bare"), processes.peer("plain")
        print(
            f"working tree vs {label}: {args.requests} `/recording {args.command}` per app and run, "
            f"concurrency {args.concurrency}, alternating batches of {args.batch}"
        )
        rows = []
        for run in range(1, args.runs + 1):
            # Both recbots anew each run, the first started taking turns: of identical code, the one
            # started first spent 1-2% more CPU per command, whichever build it was.
            builds = [("work", ROOT, sys.executable), ("ref", tree, python)]
            started = {
                name: processes.recbot(name, root=root, python=exe, AGORA_RATE_LIMIT="1000")
                for name, root, exe in (builds if run % 2 else builds[::-1])
            }
            contenders = [started["work"], started["ref"], bare, plain]
            warm_up(processes, contenders, args.command, args.concurrency, args.batch)
            samples = measure(processes, contenders, args.command, args.requests, args.concurrency, args.batch)
            for recbot in started.values():
                processes.stop(recbot)
            print(f"run {run}")
            report(samples)
            ours = ratios(samples["work"], samples["bare bolt"], samples["plain bolt"]) + own_figures(samples["work"])
            theirs = ratios(samples["ref"], samples["bare bolt"], samples["plain bolt"]) + own_figures(samples["ref"])
            rows.append((ours, theirs))
        print(f"\n{'':30} {'working tree':>20} {label:>28}")
        names = (
            "ack p99 / bare bolt",
            "ack p99 / plain bolt",
            "answer p99 / plain bolt",
            "CPU per command (ms)",
            "ack p50 (ms)",
        )
        for i, name in enumerate(names):
            mine = ", ".join(f"{r[0][i]:.2f}" for r in rows)
            ref = ", ".join(f"{r[1][i]:.2f}" for r in rows)
            print(f"  {name:28} {mine:>20} {ref:>28}")
    finally:
        processes.close()
        git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
