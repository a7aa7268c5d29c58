"""The agent console: sign-in, the console page and its live websocket
(docs/console-protocol.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import os
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSMsgType, web

from bot.config import ConfigError, Settings
from bot.fanout import Fanout
from bot.log import mask_name
from bot.messages import ConversationRef
from bot.plugins import Conversations, TestSaver, no_test_saver
from bot.rasa_client import RasaError
from bot.security import came_over_https, client_address, origin_allowed, parse_json
from handoff.agents import Agent, AgentsFileError, load_agents
from handoff.canned import CannedReply, edited_canned, fill, load_canned, save_canned, unfilled
from handoff.events import HandoffEvent, HandoffEventKind
from handoff.service import OUTCOMES, HandoffError, HandoffService, Listener, item_view, queue_order
from handoff.sessions import SESSION_SECONDS, ConsoleSession, ConsoleSessions
from handoff.signin import SignInKey, SignInThrottle, password_matches
from handoff.sla import FIRST_RESPONSE, agent_clock
from handoff.store import Handoff, HandoffStore, LogEntry

log = logging.getLogger("gateway.console")

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "console_session"
FANOUT_TOPIC = "console"
CANNED_TOPIC = "console-canned"
PRESENCE_FRESH_SECONDS = 30.0  # another gateway's word on who is signed in there counts this long
MAX_TEXT = 4000
SESSION_ENDED = 4401  # websocket close code: signed out, removed, or the password changed
AGENTS_POLL_SECONDS = 1.0


class ConsoleHub(Listener):
    """Every connected console socket, by agent; pushes state and transcript lines.

    Built before the handoff service, which it listens to: it reads the same store, the
    same agents (the dict the agents-file watcher updates in place) and the same clock."""

    def __init__(self, store: HandoffStore, conversations: Conversations, agents: dict[str, Agent],
                 clock: Callable[[], float], fanout: Fanout | None = None, zone: dt.tzinfo = dt.timezone.utc) -> None:
        self.zone = zone  # the team's, for the times in notices
        self.store = store
        self.conversations = conversations
        self.agents = agents
        self.clock = clock
        # A change or a transcript line made on any gateway reaches the consoles on every one.
        self.fanout = fanout or Fanout()
        self.fanout.subscribe(FANOUT_TOPIC, self._heard)
        # Who is signed in on the other gateways: gateway -> (agents, when it last said so).
        self.hub_id = uuid.uuid4().hex
        self._elsewhere: dict[str, tuple[frozenset[str], float]] = {}
        self.sockets: dict[web.WebSocketResponse, str] = {}
        self.viewing: weakref.WeakKeyDictionary[web.WebSocketResponse, str] = weakref.WeakKeyDictionary()

    def online_agents(self) -> set[str]:
        """Agents with a console open on this gateway or, as they last said, on another."""
        here = set(self.sockets.values())
        fresh = time.monotonic() - PRESENCE_FRESH_SECONDS
        for agents, said_at in self._elsewhere.values():
            if said_at >= fresh:
                here |= agents
        return here

    async def announce_presence(self) -> None:
        """Tell the other gateways who is signed in here (on every change, and periodically)."""
        await self.fanout.publish(FANOUT_TOPIC, {"kind": "presence", "hub": self.hub_id,
                                                 "agents": sorted(set(self.sockets.values()))})

    def agents_view(self) -> list[dict[str, Any]]:
        online = self.online_agents()
        return [{**a.public(), "online": a.username in online} for a in self.agents.values()]

    async def live_view(self, active: list[Handoff]) -> list[dict[str, Any]]:
        """Conversations the bot is handling right now on any gateway, newest first (an agent
        may take one)."""
        taken = {h.key for h in active}
        live = []
        for key, entry in await self.conversations.recent(40):
            ref = ConversationRef.parse(key)
            if ref is not None and key not in taken:
                live.append({"key": key, "channel": ref.channel, "last_text": entry.text, "last_role": entry.role,
                             "ts": entry.ts})
        return live[:20]

    async def state_for(self, agent: str, active: list[Handoff]) -> dict[str, Any]:
        now = self.clock()
        return {
            "type": "state", "now": now, "agents": self.agents_view(), "live": await self.live_view(active),
            "queue": [item_view(h, now) for h in queue_order([h for h in active if h.status == "queued"], now)],
            "mine": [item_view(h, now) for h in active if h.status == "assigned" and h.agent == agent],
            "others": [item_view(h, now) for h in active if h.status == "assigned" and h.agent != agent],
        }

    async def changed(self) -> None:
        await self.announce_presence()
        await self.fanout.publish(FANOUT_TOPIC, {"kind": "changed"})

    async def entry(self, handoff: Handoff, entry: LogEntry) -> None:
        await self.fanout.publish(FANOUT_TOPIC, {"kind": "entry", "key": handoff.key, "agent": handoff.agent,
                                                 "entry": entry.to_dict()})

    async def handoff_event(self, event: HandoffEvent) -> None:
        """SLA deadlines near or passed: a notice on every console, on every gateway."""
        if event.kind not in (HandoffEventKind.SLA_WARNING, HandoffEventKind.SLA_BREACHED):
            return
        h = event.handoff
        level = "breached" if event.kind is HandoffEventKind.SLA_BREACHED else "warning"
        due = h.first_response_due if event.timer == FIRST_RESPONSE else h.resolution_due
        what = "first response" if event.timer == FIRST_RESPONSE else "resolution"
        when = "was due" if level == "breached" else "is due"
        text = f"{h.reason.replace('_', ' ')} on {h.channel}: {what} {when} at {agent_clock(due or 0, self.zone)}"
        if h.escalated:
            text += "; escalated to the supervisors"
        await self.fanout.publish(FANOUT_TOPIC, {"kind": "notice", "notice": {
            "type": "notice", "level": level, "timer": event.timer, "key": h.key, "text": text, "due": due,
            "escalated": h.escalated}})

    async def _heard(self, frame: dict[str, Any]) -> None:
        if frame.get("kind") == "presence":
            hub, agents = frame.get("hub"), frame.get("agents")
            if isinstance(hub, str) and hub != self.hub_id and isinstance(agents, list):
                self._elsewhere[hub] = (frozenset(a for a in agents if isinstance(a, str)), time.monotonic())
        elif frame.get("kind") == "changed":
            await self.changed_here()
        elif frame.get("kind") == "notice" and isinstance(frame.get("notice"), dict):
            for ws in list(self.sockets):
                await self._send(ws, frame["notice"])
        elif frame.get("kind") == "entry" and isinstance(frame.get("key"), str) and isinstance(frame.get("entry"), dict):
            await self._entry_here(frame["key"], frame.get("agent"), frame["entry"])

    async def changed_here(self) -> None:
        """Fresh state to the consoles on this gateway."""
        if not self.sockets:
            return
        active = await self.store.active()
        for ws, agent in list(self.sockets.items()):
            await self._send(ws, await self.state_for(agent, active))

    async def _entry_here(self, key: str, agent_then: Any, entry: dict[str, Any]) -> None:
        if not self.sockets:
            return
        current = await self.store.get(key)
        owner = current.agent if current else agent_then
        for ws, agent in list(self.sockets.items()):
            if agent == owner or self.viewing.get(ws) == key:
                await self._send(ws, {"type": "entry", "key": key, "entry": entry})

    @staticmethod
    async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        if not ws.closed:
            try:
                await ws.send_json(frame)
            except ConnectionError:
                pass


class Console:
    def __init__(self, handoff: HandoffService, hub: ConsoleHub, sessions: ConsoleSessions, settings: Settings,
                 canned: list[CannedReply], save_test: TestSaver = no_test_saver,
                 canned_path: Path | None = None) -> None:
        self.canned_path = canned_path  # where managers' edits are saved (None: not editable)
        hub.fanout.subscribe(CANNED_TOPIC, self._canned_changed)
        self.handoff = handoff
        self.save_test = save_test
        self.hub = hub
        self.sessions = sessions
        self.settings = settings
        self.canned = canned
        self.throttle = SignInThrottle()
        self.socket_sessions: dict[web.WebSocketResponse, ConsoleSession] = {}

    @property
    def agents(self) -> dict[str, Agent]:
        return self.handoff.agents

    async def _session(self, request: web.Request) -> ConsoleSession | None:
        return await self.sessions.verify(request.cookies.get(COOKIE), self.agents)

    def _login_page(self, error: str = "", status: int = 200) -> web.Response:
        page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
        return web.Response(text=page.replace("{{error}}", html.escape(error)), content_type="text/html", status=status,
                            headers={"Cache-Control": "no-store"})

    async def page(self, request: web.Request) -> web.StreamResponse:
        if await self._session(request) is None:
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
        token = self.sessions.issue(agent)
        response: web.StreamResponse = (web.json_response({"agent": agent.public()}) if wants_json
                                        else web.HTTPSeeOther("/console"))
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
                            path="/console", secure=came_over_https(request, self.settings.trusted_proxies))
        log.info("agent signed in", extra={"agent": username})
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.read(request.cookies.get(COOKIE), self.agents)
        if session is not None:
            await self.sessions.revocations.add(session)  # durable: a restart does not bring it back
            await self._end_sockets(lambda s: s.session_id == session.session_id)
            log.info("agent signed out", extra={"agent": session.username})
        response = web.HTTPSeeOther("/console")
        response.del_cookie(COOKIE, path="/console")
        raise response

    async def _end_sockets(self, ended: Callable[[ConsoleSession], bool]) -> None:
        """Close, with SESSION_ENDED, every console socket whose session `ended(session)`."""
        for ws, session in list(self.socket_sessions.items()):
            if ended(session):
                self.socket_sessions.pop(ws, None)
                await ws.close(code=SESSION_ENDED, message=b"session ended")

    async def end_invalid_sessions(self) -> None:
        """Close sockets of removed agents, changed passwords, expired cookies, and sessions
        signed out on another gateway."""
        signed_out = {s.session_id for s in list(self.socket_sessions.values())
                      if await self.sessions.revocations.contains(s.session_id)}
        await self._end_sockets(lambda s: s.session_id in signed_out or not self.sessions.still_valid(s, self.agents))

    async def watch_agents_file(self, path: Path) -> None:
        """Reload the agents file when `./aftersales agent add|remove` changes it (`add` of an
        existing agent sets a new password); end the sessions it invalidates at once."""
        def signature() -> tuple[int, int] | None:
            try:
                stat = os.stat(path)
            except OSError:
                return None
            return stat.st_mtime_ns, stat.st_size

        seen = await asyncio.to_thread(signature)
        while True:
            await asyncio.sleep(AGENTS_POLL_SECONDS)
            now = await asyncio.to_thread(signature)
            if now == seen or now is None:
                continue
            seen = now
            try:
                agents = await asyncio.to_thread(load_agents, path)
            except AgentsFileError as exc:
                log.warning("agents file not reloaded; keeping the agents signed in", extra={"error": str(exc)})
                continue
            self.agents.clear()
            self.agents.update(agents)
            log.info("agents file reloaded", extra={"agents": len(agents)})
            await self.end_invalid_sessions()
            await self.hub.changed()

    async def socket(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="sign in at /console first")
        agent = session.username
        if not origin_allowed(request, self.settings.console_allowed_origins):  # not the shop's web chat sites
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self.hub.sockets[ws] = agent
        self.socket_sessions[ws] = session
        log.info("agent online", extra={"agent": agent})
        try:
            await ws.send_json({"type": "hello", "agent": self.agents[agent].public(),
                                "canned": [c.to_dict() for c in self.canned], "agents": self.hub.agents_view(),
                                "outcomes": list(OUTCOMES), "zone": self.handoff.settings.hours.zone.key})
            await self.hub.changed()
            async for msg in ws:
                if ws not in self.socket_sessions:
                    break  # the session ended while this frame was on its way
                if msg.type == WSMsgType.TEXT:
                    await self._frame(ws, agent, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_json({"type": "error", "code": "invalid_frame", "message": "send JSON text"})
        finally:
            self.hub.sockets.pop(ws, None)
            self.socket_sessions.pop(ws, None)
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
            if kind == "set_canned":
                await self._set_canned(agent, frame.get("canned"))
                return
            if not isinstance(key, str):
                raise HandoffError("invalid_frame", "'key' is required")
            if kind == "open":
                self.hub.viewing[ws] = key
                view = await self.handoff.conversation_view(key)
                language = view["conversation"]["language"]
                view["canned"] = [{"title": c.title, "text": fill(c.text(language), view["values"], language)}
                                  for c in self.canned]
                await ws.send_json({"type": "conversation", **view})
            elif kind == "take":
                ref = ConversationRef.parse(key)
                if ref is None or ref.channel not in self.handoff.conversations.channels:
                    raise HandoffError("not_found", "no such conversation")
                won, holder = await self.handoff.take(agent, ref.channel, ref.conversation_id)
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
                    left = unfilled(text)
                    if left:  # a canned reply's variable nobody filled: never sent as "{order}"
                        raise HandoffError("unfilled_variable", f"fill in {', '.join(left)} first")
                    await self.handoff.reply(agent, key, text)
                else:
                    await self.handoff.note(agent, key, text)
            elif kind == "transfer":
                await self.handoff.transfer(agent, key, str(frame.get("to", "")))
            elif kind == "hand_back":
                await self.handoff.hand_back(agent, key)
            elif kind == "resolve":
                await self.handoff.resolve(agent, key, str(frame.get("outcome", "")))
            elif kind == "save_test":
                # What went wrong becomes a test, with the outcome the agent marks as right.
                name = frame.get("name") or f"saved-{uuid.uuid4().hex[:8]}"
                try:
                    files = await self.save_test(key, str(frame.get("outcome", "")), frame.get("handoff") is True,
                                                 str(name))
                except ValueError as exc:
                    raise HandoffError("invalid_test", str(exc)) from exc
                except RasaError as exc:
                    raise HandoffError("unavailable", "the assistant cannot be read now; try again") from exc
                log.info("conversation saved as a test", extra={"agent": agent, "key": key})
                await ws.send_json({"type": "saved_test", "key": key, "name": name, "files": files})
            else:
                raise HandoffError("invalid_frame", f"unknown frame type {kind[:40]!r}")
        except HandoffError as exc:
            await ws.send_json({"type": "error", "code": exc.code, "message": str(exc)})

    # -- canned replies, edited by managers ----------------------------------------------------

    async def _set_canned(self, agent: str, data: Any) -> None:
        if not self.agents[agent].is_manager:
            raise HandoffError("forbidden", "only managers change the canned replies")
        if self.canned_path is None:
            raise HandoffError("forbidden", "the canned replies come from a file this gateway does not write")
        try:
            replies = edited_canned(data)
        except ValueError as exc:
            raise HandoffError("invalid_canned", str(exc)) from exc
        await asyncio.to_thread(save_canned, self.canned_path, replies)
        log.info("canned replies changed", extra={"agent": agent, "count": len(replies)})
        await self.hub.fanout.publish(CANNED_TOPIC, {"by": agent})  # every gateway reads the file again

    async def _canned_changed(self, frame: dict[str, Any]) -> None:
        if self.canned_path is None:
            return
        try:
            fresh = await asyncio.to_thread(load_canned, self.canned_path, [])
        except ConfigError as exc:
            log.error("the edited canned replies cannot be read", extra={"error": str(exc)})
            return
        self.canned[:] = fresh
        for ws in list(self.hub.sockets):
            await ConsoleHub._send(ws, {"type": "canned", "canned": [c.to_dict() for c in self.canned],
                                        "by": frame.get("by")})

    async def close_all(self) -> None:
        for ws in list(self.hub.sockets):
            await ws.close(code=1001, message=b"gateway shutting down")
