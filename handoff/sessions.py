"""Console sessions: signed, expiring cookies that end at sign-out, at removal of the agent
and at a change of the agent's password, on every gateway and across restarts.

A cookie names the agent, its expiry, a random session id and a stamp of the agent's
password hash. Changing the password (or removing the agent) changes what the stamp must
be, so every cookie issued before stops working without any list. Sign-out adds the
session id to a revocation list that outlives the process: a file in DATA_DIR on the
embedded default, Redis (shared by every gateway) when REDIS_URL is set. Entries are kept
only until the cookie would have expired anyway.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.files import write_private
from bot.security import same_secret
from handoff.agents import Agent

log = logging.getLogger("gateway.console")

SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class ConsoleSession:
    username: str
    expires: int
    session_id: str
    stamp: str


class Revocations(ABC):
    """Session ids signed out before their cookie expired."""

    @abstractmethod
    async def add(self, session: ConsoleSession) -> None: ...

    @abstractmethod
    async def contains(self, session_id: str) -> bool: ...


class FileRevocations(Revocations):
    """The embedded default: a small JSON file, read once at start and rewritten (off the
    event loop) at each sign-out, without the entries whose cookie has expired."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._revoked: dict[str, int] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._revoked = {str(k): int(v) for k, v in data.items() if isinstance(v, int)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("console sign-out list unreadable; starting empty", extra={"path": str(path),
                                                                                  "error": str(exc)})
        self._lock = asyncio.Lock()

    async def add(self, session: ConsoleSession) -> None:
        now = int(time.time())
        async with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v >= now}
            self._revoked[session.session_id] = session.expires
            await asyncio.to_thread(self._write, dict(self._revoked))

    def _write(self, revoked: dict[str, int]) -> None:
        write_private(self.path, json.dumps(revoked))

    async def contains(self, session_id: str) -> bool:
        return session_id in self._revoked


class RedisRevocations(Revocations):
    """With REDIS_URL: one key per signed-out session, expiring with the cookie, so every
    gateway behind the load balancer refuses it."""

    def __init__(self, redis: Any, prefix: str = "gateway:console:signed-out:") -> None:
        self.redis = redis
        self.prefix = prefix

    async def add(self, session: ConsoleSession) -> None:
        ttl = max(1, session.expires - int(time.time()))
        await self.redis.set(self.prefix + session.session_id, "1", ex=ttl)

    async def contains(self, session_id: str) -> bool:
        return bool(await self.redis.exists(self.prefix + session_id))


class ConsoleSessions:
    def __init__(self, secret: str, revocations: Revocations) -> None:
        self._key = hashlib.sha256(f"console:{secret}".encode()).digest()
        self.revocations = revocations

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _stamp(self, agent: Agent) -> str:
        return self._sign(f"password:{agent.username}:{agent.password_hash}")[:16]

    def issue(self, agent: Agent) -> str:
        body = f"{agent.username}|{int(time.time()) + SESSION_SECONDS}|{secrets.token_hex(12)}|{self._stamp(agent)}"
        return f"{body}|{self._sign(body)}"

    @staticmethod
    def _parse(token: str) -> ConsoleSession | None:
        parts = token.split("|")
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        return ConsoleSession(parts[0], int(parts[1]), parts[2], parts[3])

    def read(self, token: str | None, agents: dict[str, Agent]) -> ConsoleSession | None:
        """The session a cookie carries if it is genuine, unexpired and its agent still has
        the password it was issued under (revocation is checked by `verify`)."""
        if not isinstance(token, str) or len(token) > 500:
            return None
        session = self._parse(token)
        if session is None or not same_secret(token.rsplit("|", 1)[1], self._sign(token.rsplit("|", 1)[0])):
            return None
        return session if self.still_valid(session, agents) else None

    async def verify(self, token: str | None, agents: dict[str, Agent]) -> ConsoleSession | None:
        session = self.read(token, agents)
        if session is None or await self.revocations.contains(session.session_id):
            return None
        return session

    def still_valid(self, session: ConsoleSession, agents: dict[str, Agent]) -> bool:
        """Without the revocation list: unexpired, and the agent still there with the same password?"""
        agent = agents.get(session.username)
        return agent is not None and same_secret(session.stamp, self._stamp(agent)) and session.expires >= time.time()
