"""Agents work handoffs from an agents' Slack channel (SLACK_AGENTS_CHANNEL), against the fake
Slack Web API: a web chat shopper's handoff opens a thread with its summary and a Claim
button; an unknown Slack user cannot act; Alice claims from Slack (the console shows it hers);
the shopper's messages appear in the thread; her thread replies reach the shopper's socket,
a `//` note does not; a console reply shows in the thread; Resolve asks the shopper the CSAT
question and the rating shows in the thread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ
from tests.handoff.test_handoff import ask_for_a_person
from tests.slack.conftest import SlackClient, click_payload, event_body, new_id, slack_env, slack_ts
from tests.slack.fake_web_api import ApiCall, FakeSlackApi

ALICE_SLACK, STRANGER_SLACK = "UALICE001", "USTRANGER1"


@pytest.fixture
async def agents_gateway(fake_rasa: FakeRasa, fake_slack: FakeSlackApi,
                         tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, str]]:
    channel = new_id("C")
    environ = team_environ(tmp_path, **slack_env(fake_slack), SLACK_AGENTS_CHANNEL=channel,
                           SLACK_AGENT_USERS=f"{ALICE_SLACK}=alice")
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ))
    try:
        yield gateway, channel
    finally:
        await runner.cleanup()


def thread_reply(channel: str, thread_ts: str, text: str, user: str = ALICE_SLACK) -> dict:
    return {"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": text,
            "ts": slack_ts(), "thread_ts": thread_ts}


def in_thread(fake: FakeSlackApi, channel: str, parent: ApiCall) -> list[str]:
    return [p.text for p in fake.posts(channel) if p.params.get("thread_ts") == parent.ts]


async def test_an_agent_claims_answers_notes_and_resolves_from_the_slack_thread(
        agents_gateway: tuple[RunningGateway, str], fake_slack: FakeSlackApi) -> None:
    gateway, channel = agents_gateway
    shopper = await ChatClient.connect(gateway.ws_url)
    key = f"webchat:{shopper.conversation_id}"
    alice = await ConsoleClient.sign_in(gateway.url, "alice")
    async with aiohttp.ClientSession() as http:
        slack = SlackClient(gateway.url, http)
        try:
            await ask_for_a_person(shopper, gateway)
            [parent] = await fake_slack.wait_for_posts(channel)
            assert "shopper request · webchat · en" in parent.text and "I want to talk to a human" in parent.text
            assert [e["text"]["text"] for b in parent.blocks if b["type"] == "actions" for e in b["elements"]] == ["Claim"]

            # Someone Slack knows but the shop's team does not: nothing happens, and they are told.
            assert (await slack.interaction(click_payload(parent, "Claim", user=STRANGER_SLACK))).status == 200
            await fake_slack.wait_for(lambda: any("not one of the shop's agents" in t
                                                  for t in in_thread(fake_slack, channel, parent)))
            assert alice.state == {} or all(i["key"] != key for i in alice.state.get("mine", []))

            # Alice claims from Slack: the shopper is told, the console shows it hers, the summary changes.
            assert (await slack.interaction(click_payload(parent, "Claim", user=ALICE_SLACK))).status == 200
            assert "chatting with Alice Chen" in (await shopper.next_frame("reply"))["text"]
            await alice.state_where(lambda s: any(i["key"] == key for i in s["mine"]))
            update = await fake_slack.wait_for(lambda: [c for c in fake_slack.calls_of("chat.update")
                                                        if c.params.get("ts") == parent.ts])
            assert "With Alice Chen" in update[-1].text
            assert [e["text"]["text"] for b in update[-1].blocks if b["type"] == "actions"
                    for e in b["elements"]] == ["Hand back to the bot", "Resolve"]
            assert any(t == "Claimed by Alice Chen" for t in in_thread(fake_slack, channel, parent))

            # The shopper's message appears in the thread, escaped (no channel-wide ping).
            await shopper.say("the box was crushed <!channel>")
            await fake_slack.wait_for(lambda: "Shopper: the box was crushed &lt;!channel&gt;"
                                      in in_thread(fake_slack, channel, parent))

            # Alice answers in the thread: the shopper gets it, signed with her name.
            await slack.event(thread_reply(channel, parent.ts, "So sorry! A replacement ships today."))
            reply = await shopper.next_frame("reply")
            assert reply["text"] == "So sorry! A replacement ships today."
            # A note stays with the team: in the console's transcript, never sent to the shopper.
            await slack.event(thread_reply(channel, parent.ts, "// warehouse says the SKU is in stock"))
            await alice.send(type="open", key=key)
            view = await alice.next("conversation")
            said = [(e["role"], e["text"]) for e in view["transcript"]]
            assert ("agent", "So sorry! A replacement ships today.") in said
            assert ("note", "warehouse says the SKU is in stock") in said
            assert await shopper.unread_replies(gateway) == []
            # Replies made in Slack are not posted back into the thread a second time.
            assert not any("→ shopper" in t for t in in_thread(fake_slack, channel, parent))

            # A reply from the console shows in the thread.
            await alice.send(type="reply", key=key, text="Anything else I can do?")
            assert (await shopper.next_frame("reply"))["text"] == "Anything else I can do?"
            await fake_slack.wait_for(lambda: "Alice Chen → shopper: Anything else I can do?"
                                      in in_thread(fake_slack, channel, parent))

            # Resolve from Slack: the shopper is asked how satisfied they are; the rating shows in the thread.
            latest = [c for c in fake_slack.calls_of("chat.update") if c.params.get("ts") == parent.ts][-1]
            resolved = ApiCall("chat.postMessage", {"channel": channel, "text": latest.text,
                                                    "blocks": json.dumps(latest.blocks)}, None, 200, {"ts": parent.ts})
            assert (await slack.interaction(click_payload(resolved, "Resolve", user=ALICE_SLACK))).status == 200
            survey = await shopper.next_frame("reply")
            assert "How satisfied" in survey["text"] and len(survey["buttons"]) == 5
            await shopper.say("5", payload="/csat_5")
            assert "Thank you" in (await shopper.next_frame("reply"))["text"]
            await fake_slack.wait_for(lambda: "The shopper rated the help 5/5" in in_thread(fake_slack, channel, parent))
        finally:
            await shopper.close()
            await alice.close()


async def test_a_thread_reply_before_claiming_is_not_sent_and_the_agent_is_told(
        agents_gateway: tuple[RunningGateway, str], fake_slack: FakeSlackApi) -> None:
    gateway, channel = agents_gateway
    shopper = await ChatClient.connect(gateway.ws_url)
    async with aiohttp.ClientSession() as http:
        slack = SlackClient(gateway.url, http)
        try:
            await ask_for_a_person(shopper, gateway)
            [parent] = await fake_slack.wait_for_posts(channel)
            event = thread_reply(channel, parent.ts, "hello from Slack")
            body = event_body(event, event_id=new_id("Ev"))
            first = await slack.post(json.dumps(body), "application/json")
            again = await slack.post(json.dumps(body), "application/json")  # Slack's retry of the same event
            assert (first.status, again.status) == (200, 200)
            await fake_slack.wait_for(lambda: [t for t in in_thread(fake_slack, channel, parent)
                                               if t.startswith("Not sent: claim the conversation first")])
            assert len([t for t in in_thread(fake_slack, channel, parent) if t.startswith("Not sent")]) == 1
            assert await shopper.unread_replies(gateway) == []
        finally:
            await shopper.close()


async def test_with_redis_a_click_on_another_gateway_acts_on_the_thread_opened_here(
        fake_rasa: FakeRasa, fake_slack: FakeSlackApi, tmp_path: Path, redis_url: str) -> None:
    channel = new_id("C")
    environ = team_environ(tmp_path, **slack_env(fake_slack), SLACK_AGENTS_CHANNEL=channel,
                           SLACK_AGENT_USERS=f"{ALICE_SLACK}=alice")
    a, runner_a = await start_gateway(make_settings(tmp_path / "a", fake_rasa.url, environ=environ, redis_url=redis_url))
    b, runner_b = await start_gateway(make_settings(tmp_path / "b", fake_rasa.url, environ=environ, redis_url=redis_url))
    shopper = await ChatClient.connect(a.ws_url)
    try:
        async with aiohttp.ClientSession() as http:
            await ask_for_a_person(shopper, a)
            [parent] = await fake_slack.wait_for_posts(channel)  # one thread, from the gateway that handed off
            on_b = SlackClient(b.url, http)
            assert (await on_b.interaction(click_payload(parent, "Claim", user=ALICE_SLACK))).status == 200
            assert "chatting with Alice Chen" in (await shopper.next_frame("reply", timeout=20))["text"]
            await on_b.event(thread_reply(channel, parent.ts, "Replacement on its way."))
            assert (await shopper.next_frame("reply", timeout=20))["text"] == "Replacement on its way."
            await shopper.say("thank you!")  # written on A: shown in the thread once
            await fake_slack.wait_for(lambda: "Shopper: thank you!" in in_thread(fake_slack, channel, parent))
            assert in_thread(fake_slack, channel, parent).count("Shopper: thank you!") == 1
            assert len([p for p in fake_slack.posts(channel) if not p.params.get("thread_ts")]) == 1
    finally:
        await shopper.close()
        await runner_b.cleanup()
        await runner_a.cleanup()


def test_agents_channel_settings_are_checked_with_each_problem_named() -> None:
    from bot.config import ConfigError
    from channels.slack.config import load_slack_config
    from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET

    base = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    with pytest.raises(ConfigError) as raised:
        load_slack_config({**base, "SLACK_AGENTS_CHANNEL": "#agents", "SLACK_AGENT_USERS": "UALICE1=alice,bob"})
    assert [p.split(":")[0].split("=")[0] for p in raised.value.problems] == ["SLACK_AGENTS_CHANNEL", "SLACK_AGENT_USERS"]
    assert "'bob' is not `SLACKUSERID=agent`" in raised.value.problems[1]
    with pytest.raises(ConfigError) as raised:
        load_slack_config({**base, "SLACK_AGENT_USERS": "UALICE1=alice"})
    assert raised.value.problems == ["SLACK_AGENT_USERS is set but SLACK_AGENTS_CHANNEL is not: agents work in "
                                     "that channel"]
    config = load_slack_config({**base, "SLACK_AGENTS_CHANNEL": "C0AGENTS", "SLACK_AGENT_USERS": " UALICE1=alice , UBOB2=bob"})
    assert config is not None and config.agents_channel == "C0AGENTS"
    assert dict(config.agent_users) == {"UALICE1": "alice", "UBOB2": "bob"}
