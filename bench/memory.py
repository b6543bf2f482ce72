"""Resident memory of a recbot process: at idle, after 10,000 and 20,000 gets,
and after a `/recording list all` over 800 targets (a leak check by figures).

    .venv/bin/python -m bench.memory [--gets 10000] [--entry-points 200]

recbot runs as in production (`python -m recbot --http`) against the fakes of
bench.ack_latency, its limiter opened (memory, not the rate, is measured);
the resident set is read from /proc/<pid>/status after each step settles.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.ack_latency import Contender, Processes, Samples, collect_answers, send_command


def rss_mib(pid: int) -> float:
    """VmRSS of `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int) -> float:
    """The resident set once listeners are idle: sampled until two readings a second apart agree."""
    before = rss_mib(pid)
    for _ in range(10):
        time.sleep(1)
        now = rss_mib(pid)
        if abs(now - before) < 0.1:
            return now
        before = now
    return before


def gets(processes: Processes, recbot: Contender, count: int) -> None:
    samples = Samples()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: send_command(recbot, processes, "get live na", samples), range(count)))
    collect_answers(processes, {recbot.name: samples})
    processes.collect_garbage()  # the fakes collect only when asked


def list_all(processes: Processes, recbot: Contender) -> float:
    """`/recording list all`; seconds until its table replaced the progress line."""
    samples = Samples()
    started = time.monotonic()
    send_command(recbot, processes, "list all", samples)
    (name,) = samples.sent
    while True:
        answer = processes.answers().get(name)
        if answer and "hourglass" not in answer[1]:
            return time.monotonic() - started
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=10000)
    parser.add_argument("--entry-points", type=int, default=200)
    args = parser.parse_args()
    processes = Processes(entry_points=args.entry_points)
    try:
        recbot = processes.recbot("memory", AGORA_RATE_LIMIT="1000", RECBOT_DRIFT_INTERVAL_SECONDS="0")
        print(f"idle after start                  {settled_rss(recbot.pid):7.1f} MiB")
        gets(processes, recbot, args.gets)
        print(f"after {args.gets:>6} gets                 {settled_rss(recbot.pid):7.1f} MiB")
        gets(processes, recbot, args.gets)
        print(f"after {2 * args.gets:>6} gets                 {settled_rss(recbot.pid):7.1f} MiB")
        took = list_all(processes, recbot)
        targets = args.entry_points * 4
        print(f"after list all ({targets} targets, {took:4.1f} s)  {settled_rss(recbot.pid):7.1f} MiB")
    finally:
        processes.close()


if __name__ == "__main__":
    main()
