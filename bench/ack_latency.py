"""Ack latency and time to answer of recbot against two peers, and command -> views.open.

    .venv/bin/python -m bench.ack_latency [--requests 2000] [--concurrency 10] [--batch 100]
                                          [--command "get live na"] [--paced 10,50] [--opens 30]

Processes on 127.0.0.1: this client; the Slack fake and the Agora emulator
(`bench.processes fakes`, Agora answering at once); recbot as it runs in
production (`python -m recbot --http`, waitress), its `AGORA_RATE_LIMIT` opened to
1000 so the limiter is not what is measured; and two peers: a Bolt app that
only acks (`bench.processes bare`, the floor) and a plain Bolt app doing the
same job as recbot's `get` (`bench.processes plain`: signed Agora GET, answer on
response_url, written as Bolt's docs write one). Signed commands go to each in
alternating batches, so drift of the machine hits all alike.

- ack: from connecting to reading the last byte of the HTTP response (Slack's view of the ack);
- answer: from connecting to the Slack fake receiving the post on its response_url
  (both on the system-wide monotonic clock).

`--paced` sends `get live na` at fixed rates to a recbot with the default
`AGORA_RATE_LIMIT` (40/s) for 10 s each, and reports how long answers queue
behind the limiter and how many were answered "Agora is busy".

The views.open timing uses a recbot whose Agora emulator delays every GET by
2.5 s, and measures from sending `/recording set` to the Slack fake receiving
`views.open`.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

from tests.conftest import APP_ID, BOT_TOKEN, CUSTOMER_ID, CUSTOMER_SECRET, SIGNING_SECRET
from tests.driver import SlackDriver, slack_signature

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            requests.post(url + "/slack/events", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Contender:
    """One app under measurement; `answers` is False for the ack-only app."""

    name: str
    url: str
    answers: bool = True
    pid: int = 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used so far, all cores (/proc/stat: user, nice,
    system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Samples:
    cpu: float = 0.0  # CPU seconds the app's process used for these commands
    machine: float = 0.0  # CPU seconds the whole machine used meanwhile: client, fakes, app
    acks: list[float] = field(default_factory=list)
    sent: dict[str, float] = field(default_factory=dict)  # response name -> when its command was sent
    answers: list[float] = field(default_factory=list)
    busy: int = 0  # answers that said Agora is busy (the limiter refused to wait longer)


class Processes:
    """The fakes, recbots and peers of one run, on 127.0.0.1; stopped together."""

    def __init__(self, entry_points: int = 1) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="recbot-bench-"))
        self._children: list[subprocess.Popen] = []
        fakes = self._spawn(
            [sys.executable, "-m", "bench.processes", "fakes", str(entry_points)], stdout=subprocess.PIPE, text=True
        )
        urls = json.loads(fakes.stdout.readline())  # type: ignore[union-attr]
        self.slack_url: str = urls["slack"]
        self.agora_url: str = urls["agora"]
        self.slow_agora_url: str = urls["slow_agora"]
        self.base = self.slack_url.removesuffix("/api/")
        self._answers: dict[str, tuple[float, str]] = {}
        self._seen = 0

    def _spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
        self._children.append(process)
        return process

    def recbot(
        self, name: str, *, root: Path = ROOT, python: str = sys.executable, slow: bool = False, **env: str
    ) -> Contender:
        """`python -m recbot --http` (`bot` at a ref that predates it) from the checkout at `root`,
        its own SQLite store, its metrics listener on a free port (several recbots run at once:
        the default port would be taken); `env` on top."""
        port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
        clean |= {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack_url,
            "AGORA_CUSTOMER_ID": CUSTOMER_ID,
            "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
            "AGORA_API_URL": self.slow_agora_url if slow else self.agora_url,
            "AGORA_APP_ID": APP_ID,
            "DATABASE_URL": f"sqlite:///{self.workdir / name}.db",
            "RECBOT_APPROVERS": "UBOB",
            "PYTHONPATH": str(root),
            "RECBOT_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            **env,
        }
        entry = "recbot" if (root / "recbot" / "__main__.py").exists() else "bot"  # a ref from before recbot/
        argv = [python, "-m", entry, "--http", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(argv, env=clean, cwd=self.workdir, stderr=subprocess.DEVNULL)
        self._children.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        return Contender(name, url, pid=process.pid)

    def peer(self, kind: str) -> Contender:
        """`bare` (acks only) or `plain` (the same job as recbot's get, as Bolt's docs write it)."""
        port = free_port()
        extra = [self.agora_url] if kind == "plain" else []
        process = self._spawn(
            [sys.executable, "-m", "bench.processes", kind, str(port), self.slack_url, *extra],
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        return Contender(f"{kind} bolt", url, answers=kind == "plain", pid=process.pid)

    def answers(self) -> dict[str, tuple[float, str]]:
        """By name: when its last answer arrived and the start of its text; fetches only what is new."""
        for name, at, text in requests.get(self.base + f"/_answers?since={self._seen}", timeout=30).json():
            self._answers[name] = (at, text)
            self._seen += 1
        return self._answers

    def collect_garbage(self) -> None:
        """A garbage collection in this client and in the fakes, between batches: their automatic
        ones (40-70 ms each) stalled whichever app's batch was under way and made its p99."""
        requests.get(self.base + "/_collect", timeout=30)
        gc.collect()

    def stop(self, contender: Contender) -> None:
        """Stop one app (a recbot started anew for the next run)."""
        for child in self._children:
            if child.pid == contender.pid:
                child.terminate()
                child.wait(timeout=30)
                self._children.remove(child)
                return

    def close(self) -> None:
        for child in self._children:
            child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def signed_command(url: str, text: str, response_url: str) -> bytes:
    """The whole HTTP request of a signed `/recording` command, as Slack sends one."""
    form = {
        "command": "/recording",
        "text": text,
        "user_id": "UALICE",
        "user_name": "ualice",
        "channel_id": "CRUN",
        "team_id": "T1",
        "response_url": response_url,
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "api_app_id": "A1",
    }
    body = urlencode(form).encode()
    timestamp = str(int(time.time()))
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {timestamp}\r\n"
        f"X-Slack-Signature: {slack_signature(SIGNING_SECRET, timestamp, body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def exchange(url: str, request: bytes) -> tuple[int, bytes]:
    """Send `request` on a new connection to `url` and read its whole response: (status, body).
    A few system calls, so that this client's CPU (two cores, shared with the apps) and its own
    GIL stay out of what it measures; `requests` spent about 1 ms of CPU per command."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{url} closed the connection before answering")
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        lengths = [int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")]
        if not lengths:  # no Content-Length: the body ends where the connection does
            while chunk := sock.recv(65536):
                body += chunk
        while lengths and len(body) < lengths[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{url} closed the connection within its answer")
            body += chunk
    return int(lines[0].split()[1]), body


def send_command(contender: Contender, processes: Processes, command: str, samples: Samples) -> None:
    """One signed command, built before the clock starts: the ack is from connecting to the
    last byte of the response, as Slack sees it."""
    name = f"{contender.name.replace(' ', '_')}-{next(_names)}"
    request = signed_command(contender.url, command, f"{processes.base}/response/{name}")
    sent = time.monotonic()
    status, body = exchange(contender.url, request)
    samples.acks.append(time.monotonic() - sent)
    if status != 200:
        raise SystemExit(f"{contender.name}: unexpected status {status}: {body[:200]!r}")
    if contender.answers:
        samples.sent[name] = sent


def collect_answers(processes: Processes, samples: dict[str, Samples], timeout: float = 60.0) -> None:
    """Wait for every answer, then turn arrival times into answer latencies."""
    deadline = time.monotonic() + timeout
    while True:
        arrived = processes.answers()
        missing = sum(name not in arrived for s in samples.values() for name in s.sent)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if missing:
        print(f"  ({missing} answers never arrived)")
    for s in samples.values():
        for name, sent in s.sent.items():
            if name in arrived:
                at, text = arrived[name]
                s.answers.append(at - sent)
                s.busy += "busy" in text.lower()


def measure(
    processes: Processes, contenders: list[Contender], command: str, total: int, concurrency: int, batch: int
) -> dict[str, Samples]:
    """`total` commands per contender, in alternating batches of `batch` at `concurrency`."""
    samples = {c.name: Samples() for c in contenders}
    gc.disable()  # the client collects between batches, never during one (see collect_garbage)
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for round_number in range(max(1, total // batch)):
                # The first two swap places every other round, so that neither always runs first or
                # after the same app: in a fixed order bench.compare found the working tree 2% dearer
                # than the same code as REF, for its place in the order alone.
                first, second, *rest = contenders
                order = [first, second, *rest] if round_number % 2 == 0 else [second, first, *rest]
                for contender in order:
                    taken = samples[contender.name]
                    processes.collect_garbage()
                    before, machine_before = cpu_seconds(contender.pid), machine_cpu_seconds()
                    list(pool.map(lambda _, c=contender, s=taken: send_command(c, processes, command, s), range(batch)))
                    if contender.answers:  # a batch ends when its answers are in: the work after the ack counts
                        wait_answered(processes, taken)
                    taken.cpu += cpu_seconds(contender.pid) - before
                    taken.machine += machine_cpu_seconds() - machine_before
        collect_answers(processes, samples)
    finally:
        gc.enable()
    return samples


def wait_answered(processes: Processes, samples: Samples, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrived = processes.answers()
        if all(name in arrived for name in samples.sent):
            return
        time.sleep(0.02)


def warm_up(processes: Processes, contenders: list[Contender], command: str, concurrency: int, batch: int) -> None:
    measure(processes, contenders, command, batch * 2, concurrency, batch)


def ms(value: float) -> str:
    return f"{value * 1000:7.2f}"


def report(samples: dict[str, Samples]) -> None:
    print(
        f"  {'(ms)':16} {'ack p50':>9} {'ack p99':>9} {'answer p50':>11} {'answer p99':>11} {'CPU/command':>12}"
        f" {'machine CPU/command':>20}"
    )
    for name, s in samples.items():
        answer = (
            f"{ms(percentile(s.answers, 0.5)):>11} {ms(percentile(s.answers, 0.99)):>11}" if s.answers else " " * 23
        )
        cpu = f"{ms(s.cpu / len(s.acks)):>12} {ms(s.machine / len(s.acks)):>20}" if s.acks else ""
        print(f"  {name:16} {ms(percentile(s.acks, 0.5)):>9} {ms(percentile(s.acks, 0.99)):>9} {answer} {cpu}")


def ratios(ours: Samples, bare: Samples, plain: Samples) -> tuple[float, float, float]:
    """(ack p99 / bare's, ack p99 / plain's, answer p99 / plain's): the figures the targets are set on."""
    return (
        percentile(ours.acks, 0.99) / percentile(bare.acks, 0.99),
        percentile(ours.acks, 0.99) / percentile(plain.acks, 0.99),
        percentile(ours.answers, 0.99) / percentile(plain.answers, 0.99),
    )


def paced(processes: Processes, contender: Contender, rate: float, seconds: float) -> Samples:
    """`get live na` at `rate` per second for `seconds`, whatever the answers do (an open loop)."""
    samples = Samples()
    count = int(rate * seconds)
    with ThreadPoolExecutor(64) as pool:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send_command, contender, processes, "get live na", samples)
    collect_answers(processes, {contender.name: samples})
    return samples


def views_open(processes: Processes, runs: int) -> list[float]:
    """`/recording set` -> views.open, with Agora's GET delayed 2.5 s."""
    slow = processes.recbot("slow", slow=True)
    driver = SlackDriver(slow.url, SIGNING_SECRET, f"{processes.base}/response/slow")
    opened_url = processes.base + "/_opened"
    times = []
    for _ in range(runs):
        before = len(requests.get(opened_url, timeout=5).json())
        sent = time.monotonic()
        driver.command("set live na")
        while len(arrivals := requests.get(opened_url, timeout=5).json()) == before:
            time.sleep(0.005)
        times.append(arrivals[before] - sent)
    return times


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number, `least` or more (refused before any process starts)."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}")
        return value

    return whole


def rates(text: str) -> list[float]:
    """An argparse type: commands per second, comma-separated and above 0 ("" for none)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give rates as numbers, e.g. 10,50") from None
    if any(not 0 < value < math.inf for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every rate must be a number above 0")
    return values


def arguments(description: str | None = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=at_least(1), default=2000, help="commands per app: whole batches")
    parser.add_argument("--concurrency", type=at_least(1), default=10)
    parser.add_argument("--batch", type=at_least(1), default=100)
    parser.add_argument("--command", default="get live na", help="the /recording text to send (try: help)")
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with --requests checked against --batch: commands go in whole batches, and a
    figure labelled 150 commands must not be of 100."""
    args = parser.parse_args()
    if args.requests % args.batch:
        parser.error(f"--requests {args.requests} is not a whole number of batches of {args.batch} (--batch)")
    return args


TARGETS = (("ack p99 / bare", 1.5), ("ack p99 / plain", 0.5), ("answer p99 / plain", 0.5))


def verdicts(figures: tuple[float, float, float]) -> str:
    """Each of issue 17's targets, met or missed by these ratios."""
    return "; ".join(
        f"{name} {value:.2f} (target {most}: {'met' if value <= most else 'MISSED'})"
        for (name, most), value in zip(TARGETS, figures, strict=True)
    )


def main() -> None:
    parser = arguments()
    parser.add_argument(
        "--paced", type=rates, default="10,50", help="rates (commands/s) for the limiter queue; empty: skip"
    )
    parser.add_argument(
        "--opens", type=at_least(0), default=30, help="/recording set runs for the views.open timing (0: skip)"
    )
    args = parse(parser)
    processes = Processes()
    try:
        contenders = [
            processes.recbot("recbot", AGORA_RATE_LIMIT="1000"),
            processes.peer("bare"),
            processes.peer("plain"),
        ]
        warm_up(processes, contenders, args.command, args.concurrency, args.batch)
        samples = measure(processes, contenders, args.command, args.requests, args.concurrency, args.batch)
        print(f"{args.requests} signed `/recording {args.command}` per app, concurrency {args.concurrency}")
        report(samples)
        if samples["recbot"].answers:
            figures = ratios(samples["recbot"], samples["bare bolt"], samples["plain bolt"])
            print(f"  recbot: {verdicts(figures)}")
        if args.paced:
            limited = processes.recbot("limited")  # the default AGORA_RATE_LIMIT
            for rate in args.paced:
                s = paced(processes, limited, rate, 10.0)
                print(
                    f"default AGORA_RATE_LIMIT, {rate:g} commands/s for 10 s: "
                    f"answer p50 {ms(percentile(s.answers, 0.5))} ms, p99 {ms(percentile(s.answers, 0.99))} ms, "
                    f"max {ms(max(s.answers))} ms, "
                    f"{s.busy} of {len(s.answers)} answered 'busy'"
                )
        if args.opens:
            times = views_open(processes, args.opens)
            print(f"command -> views.open, `/recording set` with Agora's GET delayed 2.5 s, {args.opens} runs")
            print(
                f"  p50 {ms(percentile(times, 0.5))} ms  p99 {ms(percentile(times, 0.99))} ms  max {ms(max(times))} ms"
            )
    finally:
        processes.close()


if __name__ == "__main__":
    main()
