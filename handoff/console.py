"""The agent console: sign-in, the console page and its live websocket
(docs/console-protocol.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
import weakref
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bot.config import Settings
from bot.log import mask_name
from bot.security import came_over_https, client_address, origin_allowed, parse_json, same_secret
from handoff.agents import Agent
from handoff.signin import SignInKey, SignInThrottle, password_matches
from handoff.service import OUTCOMES, HandoffError, HandoffService, Listener, item_view
from handoff.store import Handoff

log = logging.getLogger("gateway.console")

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "console_session"
SESSION_SECONDS = 8 * 3600
MAX_TEXT = 4000


class ConsoleSessions:
    """Signed, expiring session cookies; sign-out revokes the session id."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(f"console:{secret}".encode()).digest()
        self._revoked: dict[str, float] = {}

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, username: str) -> str:
        body = f"{username}|{int(time.time()) + SESSION_SECONDS}|{secrets.token_hex(8)}"
        return f"{body}|{self._sign(body)}"

    def verify(self, token: str | None) -> str | None:
        if not token or token.count("|") != 3:
            return None
        username, expiry, session_id, signature = token.split("|")
        if not same_secret(signature, self._sign(f"{username}|{expiry}|{session_id}")):
            return None
        if not expiry.isdigit() or int(expiry) < time.time() or session_id in self._revoked:
            return None
        return username

    def revoke(self, token: str | None) -> None:
        if token and token.count("|") == 3:
            self._revoked[token.split("|")[2]] = time.time()


class ConsoleHub(Listener):
    """Every connected console socket, by agent; pushes state and transcript lines."""

    def __init__(self, handoff: HandoffService) -> None:
        self.handoff = handoff
        self.sockets: dict[web.WebSocketResponse, str] = {}
        self.viewing: weakref.WeakKeyDictionary[web.WebSocketResponse, str] = weakref.WeakKeyDictionary()

    def online_agents(self) -> set[str]:
        return set(self.sockets.values())

    def agents_view(self) -> list[dict[str, Any]]:
        online = self.online_agents()
        return [{**a.public(), "online": a.username in online} for a in self.handoff.agents.values()]

    def live_view(self, active: list[Handoff]) -> list[dict[str, Any]]:
        """Conversations the bot is handling right now, newest first (an agent may take one)."""
        taken = {h.key for h in active}
        return [{"key": key, "channel": key.split(":", 1)[0], "last_text": entry.text, "last_role": entry.role,
                 "ts": entry.ts} for key, entry in self.handoff.conversations.transcripts.recent(40)
                if key not in taken][:20]

    async def state_for(self, agent: str, active: list[Handoff]) -> dict[str, Any]:
        now = self.handoff.clock()
        return {
            "type": "state", "now": now, "agents": self.agents_view(), "live": self.live_view(active),
            "queue": [item_view(h, now) for h in active if h.status == "queued"],
            "mine": [item_view(h, now) for h in active if h.status == "assigned" and h.agent == agent],
            "others": [item_view(h, now) for h in active if h.status == "assigned" and h.agent != agent],
        }

    async def changed(self) -> None:
        active = await self.handoff.store.active()
        for ws, agent in list(self.sockets.items()):
            await self._send(ws, await self.state_for(agent, active))

    async def entry(self, handoff: Handoff, entry: dict[str, Any]) -> None:
        current = await self.handoff.store.get(handoff.key)
        owner = current.agent if current else handoff.agent
        for ws, agent in list(self.sockets.items()):
            if agent == owner or self.viewing.get(ws) == handoff.key:
                await self._send(ws, {"type": "entry", "key": handoff.key, "entry": entry})

    @staticmethod
    async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        if not ws.closed:
            try:
                await ws.send_json(frame)
            except ConnectionError:
                pass


class Console:
    def __init__(self, handoff: HandoffService, hub: ConsoleHub, sessions: ConsoleSessions, settings: Settings,
                 canned: list[dict[str, str]]) -> None:
        self.handoff = handoff
        self.hub = hub
        self.sessions = sessions
        self.settings = settings
        self.canned = canned
        self.throttle = SignInThrottle()

    @property
    def agents(self) -> dict[str, Agent]:
        return self.handoff.agents

    def _agent(self, request: web.Request) -> str | None:
        username = self.sessions.verify(request.cookies.get(COOKIE))
        return username if username in self.agents else None

    def _login_page(self, error: str = "", status: int = 200) -> web.Response:
        page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
        return web.Response(text=page.replace("{{error}}", html.escape(error)), content_type="text/html", status=status,
                            headers={"Cache-Control": "no-store"})

    async def page(self, request: web.Request) -> web.StreamResponse:
        if self._agent(request) is None:
            return self._login_page()
        return web.FileResponse(STATIC_DIR / "console.html", headers={"Cache-Control": "no-store"})

    async def login(self, request: web.Request) -> web.StreamResponse:
        wants_json = request.content_type == "application/json"
        try:
            data: Any = await request.json(loads=parse_json) if wants_json else await request.post()
            if not hasattr(data, "get"):
                raise ValueError("expected an object")
        except ValueError:
            return web.json_response({"error": "invalid_json"}, status=400)
        username, password = str(data.get("username", ""))[:100], str(data.get("password", ""))[:1000]
        address = client_address(request, self.settings.trusted_proxies)
        key = SignInKey(username, address)
        wait = self.throttle.retry_after(key)
        if wait > 0:  # even the right password waits: the lock is what stops guessing
            seconds = int(wait) + 1
            headers = {"Retry-After": str(seconds)}
            if wants_json:
                return web.json_response({"error": "locked_out", "retry_after": seconds,
                                          "message": f"too many attempts; try again in {seconds} s"},
                                         status=429, headers=headers)
            page = self._login_page(f"Too many attempts. Try again in {seconds} seconds.", status=429)
            page.headers.update(headers)
            return page
        agent = self.agents.get(username)
        if not await password_matches(agent, password):
            lock = self.throttle.failed(key)
            log.warning("console sign-in failed", extra={"username": mask_name(username), "remote": address,
                                                         "locked_seconds": lock})
            if wants_json:
                return web.json_response({"error": "invalid_credentials"}, status=401)
            return self._login_page("Wrong username or password.", status=401)
        assert agent is not None
        self.throttle.succeeded(key)
        token = self.sessions.issue(username)
        response: web.StreamResponse = (web.json_response({"agent": agent.public()}) if wants_json
                                        else web.HTTPSeeOther("/console"))
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
                            path="/console", secure=came_over_https(request, self.settings.trusted_proxies))
        log.info("agent signed in", extra={"agent": username})
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.revoke(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/console")
        response.del_cookie(COOKIE, path="/console")
        raise response

    async def socket(self, request: web.Request) -> web.StreamResponse:
        agent = self._agent(request)
        if agent is None:
            raise web.HTTPUnauthorized(text="sign in at /console first")
        if not origin_allowed(request, self.settings.console_allowed_origins):  # not the shop's web chat sites
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self.hub.sockets[ws] = agent
        log.info("agent online", extra={"agent": agent})
        try:
            await ws.send_json({"type": "hello", "agent": self.agents[agent].public(), "canned": self.canned,
                                "agents": self.hub.agents_view(), "outcomes": list(OUTCOMES)})
            await self.hub.changed()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._frame(ws, agent, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_json({"type": "error", "code": "invalid_frame", "message": "send JSON text"})
        finally:
            self.hub.sockets.pop(ws, None)
            log.info("agent offline", extra={"agent": agent})
            await self.hub.changed()
        return ws

    async def _frame(self, ws: web.WebSocketResponse, agent: str, data: str) -> None:
        try:
            frame = parse_json(data)
        except ValueError:
            await ws.send_json({"type": "error", "code": "invalid_json", "message": "frame is not valid JSON"})
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await ws.send_json({"type": "error", "code": "invalid_frame", "message": "expected an object with 'type'"})
            return
        kind, key = frame["type"], frame.get("key")
        try:
            if kind == "ping":
                await ws.send_json({"type": "pong"})
                return
            if not isinstance(key, str):
                raise HandoffError("invalid_frame", "'key' is required")
            if kind == "open":
                self.hub.viewing[ws] = key
                await ws.send_json({"type": "conversation", **await self.handoff.conversation_view(key)})
            elif kind == "take":
                channel, _, conversation_id = key.partition(":")
                if not conversation_id or channel not in ("webchat", "socketio", "rest", "telegram", "slack"):
                    raise HandoffError("not_found", "no such conversation")
                won, holder = await self.handoff.take(agent, channel, conversation_id)
                await ws.send_json({"type": "claimed", "key": key, "ok": won, "agent": holder})
            elif kind == "claim":
                won, holder = await self.handoff.claim(agent, key)
                await ws.send_json({"type": "claimed", "key": key, "ok": won, "agent": holder})
            elif kind in ("reply", "note"):
                text = frame.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise HandoffError("empty_text", "write something first")
                if len(text) > MAX_TEXT:
                    raise HandoffError("text_too_long", f"the limit is {MAX_TEXT} characters")
                if kind == "reply":
                    await self.handoff.reply(agent, key, text)
                else:
                    await self.handoff.note(agent, key, text)
            elif kind == "transfer":
                await self.handoff.transfer(agent, key, str(frame.get("to", "")))
            elif kind == "hand_back":
                await self.handoff.hand_back(agent, key)
            elif kind == "resolve":
                await self.handoff.resolve(agent, key, str(frame.get("outcome", "")))
            else:
                raise HandoffError("invalid_frame", f"unknown frame type {kind[:40]!r}")
        except HandoffError as exc:
            await ws.send_json({"type": "error", "code": exc.code, "message": str(exc)})

    async def close_all(self) -> None:
        for ws in list(self.hub.sockets):
            await ws.close(code=1001, message=b"gateway shutting down")
