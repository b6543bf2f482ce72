"""A fake of the Slack Web API on 127.0.0.1 that records every call, serves
`response_url` posts, and fails the test where real Slack would reject a view
or message (see blockkit.py)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.blockkit import message_problems, view_problems
from tests.fakes.http import HANG_UP, Handler, LoopbackServer, Server

MESSAGE_METHODS = {"chat.postMessage", "chat.postEphemeral", "chat.update", "response_url"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str | None = None
    at: float = field(default_factory=time.monotonic)


class FakeSlack:
    def __init__(self, bot_token: str, server: Callable[[Handler], Server] = LoopbackServer) -> None:
        self.bot_token = bot_token
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.usergroups: dict[str, list[str]] = {}
        self.socket_url: str | None = None
        self.app_token: str | None = None  # when set, apps.connections.open accepts only this token
        self.channels: dict[str, bool] = {}  # channel ID -> whether the bot is a member
        self.rate_limits: dict[str, list[int]] = {}
        self.errors: dict[str, str] = {}  # method -> the Slack error it answers with
        self.refused_channels: dict[str, str] = {}  # channel -> the error chat.postMessage answers with there
        self.hang_ups: dict[str, int] = {}  # method -> how many calls to drop without an answer
        # method -> run with the call when it arrives, before Slack acts on it (a write "in flight")
        self.before: dict[str, Callable[[Call], None]] = {}
        # method -> run with the call once Slack acted on it, before the caller gets the answer
        self.after: dict[str, Callable[[Call], None]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._homes: dict[str, dict[str, Any]] = {}  # user -> the App Home view Slack shows them now
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> as Slack now shows it
        self.files: dict[str, dict[str, Any]] = {}  # file id -> {"content", "channel", ...} once completed
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._server = server(self._handle)

    @property
    def api_url(self) -> str:
        return self._server.url + "/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self._server.url}/response/{name}"

    def start(self) -> FakeSlack:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and Retry-After."""
        self.rate_limits.setdefault(method, []).extend([retry_after] * times)

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 10.0, where: Callable[[Call], bool] | None = None
    ) -> list[Call]:
        """Block until `count` matching calls arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.method == method and (where is None or where(c))]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} {method} call(s), got {len(found)}: {[c.method for c in self.calls]}"
                    )
                self._lock.wait(left)

    def clear(self) -> None:
        """Forget the calls so far (between rounds of a repeated test); views and messages stay."""
        with self._lock:
            self.calls.clear()

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A posted message as Slack shows it now: the last update wins, as in Slack."""
        with self._lock:
            return self._messages[(channel, ts)]

    def payload_text(self) -> str:
        """Everything the bot sent to Slack, as one string, for leak checks."""
        with self._lock:
            return "\n".join(json.dumps(c.params, sort_keys=True, ensure_ascii=False) for c in self.calls)

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/upload/"):  # step 2 of files.uploadV2: the bytes, to the URL step 1 gave
            with self._lock:
                self.files.setdefault(path.removeprefix("/upload/"), {})["content"] = body.decode()
                self.calls.append(Call("upload", {"path": path}))
            return 200, {}, b"OK"
        if path.startswith("/response/"):
            params = json.loads(body or b"{}")
            api = "response_url"
        elif path.startswith("/api/"):
            api = path.removeprefix("/api/").split("?")[0]
            if headers.get("content-type", "").startswith("application/json"):
                params = json.loads(body or b"{}")
            else:
                params = dict(parse_qsl(body.decode()))
                for key in ("view", "blocks", "attachments"):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
        else:
            return 404, {}, b"not found"
        token = headers.get("authorization", "").removeprefix("Bearer ") or params.get("token")
        if hook := self.before.get(api):
            hook(Call(api, params, token))  # outside the lock: a hook may call the bot, which calls Slack
        with self._lock:
            if self.hang_ups.get(api):
                self.hang_ups[api] -= 1
                self.calls.append(Call(api + ":dropped", params, token))
                return HANG_UP, {}, b""
            pending = self.rate_limits.get(api)
            if pending:
                retry_after = pending.pop(0)
                self.calls.append(Call(api + ":rate_limited", params, token))
                self._lock.notify_all()
                return (
                    429,
                    {"Retry-After": str(retry_after), "Content-Type": "application/json"},
                    b'{"ok":false,"error":"ratelimited"}',
                )
            answer = self._answer(api, params, token)
            if api == "chat.postMessage" and answer.get("ok"):
                params = {**params, "_ts": answer["ts"]}  # where the posted message now lives
            if api == "views.open" and answer.get("ok"):
                params = {**params, "_view_id": answer["view"]["id"]}  # the view it opened
            call = Call(api, params, token)
            self.calls.append(call)
            self._lock.notify_all()
        if hook := self.after.get(api):
            hook(call)
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def _answer(self, api: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        if api == "apps.connections.open":
            if self.app_token is not None and token != self.app_token:
                return {"ok": False, "error": "invalid_auth"}
        elif api != "response_url" and token != self.bot_token:
            return {"ok": False, "error": "invalid_auth"}
        if api in MESSAGE_METHODS:
            problems = message_problems(params)
            if problems:
                self.problems.extend(f"{api}: {p}" for p in problems)
                return {"ok": False, "error": "invalid_blocks"}
        if api in ("views.open", "views.update", "views.push", "views.publish"):
            problems = view_problems(params.get("view") or {})
            if problems:
                self.problems.extend(f"{api}: {p}" for p in problems)
                return {"ok": False, "error": "invalid_arguments"}
        if api in self.errors:
            return {"ok": False, "error": self.errors[api]}
        if api == "chat.postMessage" and params.get("channel") in self.refused_channels:
            return {"ok": False, "error": self.refused_channels[params["channel"]]}
        if api == "auth.test":
            return {"ok": True, "user_id": "UBOT", "user": "recbot", "team": "Test", "team_id": "T1", "bot_id": "B1"}
        if api == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        if api == "views.open":
            view_id = f"V{next(self._ids)}"
            self._views[view_id] = {**params["view"], "id": view_id, "hash": f"h{next(self._ids)}"}
            return {"ok": True, "view": self._views[view_id]}
        if api == "views.update":
            view_id = params.get("view_id", "")
            if view_id not in self._views:
                return {"ok": False, "error": "not_found"}
            if params.get("hash") and params["hash"] != self._views[view_id]["hash"]:
                return {"ok": False, "error": "hash_conflict"}
            self._views[view_id] = {**params["view"], "id": view_id, "hash": f"h{next(self._ids)}"}
            return {"ok": True, "view": self._views[view_id]}
        if api == "views.publish":
            user = params.get("user_id", "")
            if not user.startswith(("U", "W")):
                return {"ok": False, "error": "invalid_arguments"}
            self._homes[user] = params["view"]
            return {"ok": True, "view": {**params["view"], "id": f"V{next(self._ids)}"}}
        if api == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ids):06d}"
            self._messages[(params.get("channel", ""), ts)] = params
            return {"ok": True, "channel": params.get("channel"), "ts": ts}
        if api == "chat.update":
            key = (params.get("channel", ""), params.get("ts", ""))
            if key not in self._messages:
                return {"ok": False, "error": "message_not_found"}
            self._messages[key] = params
            return {"ok": True, "channel": key[0], "ts": key[1]}
        if api == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(params.get("users", "")).removeprefix("U")}}
        if api == "files.getUploadURLExternal":
            file_id = f"F{next(self._ids)}"
            self.files[file_id] = {"filename": params.get("filename")}
            return {"ok": True, "file_id": file_id, "upload_url": f"{self._server.url}/upload/{file_id}"}
        if api == "files.completeUploadExternal":
            listed = json.loads(params["files"]) if isinstance(params.get("files"), str) else params.get("files", [])
            for item in listed:
                self.files.setdefault(item["id"], {}).update(channel=params.get("channel_id"), title=item.get("title"))
            return {"ok": True, "files": [{"id": item["id"]} for item in listed]}
        if api == "conversations.info":
            channel = params.get("channel", "")
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": {"id": channel, "is_member": self.channels[channel]}}
        if api == "usergroups.users.list":
            group = params.get("usergroup")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        return {"ok": True}

    def view(self, view_id: str) -> dict[str, Any]:
        with self._lock:
            return self._views[view_id]

    def home(self, user: str) -> dict[str, Any] | None:
        """The App Home a user sees now (the last views.publish wins), or None."""
        with self._lock:
            return self._homes.get(user)
