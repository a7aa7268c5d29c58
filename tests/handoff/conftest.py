"""Fixtures for handoff: a gateway with a team of agents, and an agent console client
that signs in over HTTP and speaks the console websocket protocol."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from handoff.agents import Agent, hash_password, save_agents
from tests.conftest import RunningGateway, make_settings, start_gateway

TEAM = {"alice": ("Alice Chen", "alice-pw"), "bob": ("Bob Li", "bob-pw"), "carol": ("Carol Wu", "carol-pw")}


@functools.cache
def team_agents() -> dict[str, Agent]:
    """The team with hashed passwords, hashed once per run (200,000 PBKDF2 rounds each: a
    third of a second per test otherwise)."""
    return {user: Agent(user, name, hash_password(password)) for user, (name, password) in TEAM.items()}


def team_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    agents_file = tmp_path / "agents.yml"
    if not agents_file.exists():
        save_agents(agents_file, team_agents())  # what write_agents_file(agents_file, TEAM) writes
    return {"AGENTS_FILE": str(agents_file), **extra}


class ConsoleClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    @classmethod
    async def sign_in(cls, base_url: str, username: str, password: str | None = None) -> "ConsoleClient":
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with session.post(f"{base_url}/console/login",
                                json={"username": username, "password": password or TEAM[username][1]}) as resp:
            assert resp.status == 200, await resp.text()
        ws = await session.ws_connect(f"{base_url.replace('http', 'ws')}/console/ws")
        client = cls(session, ws)
        await client.next("hello")
        await client.next("state")
        return client

    async def next(self, *types: str, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"console socket ended: {msg.type}")
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if frame["type"] == "state":
                    self.state = frame
                if not types or frame["type"] in types:
                    return frame

    async def state_where(self, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for a state frame satisfying `predicate(state)`."""
        if self.state and predicate(self.state):
            return self.state
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next("state", timeout=timeout)
                if predicate(frame):
                    return frame

    async def send(self, **frame: Any) -> None:
        await self.ws.send_json(frame)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def team_gateway(rasa_url: str, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway with the team of agents, in front of the fake Rasa (the real one for a test
    that asks for `rasa_stack`)."""
    running, runner = await start_gateway(make_settings(tmp_path, rasa_url, environ=team_environ(tmp_path)))
    try:
        yield running
    finally:
        await runner.cleanup()
