"""Agents and managers: the role in AGENTS_FILE (files written before roles load as agents),
`./aftersales agent add --role manager`, and the role in the console's hello frame."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import AsyncIterator

import pytest

from handoff.agents import Agent, hash_password, load_agents, save_agents
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import TEAM, ConsoleClient, team_agents

MANAGER = ("mia", "Mia Manager", "mia-pw")


def team_with_manager(tmp_path: Path) -> dict[str, str]:
    agents_file = tmp_path / "agents.yml"
    agents = dict(team_agents())
    agents[MANAGER[0]] = Agent(MANAGER[0], MANAGER[1], hash_password(MANAGER[2]), "manager")
    save_agents(agents_file, agents)
    return {"AGENTS_FILE": str(agents_file)}



@pytest.fixture
async def shop(fake_rasa: FakeRasa, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path)))
    try:
        yield running
    finally:
        await runner.cleanup()


async def test_roles_in_the_agents_file_and_the_hello_frame(shop: RunningGateway, tmp_path: Path) -> None:
    """A file written before roles existed loads as agents; the hello frame says the role."""
    legacy = tmp_path / "legacy.yml"
    legacy.write_text("agents:\n  old: {name: Old Hand, password_hash: 'x'}\n", encoding="utf-8")
    assert load_agents(legacy)["old"].role == "agent"
    legacy.write_text("agents:\n  old: {name: Old Hand, password_hash: 'x', role: boss}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="role 'boss'"):
        load_agents(legacy)
    for username, password, role in (("alice", TEAM["alice"][1], "agent"), (MANAGER[0], MANAGER[2], "manager")):
        console = await ConsoleClient.sign_in(shop.url, username, password)
        try:
            hello = next(f for f in console.frames if f["type"] == "hello")
            assert hello["agent"]["role"] == role and hello["agent"]["username"] == username
        finally:
            await console.close()


async def test_agent_add_with_role_manager_keeps_the_role_on_a_new_password(tmp_path: Path) -> None:
    environ = {**os.environ, "AGENTS_FILE": str(tmp_path / "agents.yml"), "DATA_DIR": str(tmp_path / "data")}
    for argv in (["agent", "add", "boss", "The Boss", "--role", "manager", "--password", "pw1"],
                 ["agent", "add", "boss", "The Boss", "--password", "pw2"],
                 ["agent", "add", "clerk", "A Clerk", "--password", "pw3"]):
        done = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *argv, env=environ,
                                                    cwd=Path(__file__).parents[2], stdout=asyncio.subprocess.DEVNULL)
        assert await done.wait() == 0
    agents = load_agents(tmp_path / "agents.yml")
    assert agents["boss"].role == "manager" and agents["clerk"].role == "agent"


async def test_only_a_manager_changes_the_canned_replies_and_every_console_gets_them(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    environ = team_with_manager(tmp_path)
    a, runner_a = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ, redis_url=redis_url))
    b, runner_b = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ, redis_url=redis_url))
    manager = await ConsoleClient.sign_in(a.url, MANAGER[0], MANAGER[2])
    alice = await ConsoleClient.sign_in(b.url, "alice")  # on the other gateway
    edited = [{"title": "Parcel lost", "text": {"en": "We are sorry order {order} went missing.",
                                                 "zh": "很抱歉订单 {order} 丢件了。"}}]
    try:
        await alice.send(type="set_canned", canned=edited)
        refused = await alice.next("error")
        assert refused["code"] == "forbidden" and "managers" in refused["message"]
        for bad, why in (([{"title": "x", "text": {"en": "hi"}}], "English and in Chinese"),
                         ([{"title": "x", "text": {"en": "{refund}", "zh": "好"}}], "{refund} is not a variable"),
                         ([{"title": "", "text": {"en": "a", "zh": "b"}}], "a title"),
                         ("everything", "a list")):
            await manager.send(type="set_canned", canned=bad)
            error = await manager.next("error")
            assert error["code"] == "invalid_canned" and why in error["message"], (bad, error)
        await manager.send(type="set_canned", canned=edited)
        for console in (manager, alice):  # the same on both gateways
            frame = await console.next("canned")
            assert frame["canned"] == edited and frame["by"] == MANAGER[0]
        saved = (tmp_path / "data" / "canned-replies.yml").read_text(encoding="utf-8")
        assert "丢件了" in saved
    finally:
        await manager.close()
        await alice.close()
        await runner_b.cleanup()
        await runner_a.cleanup()
    # Kept across a restart.
    again, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ))
    try:
        bob = await ConsoleClient.sign_in(again.url, "bob")
        assert [c["title"] for c in bob.frames[0]["canned"]] == ["Parcel lost"]
        await bob.close()
    finally:
        await runner.cleanup()
