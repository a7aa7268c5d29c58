"""Two gateways on one Redis, as behind a load balancer without sticky sessions: the agent's
console is on gateway A, the shopper's web chat socket on gateway B. The agent is counted as
online, sees the shopper queue up, claims, reads the shopper's messages live and answers;
the shopper gets every line on B; hand-back gives the shopper the bot again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from handoff import HANDOFF_KEY
from tests.conftest import ChatClient, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ
from tests.handoff.test_handoff import ask_for_a_person, rasa_events


async def test_an_agent_on_one_gateway_serves_a_shopper_on_another(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    environ = team_environ(tmp_path)
    a, runner_a = await start_gateway(make_settings(tmp_path / "a", fake_rasa.url, redis_url=redis_url, environ=environ))
    b, runner_b = await start_gateway(make_settings(tmp_path / "b", fake_rasa.url, redis_url=redis_url, environ=environ))
    alice = await ConsoleClient.sign_in(a.url, "alice")
    chat = await ChatClient.connect(b.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        async with asyncio.timeout(10):  # B hears that Alice is signed in on A
            while "alice" not in b.app[HANDOFF_KEY].listener.online_agents():
                await asyncio.sleep(0.1)
        texts = [r["text"] for r in await ask_for_a_person(chat, b)]
        assert any("number 1 in the queue" in t for t in texts)  # not "no one is online"

        await alice.state_where(lambda s: any(i["key"] == key for i in s["queue"]))
        await alice.send(type="claim", key=key)
        assert (await alice.next("claimed"))["ok"] is True
        assert "chatting with Alice Chen" in (await chat.next_frame("reply"))["text"]  # made on A, shown on B

        await chat.say("the box arrived crushed")
        entry = await alice.next("entry")  # said on B, seen live on A
        while entry["entry"]["role"] == "system":  # the claim's own lines may still be on their way
            entry = await alice.next("entry")
        assert entry["key"] == key and entry["entry"]["text"] == "the box arrived crushed"
        await alice.send(type="reply", key=key, text="Sorry! A new one ships today.")
        reply = await chat.next_frame("reply")
        assert (reply["text"], reply["author"]) == ("Sorry! A new one ships today.", "Alice Chen")

        await alice.send(type="hand_back", key=key)
        assert "back with the assistant" in (await chat.next_frame("reply"))["text"]
        assert (await rasa_events(fake_rasa.url, key))[-1] == "resume"
        await chat.say("thanks")
        assert (await chat.next_frame("reply"))["text"].startswith("You're welcome")

        again = await ChatClient.connect(a.ws_url, token=chat.token)  # the shopper's next socket lands on A
        history = await again.next_frame("history")
        said = [m["text"] for m in history["messages"]]
        assert "Sorry! A new one ships today." in said and "the box arrived crushed" in said
        await again.close()
    finally:
        await chat.close()
        await alice.close()
        await runner_b.cleanup()
        await runner_a.cleanup()
