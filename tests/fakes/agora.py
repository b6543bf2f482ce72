"""An emulator of Agora's custom recording configuration API on 127.0.0.1.

It checks what the real API checks (HMAC signature and digest, path, region,
vendor/region, body) from its own copy of the documented tables, so a mistake
in the bot's catalog or signing shows up here, and it can inject faults.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.fakes.http import HANG_UP, Handler, LoopbackServer, Server

LIST_PATH = re.compile(r"^/v1/projects/([^/]+)/fls/entry_points$")
PATH = re.compile(r"^/v1/projects/([^/]+)/fls/entry_points/([^/]+)/settings/record/custom/regions/([^/]+)$")
SWITCH_PATH = re.compile(r"^/v1/projects/([^/]+)/fls/entry_points/([^/]+)/settings/record/custom/auto$")
TASKS_PATH = re.compile(
    r"^/v1/projects/([^/]+)/fls/entry_points/([^/]+)/admin/record/custom/regions/([^/]+)/tasks(/[^/]*)?$"
)
SWITCH_ON_REFUSAL = "custom recording is enabled for this entry point; disable it before recording a single stream"
AUTH = re.compile(
    r'^hmac username="([^"]*)", algorithm="hmac-sha256", headers="host date request-line digest", signature="([^"]*)"$'
)
# The documented region codes of each vendor (agora-recording-api.md); None: region ignored.
VENDOR_REGIONS: dict[int, set[int] | None] = {
    0: set(range(5)),
    1: set(range(26)) - {17, 23},
    2: set(range(23)),
    3: set(range(20)),
    4: set(range(10)),
    5: None,
    6: None,
    7: set(range(16)),
    8: set(range(8)),
}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Internal Server Error"
    delay: float = 0.0
    method: str | None = None
    lands: bool = False  # serve the request for real, then answer late: the answer is lost
    applies: bool = False  # serve the request for real, then answer with this fault anyway (a 5xx that landed)
    path: str | None = None  # only requests whose path contains this
    drops: bool = False  # serve the request for real, then hang up: the answer is lost, the change made


class AgoraEmulator:
    def __init__(
        self, customer_id: str, customer_secret: str, server: Callable[[Handler], Server] = LoopbackServer
    ) -> None:
        self.customer_id = customer_id
        self.customer_secret = customer_secret
        self.configs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        self.get_delay = 0.0
        self.unknown_apps: set[str] = set()  # App IDs the list call answers 404 for
        # The custom recording switch per (app, entry point); absent: on if it has a configuration.
        self.switches: dict[tuple[str, str], bool] = {}
        self.tasks: set[tuple[str, str, str, str]] = set()  # (app, entry point, region, stream) being recorded
        self.per_second_limit: int | None = None  # like Agora: 429 above this many requests in any second
        self.rate_limited = 0
        # method -> run with the request once it was served, before its answer is sent (the answer "in flight")
        self.after: dict[str, Callable[[Received], None]] = {}
        self._lock = threading.Lock()
        self._server = server(self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def start(self) -> AgoraEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # what tests use
    def put(self, app: str, entry_point: str, region: str, config: dict[str, Any]) -> None:
        with self._lock:
            self.configs[(app, entry_point, region)] = copy.deepcopy(config)

    def config(self, app: str, entry_point: str, region: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.configs[(app, entry_point, region)])

    def switch(self, app: str, entry_point: str) -> bool:
        """Whether custom recording is on for every stream of the entry point."""
        with self._lock:
            return self._switch_on(app, entry_point)

    def _switch_on(self, app: str, entry_point: str) -> bool:
        return self.switches.get((app, entry_point), True)

    def _known(self, app: str, entry_point: str) -> bool:
        return any(a == app and ep == entry_point for (a, ep, _region) in self.configs)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Forget the requests so far (between rounds of a repeated test)."""
        with self._lock:
            self.received.clear()

    def calls(self, method: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if method is None or r.method == method]

    def patches(self) -> Counter[tuple[str, str, str]]:
        """How many PATCHes of each configuration (app, entry point, region) reached Agora, and of
        those, answered or not; `landed()` counts the ones it made."""
        return self._patches(lambda r: True)

    def landed(self) -> Counter[tuple[str, str, str]]:
        """How many PATCHes of each configuration Agora made (answered 200, or its answer dropped)."""
        return self._patches(lambda r: r.status in (200, HANG_UP))

    def _patches(self, counted: Callable[[Received], bool]) -> Counter[tuple[str, str, str]]:
        found: Counter[tuple[str, str, str]] = Counter()
        for call in self.calls("PATCH"):
            match = PATH.match(call.path)
            if match and counted(call):
                app, entry_point, region = (unquote(part) for part in match.groups())
                found[(app, entry_point, region)] += 1
        return found

    # the API
    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        record = Received(method, path, headers, body, at=time.monotonic())
        with self._lock:
            self.received.append(record)
            if self.per_second_limit is not None:
                recent = [r for r in self.received if r.status != 429 and record.at - r.at < 1.0]
                if len(recent) > self.per_second_limit:
                    self.rate_limited += 1
                    record.status = 429
                    return 429, {"Retry-After": "1"}, b'{"message": "Too Many Requests"}'
            fault = next(
                (f for f in self.faults if f.method in (None, method) and (f.path is None or f.path in path)), None
            )
            if fault:
                self.faults.remove(fault)
        if method == "GET" and self.get_delay:
            time.sleep(self.get_delay)
        if fault and fault.drops:
            status, out_headers, out = HANG_UP, {}, {}
            self._serve(method, path, headers, body)
        elif fault and fault.lands:
            status, out_headers, out = self._serve(method, path, headers, body)
            time.sleep(fault.delay)
        elif fault and fault.applies:
            self._serve(method, path, headers, body)
            time.sleep(fault.delay)
            status, out_headers, out = fault.status, fault.headers, {"message": fault.message}
        elif fault:
            time.sleep(fault.delay)
            status, out_headers, out = fault.status, fault.headers, {"message": fault.message}
        else:
            status, out_headers, out = self._serve(method, path, headers, body)
        record.status = status
        if hook := self.after.get(method):
            hook(record)
        return status, {"Content-Type": "application/json", **out_headers}, json.dumps(out).encode()

    def _serve(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        problem = self._authenticate(method, path, headers, body)
        if problem:
            return 401, {}, {"message": f"Invalid authentication credentials ({problem})"}
        listing = LIST_PATH.match(path)
        if listing and method == "GET":
            return self._list(unquote(listing.group(1)))
        bare, _, query = path.partition("?")
        switch = SWITCH_PATH.match(bare)
        if switch and not query:
            return self._serve_switch(method, *(unquote(part) for part in switch.groups()), body)
        tasks = TASKS_PATH.match(bare)
        if tasks:
            return self._serve_task(method, tasks.groups(), query)
        match = PATH.match(path)
        if not match:
            return 404, {}, {"message": "invalid URI"}
        app, entry_point, region = (unquote(part) for part in match.groups())
        if not app or not entry_point:
            return 400, {}, {"message": "appid and entry_point must not be empty"}
        if region not in ("cn", "ap", "na", "eu"):
            return 400, {}, {"message": "invalid region"}
        key = (app, entry_point, region)
        with self._lock:
            if key not in self.configs:
                return 404, {}, {"message": "entry point not found"}
            if method == "GET":
                return 200, {}, copy.deepcopy(self.configs[key])
            if method != "PATCH":
                return 404, {}, {"message": "invalid URI"}
            try:
                change = json.loads(body)
            except ValueError:
                return 400, {}, {"message": "body is not JSON"}
            problem = self._check_body(change, has_storage="storageConfig" in self.configs[key])
            if problem:
                return 400, {}, {"message": problem}
            self.configs[key].update(copy.deepcopy(change))
            self.switches[(app, entry_point)] = True  # setting a configuration switches recording on
            return 200, {}, {}

    def _serve_switch(self, method: str, app: str, entry_point: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        if method != "PATCH":
            return 404, {}, {"message": "invalid URI"}
        try:
            change = json.loads(body)
        except ValueError:
            return 400, {}, {"message": "body is not JSON"}
        if not isinstance(change, dict) or set(change) != {"enabled"} or not isinstance(change["enabled"], bool):
            return 400, {}, {"message": 'body must be {"enabled": true|false}'}
        with self._lock:
            if not self._known(app, entry_point):
                return 404, {}, {"message": "entry point not found"}
            self.switches[(app, entry_point)] = change["enabled"]
        return 200, {}, {}

    def _serve_task(self, method: str, groups: tuple[str, ...], query: str) -> tuple[int, dict[str, str], Any]:
        app, entry_point, region = (unquote(part) for part in groups[:3])
        if region not in ("cn", "ap", "na", "eu"):
            return 400, {}, {"message": "invalid region"}
        if method == "PUT" and groups[3] is None:
            ids = parse_qs(query, keep_blank_values=True).get("id", [])
            if len(ids) != 1 or not ids[0] or set(parse_qs(query, keep_blank_values=True)) != {"id"}:
                return 400, {}, {"message": "exactly one stream id is required"}
            stream = ids[0]
        elif method == "DELETE" and groups[3] is not None and not query:
            stream = unquote(groups[3][1:])
            if not stream:
                return 404, {}, {"message": "invalid URI"}
        else:
            return 404, {}, {"message": "invalid URI"}
        task = (app, entry_point, region, stream)
        with self._lock:
            if (app, entry_point, region) not in self.configs:
                return 404, {}, {"message": "entry point not found"}
            if method == "DELETE":
                if task not in self.tasks:
                    return 404, {}, {"message": "task not found"}
                self.tasks.remove(task)
                return 200, {}, {}
            if self._switch_on(app, entry_point):
                return 400, {}, {"message": SWITCH_ON_REFUSAL}
            self.tasks.add(task)
        return 200, {}, {}

    def _list(self, app: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            names = sorted({ep for (a, ep, _region) in self.configs if a == app})
        if app in self.unknown_apps:
            return 404, {}, {"message": "project not found"}
        return 200, {}, {"entryPointList": [{"name": name} for name in names]}

    def _authenticate(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        if headers.get("host") != self.host:
            return "host header"
        date = headers.get("date", "")
        try:
            sent = datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
        except ValueError:
            return "date header"
        if abs((datetime.now(UTC) - sent).total_seconds()) > 300:
            return "stale date"
        digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("digest") != digest:
            return "digest"
        match = AUTH.match(headers.get("authorization", ""))
        if not match or match.group(1) != self.customer_id:
            return "authorization header"
        signing = f"host: {headers['host']}\ndate: {date}\n{method} {path} HTTP/1.1\ndigest: {digest}"
        expected = base64.b64encode(
            hmac.new(self.customer_secret.encode(), signing.encode(), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(expected, match.group(2)):
            return "signature"
        if body and headers.get("content-type") != "application/json":
            return "content-type"
        return None

    @staticmethod
    def _check_body(change: Any, has_storage: bool) -> str | None:
        if not isinstance(change, dict) or set(change) - {"mp4Config", "hlsConfig", "storageConfig"}:
            return "body must be an object of mp4Config, hlsConfig, storageConfig"
        for name in ("mp4Config", "hlsConfig"):
            if name in change and not (
                isinstance(change[name], dict) and isinstance(change[name].get("enabled"), bool)
            ):
                return f"{name}.enabled must be a bool"
        if "storageConfig" not in change:
            return None if has_storage else "storageConfig is required the first time"
        storage = change["storageConfig"]
        if not isinstance(storage, dict):
            return "storageConfig must be an object"
        vendor = storage.get("vendor")
        if type(vendor) is not int or vendor not in VENDOR_REGIONS:
            return "invalid vendor"
        regions = VENDOR_REGIONS[vendor]
        if regions is not None and storage.get("region") not in regions:
            return "invalid region for vendor"
        for name in ("bucket", "accessKey", "secretKey"):
            if not isinstance(storage.get(name), str) or not storage[name]:
                return f"storageConfig.{name} is required"
        return None
