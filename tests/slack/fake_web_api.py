"""A local stand-in for Slack's Web API (and its file host and Socket Mode server), for tests.

Real HTTP on a free port; slack_sdk's client is pointed at it with SLACK_API_BASE. It checks
tokens the way Slack does (bot token for Web API calls and file downloads, app-level token
for apps.connections.open), records every call, and can answer the next N calls of a method
with 429 + Retry-After. Socket Mode: apps.connections.open hands out a ws:// URL to a route
here that says hello, lets the test push envelopes and records the client's acks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web


@dataclass
class ApiCall:
    """One request the gateway made to the fake Web API."""

    method: str
    params: dict[str, Any]
    token: str | None
    status: int
    result: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    @property
    def ts(self) -> str:
        """The ts Slack gave the posted message."""
        return str(self.result.get("ts"))

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def text(self) -> str:
        return str(self.params.get("text") or "")

    @property
    def blocks(self) -> list[dict[str, Any]]:
        raw = self.params.get("blocks") or []
        return json.loads(raw) if isinstance(raw, str) else list(raw)

    @property
    def channel(self) -> str | None:
        return self.params.get("channel")

    def block_text(self) -> str:
        """The visible text of all section and context blocks."""
        parts: list[str] = []
        for block in self.blocks:
            if block.get("type") == "section":
                parts.append(block["text"]["text"])
            elif block.get("type") == "context":
                parts.extend(e.get("text", "") for e in block.get("elements", []))
        return "\n".join(parts)

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


@dataclass
class _RateLimit:
    method: str
    remaining: int
    retry_after: int
    channel: str | None


class FakeSlackApi:
    def __init__(self, bot_token: str, app_token: str, bot_user_id: str = "UAPPBOT", bot_id: str = "BAPPBOT",
                 team_id: str = "TSHOP") -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.calls: list[ApiCall] = []
        self.file_downloads: list[tuple[str, str | None]] = []
        self.socket_acks: list[dict[str, Any]] = []
        self._files: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self._limits: list[_RateLimit] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server -------------------------------------------------------------------------------

    async def start(self) -> "FakeSlackApi":
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files-pri/{file_id}", self._download)
        app.router.add_get("/socket-mode", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/"

    # -- test controls ----------------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1, channel: str | None = None) -> None:
        """Answer the next `times` calls of `method` (to `channel`, if given) with 429 + Retry-After."""
        self._limits.append(_RateLimit(method, times, retry_after, channel))

    def add_file(self, file_id: str, content: bytes, name: str, mimetype: str) -> dict[str, Any]:
        """Host a file; returns the file object as it appears in a message event's `files`."""
        info = {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rsplit(".")[-1],
                "size": len(content), "url_private": f"{self.base}/files-pri/{file_id}",
                "url_private_download": f"{self.base}/files-pri/{file_id}?download=1"}
        self._files[file_id] = (content, info)
        return dict(info)

    def calls_of(self, method: str, ok_only: bool = True) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def posts(self, channel: str | None = None) -> list[ApiCall]:
        """Messages Slack accepted (chat.postMessage answered ok), optionally in one channel."""
        return [c for c in self.calls_of("chat.postMessage") if channel is None or c.channel == channel]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `predicate()` returns something truthy; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                found = predicate()
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_posts(self, channel: str, count: int = 1, timeout: float = 30.0) -> list[ApiCall]:
        """The first `count` accepted posts to `channel`, waiting for them."""
        def enough() -> list[ApiCall] | None:
            posts = self.posts(channel)
            return posts[:count] if len(posts) >= count else None

        found: list[ApiCall] = await self.wait_for(enough, timeout)
        return found

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    async def push_envelope(self, envelope: dict[str, Any]) -> None:
        """Send a Socket Mode envelope to the connected client."""
        await asyncio.wait_for(self._socket_connected.wait(), 15)
        for ws in self._sockets:
            await ws.send_json(envelope)

    # -- handlers -----------------------------------------------------------------------------

    def _record(self, call: ApiCall) -> None:
        self.calls.append(call)
        self._changed.set()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.can_read_body:
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return params

    def _take_limit(self, method: str, params: dict[str, Any]) -> _RateLimit | None:
        for limit in self._limits:
            if limit.method == method and limit.remaining > 0 and limit.channel in (None, params.get("channel")):
                limit.remaining -= 1
                return limit
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else params.pop("token", None)
        limit = self._take_limit(method, params)
        if limit is not None:
            self._record(ApiCall(method, params, token, 429))
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(limit.retry_after)})
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            self._record(ApiCall(method, params, token, 401))
            return web.json_response({"ok": False, "error": "invalid_auth"})
        answer = self._answer(method, params)
        self._record(ApiCall(method, params, token, 200, answer))
        return web.json_response(answer)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://shop.slack.com/", "team": "Shop", "user": "aftersales",
                    "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id}
        if method == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            message = {"type": "message", "text": params.get("text"), "blocks": params.get("blocks"),
                       "ts": ts, "bot_id": self.bot_id, "user": self.bot_user_id}
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text")}
        if method == "files.info":
            found = self._files.get(str(params.get("file")))
            return {"ok": True, "file": dict(found[1])} if found else {"ok": False, "error": "file_not_found"}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket-mode"}
        return {"ok": False, "error": "unknown_method"}

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        header = request.headers.get("Authorization", "")
        self.file_downloads.append((file_id, header or None))
        found = self._files.get(file_id)
        if header != f"Bearer {self.bot_token}" or found is None:
            # what Slack does without a valid token: a login page with status 200
            return web.Response(text="<html><body>Sign in to Slack</body></html>", content_type="text/html")
        content, info = found
        return web.Response(body=content, content_type=info["mimetype"])

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "AFAKE"}, "debug_info": {"host": "fake"}})
        self._socket_connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(msg.data))
                    self._changed.set()
        finally:
            self._sockets.remove(ws)
            self._changed.set()
        return ws
