"""What the metrics cost the ack and the answer: one recbot with its metrics listener on and
one with it off (RECBOT_METRICS_ADDR=off), in one run, alternating batches.

    .venv/bin/python -m bench.metrics_cost [--runs 3] [--requests 2000] [--concurrency 10] [--batch 100]
                                           [--scrape-every 15]

Both recbots are bench.ack_latency's (HTTP mode, limiter opened to 1000, the same fakes);
the one with metrics on is scraped every `--scrape-every` seconds while it is measured, as
Prometheus would (0: never), so the counters' increments and the scrapes are both paid for.
Each run prints both recbots' figures and the ratios on / off; the machine's drift hits both
alike, since their batches alternate.
"""

from __future__ import annotations

import threading

import requests

from bench.ack_latency import (
    Processes,
    Samples,
    arguments,
    at_least,
    free_port,
    measure,
    parse,
    percentile,
    report,
    warm_up,
)


class Scraper:
    """GET /metrics every `every` seconds on a thread of its own, until `stop()`."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every, self.scrapes = url, every, 0
        self.failure: str | None = None  # a thread cannot end the run: main() reads this
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def start(self) -> Scraper:
        if self.every > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            answer = requests.get(self.url, timeout=10)
            if answer.status_code != 200 or "recbot_commands_total" not in answer.text:
                self.failure = f"{self.url}: not recbot's metrics ({answer.status_code})"
                return
            self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)


def on_off(on: Samples, off: Samples) -> str:
    """The ratios on / off the cost is read from (1.00: the metrics cost nothing measurable)."""
    parts = [
        f"ack p50 {percentile(on.acks, 0.5) / percentile(off.acks, 0.5):.2f}",
        f"ack p99 {percentile(on.acks, 0.99) / percentile(off.acks, 0.99):.2f}",
        f"answer p99 {percentile(on.answers, 0.99) / percentile(off.answers, 0.99):.2f}",
    ]
    if on.acks and off.acks and off.cpu:
        parts.append(f"CPU/command {(on.cpu / len(on.acks)) / (off.cpu / len(off.acks)):.2f}")
    return ", ".join(parts)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=at_least(1), default=3, help="measurements, each alternating the two recbots")
    parser.add_argument("--scrape-every", type=float, default=15.0, help="seconds between scrapes (0: none)")
    args = parse(parser)
    processes = Processes()
    scraper = None
    try:
        port = free_port()
        on = processes.recbot("metrics on", AGORA_RATE_LIMIT="1000", RECBOT_METRICS_ADDR=f"127.0.0.1:{port}")
        off = processes.recbot("metrics off", AGORA_RATE_LIMIT="1000", RECBOT_METRICS_ADDR="off")
        contenders = [on, off]
        warm_up(processes, contenders, args.command, args.concurrency, args.batch)
        scraper = Scraper(f"http://127.0.0.1:{port}/metrics", args.scrape_every).start()
        print(
            f"metrics on vs off: {args.requests} `/recording {args.command}` per recbot and run, "
            f"concurrency {args.concurrency}, alternating batches of {args.batch}, "
            f"a scrape every {args.scrape_every:g} s"
        )
        for run in range(1, args.runs + 1):
            samples = measure(processes, contenders, args.command, args.requests, args.concurrency, args.batch)
            print(f"run {run}")
            report(samples)
            print(f"  on / off: {on_off(samples['metrics on'], samples['metrics off'])}")
        if scraper.failure:
            raise SystemExit(scraper.failure)
        print(f"scrapes of the recbot with metrics on: {scraper.scrapes}")
    finally:
        if scraper is not None:
            scraper.stop()
        processes.close()


if __name__ == "__main__":
    main()
