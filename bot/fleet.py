"""The fleet: every entry point of an app, read in each region asked, at once
but in the background lane of the Agora rate limit."""

from __future__ import annotations

import csv
import io
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pydantic import ValidationError

from bot.agora import INTERACTIVE_WAIT_SECONDS, AgoraClient, AgoraError, AgoraNotFound, AgoraRedirected
from bot.fleet_rows import FleetRow, Scan, kept_rows, restored
from bot.models import Target
from bot.store.fleet_scans import FleetScans
from bot.store.values import SwitchRow
from bot.switch import describe

log = logging.getLogger(__name__)

# Reads in flight at once; the rate limiter sets the pace. Few, because granted
# but unsent reads can reach Agora together after a stall (see TokenBucket).
SCAN_WORKERS = 8
KEPT_SCANS = 32
SCAN_TTL_SECONDS = 600.0
SCAN_TTL = timedelta(seconds=SCAN_TTL_SECONDS)
# The picker asks on every keystroke: the list is read at most this often per app.
NAMES_TTL_SECONDS = 30.0
# Slack drops an options answer after 3 s, so the picker's list waits less for the limiter.
PICKER_WAIT_SECONDS = 1.0
# What makes a spreadsheet run a cell as a formula, first or after leading spaces.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def read_row(agora: AgoraClient, app_id: str, name: str, region: str) -> FleetRow:
    try:
        target = Target(app_id=app_id, entry_point=name, region=region)
    except ValidationError:
        return FleetRow(name, region, None, error="its name is not one recbot can address")
    try:
        # A scan is background work: its readers wait for the limiter as long as it takes.
        return FleetRow(name, region, target, config=agora.get_config(target, wait_limit=None))
    except AgoraNotFound:
        return FleetRow(name, region, target, missing=True)
    except AgoraRedirected as exc:  # every read goes the same way: the row names what to mend
        return FleetRow(name, region, target, error=f"Agora answered {exc.status}, a redirect: check AGORA_API_URL")
    except AgoraError as exc:
        return FleetRow(name, region, target, error=f"Agora answered {exc.status or 'nothing usable'}")


class Fleet:
    """Scans an app's entry points and keeps recent scans, so paging through a big fleet
    does not read it all again: in the shared database (`saved`), for whichever instance
    a click reaches, and the last few in this process, which then need no query."""

    def __init__(
        self, agora: AgoraClient, saved: FleetScans | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._agora = agora
        self._saved = saved  # None: scans are kept in this process only
        self._clock = clock
        self._scans: OrderedDict[str, Scan] = OrderedDict()
        self._names: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def entry_points(self, app_id: str, wait_limit: float | None = INTERACTIVE_WAIT_SECONDS) -> list[str]:
        """The names of the app's entry points (AgoraError if they cannot be listed); `wait_limit` None:
        the background lane."""
        names = self._agora.list_entry_points(app_id, wait_limit=wait_limit)
        with self._lock:
            self._names[app_id] = (self._clock(), names)
        return names

    def matching(self, app_id: str, typed: str, limit: int = 100) -> list[str]:
        """Entry point names containing `typed` (any case), from a list at most NAMES_TTL_SECONDS old."""
        with self._lock:
            cached = self._names.get(app_id)
        fresh = cached is not None and self._clock() - cached[0] < NAMES_TTL_SECONDS
        names = cached[1] if fresh and cached else self.entry_points(app_id, PICKER_WAIT_SECONDS)
        wanted = typed.strip().lower()
        return sorted(name for name in names if wanted in name.lower())[:limit]

    def scan(self, app_id: str, names: list[str], regions: tuple[str, ...], keep: bool = True) -> Scan:
        """Read every (entry point, region) concurrently, in a stable order; `keep`: for its pages
        to be turned (a plan's scan is not: it holds live configs only the plan needs)."""
        pairs = [(name, region) for name in sorted(names) for region in regions]
        with ThreadPoolExecutor(SCAN_WORKERS, thread_name_prefix="fleet") as pool:
            rows = tuple(pool.map(lambda pair: read_row(self._agora, app_id, *pair), pairs))
        scan = Scan(secrets.token_hex(6), app_id, regions, rows, self._clock())
        if keep:
            if self._saved is not None:
                self._saved.save(scan.id, app_id, regions, kept_rows(scan), keep_for=SCAN_TTL)
            self._remember(scan)
        return scan

    def kept(self, scan_id: str) -> Scan | None:
        """A scan at most SCAN_TTL_SECONDS old, made here or by any instance on the shared
        database, or None (expired, or damaged in the database)."""
        with self._lock:
            scan = self._scans.get(scan_id)
        if scan is not None:
            return scan if self._clock() - scan.at <= SCAN_TTL_SECONDS else None
        saved = self._saved.get(scan_id, max_age=SCAN_TTL) if self._saved is not None else None
        if saved is None:
            return None
        # Dated on this process's clock by its age, so it expires here when it does everywhere.
        scan = restored(saved.id, saved.app_id, saved.regions, saved.rows, self._clock() - saved.age.total_seconds())
        if scan is None:
            log.warning("kept fleet table %s is damaged; treated as expired", saved.id)
            return None
        self._remember(scan)  # the next click on this instance needs no query
        return scan

    def _remember(self, scan: Scan) -> None:
        with self._lock:
            self._scans[scan.id] = scan
            while len(self._scans) > KEPT_SCANS:
                self._scans.popitem(last=False)


CSV_COLUMNS = (
    "entry_point",
    "region",
    "mp4",
    "hls",
    "vendor",
    "storage_region",
    "bucket",
    "access_key",
    "secret_key",
    "status",
    "warnings",
    "recording",
)


def csv_cell(value: str) -> str:
    """A spreadsheet must not run a value as a formula: one that starts with
    =, +, -, @, tab or CR, even after spaces, is led with a quote."""
    return "'" + value if value[:1] in FORMULA_LEADS or value.lstrip()[:1] in FORMULA_LEADS else value


def to_csv(scan: Scan, switches: Mapping[str, SwitchRow] | None = None) -> str:
    """The whole scan, one line per entry point and region; keys masked as everywhere else;
    with `switches` (by entry point), what recbot knows of each switch."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in scan.rows:
        shown = row.shown
        storage = shown.described() if shown else {}
        status = "read failed" if row.error else "no configuration" if row.missing else "ok"
        writer.writerow(
            csv_cell(value)
            for value in (
                row.name,
                row.region,
                ("on" if shown.mp4 else "off") if shown else "",
                ("on" if shown.hls else "off") if shown else "",
                storage.get("vendor", ""),
                storage.get("region", ""),
                storage.get("bucket", ""),
                shown.access_key_fingerprint if shown else "",
                ("set" if shown.secret_key_set else "not set") if shown else "",
                status,
                "; ".join(row.warnings()),
                describe(switches.get(row.name)) if switches is not None and shown else "",
            )
        )
    return out.getvalue()
