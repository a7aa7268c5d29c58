"""Handoff over Slack, exactly as over web chat: a buyer in a DM asks for a person, an agent
claims in the console, messages relay both ways, and the agent hands back to the bot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from handoff.agents import write_agents_file
from tests.conftest import make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient
from tests.slack.conftest import FakeSlackApi, SlackClient, dm, new_id, slack_env


async def test_slack_buyer_is_handed_to_an_agent_and_back(fake_rasa: FakeRasa, tmp_path: Path,
                                                          fake_slack: FakeSlackApi) -> None:
    agents = tmp_path / "agents.yml"
    write_agents_file(agents, {"alice": ("Alice Chen", "alice-pw")})
    settings = make_settings(tmp_path, fake_rasa.url,
                             environ={**slack_env(fake_slack), "AGENTS_FILE": str(agents)})
    gateway, runner = await start_gateway(settings)
    channel = new_id("D")
    key = f"slack:{channel}"
    try:
        async with aiohttp.ClientSession() as http:
            slack = SlackClient(gateway.url, http)
            alice = await ConsoleClient.sign_in(gateway.url, "alice", "alice-pw")
            await slack.event(dm("I want to talk to a human", channel))
            await alice.state_where(lambda s: any(i["key"] == key and i["channel"] == "slack" for i in s["queue"]))
            await alice.send(type="claim", key=key)
            assert (await alice.next("claimed"))["ok"] is True
            await fake_slack.wait_for(lambda: any("Alice Chen" in p.text for p in fake_slack.posts(channel)))

            await slack.event(dm("the box was crushed", channel))
            entry = await alice.next("entry")
            assert (entry["key"], entry["entry"]["text"]) == (key, "the box was crushed")

            before = len(fake_slack.posts(channel))
            await alice.send(type="reply", key=key, text="So sorry! A replacement ships today.")
            await fake_slack.wait_for(lambda: any("A replacement ships today" in p.text
                                                  for p in fake_slack.posts(channel)[before:]))
            relayed = [p.text for p in fake_slack.posts(channel)[before:] if "A replacement" in p.text]
            assert relayed == ["Alice Chen: So sorry! A replacement ships today."]  # the shopper sees who wrote

            await alice.send(type="hand_back", key=key)
            await fake_slack.wait_for(lambda: any("back with the assistant" in p.text
                                                  for p in fake_slack.posts(channel)))
            await slack.event(dm("thanks", channel))
            await fake_slack.wait_for(lambda: any(p.text.startswith("You're welcome")
                                                  for p in fake_slack.posts(channel)))
            await alice.close()
    finally:
        await runner.cleanup()


async def test_the_satisfaction_question_comes_as_slack_buttons_and_a_click_answers_it(
        fake_rasa: FakeRasa, tmp_path: Path, fake_slack: FakeSlackApi) -> None:
    from handoff import HANDOFF_KEY
    from tests.slack.conftest import click_payload

    agents = tmp_path / "agents.yml"
    write_agents_file(agents, {"alice": ("Alice Chen", "alice-pw")})
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url,
                                                        environ={**slack_env(fake_slack), "AGENTS_FILE": str(agents)}))
    channel = new_id("D")
    key = f"slack:{channel}"
    handoff = gateway.app[HANDOFF_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            slack = SlackClient(gateway.url, http)
            await slack.event(dm("I want to talk to a human", channel))
            await fake_slack.wait_for(lambda: any("person" in p.text for p in fake_slack.posts(channel)))
            async with asyncio.timeout(15):
                while await handoff.store.get(key) is None:
                    await asyncio.sleep(0.05)
            assert (await handoff.claim("alice", key))[0]
            await handoff.resolve("alice", key, "resolved")
            survey = await fake_slack.wait_for(lambda: [p for p in fake_slack.posts(channel) if "How satisfied" in p.text])
            actions = [b for b in survey[-1].blocks if b["type"] == "actions"]
            assert [e["text"]["text"] for e in actions[0]["elements"]] == ["1", "2", "3", "4", "5"]
            assert (await slack.interaction(click_payload(survey[-1], "5"))).status == 200
            await fake_slack.wait_for(lambda: any("Thank you for your feedback" in p.text for p in fake_slack.posts(channel)))
            record = await handoff.store.get(key)
            assert record is not None and record.csat == 5
    finally:
        await runner.cleanup()
