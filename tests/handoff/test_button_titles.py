"""What a shopper pressed reads as the button's title for the agent, whatever the client sent."""

from __future__ import annotations

import aiohttp

from tests.conftest import ChatClient, RunningGateway
from tests.handoff.conftest import ConsoleClient


async def test_a_button_pressed_by_its_payload_shows_its_title_to_the_agent(team_gateway: RunningGateway) -> None:
    """Clients that send only a button's payload (a web chat client with the payload as the
    text, a REST caller): the agent reads the button's title, not `/request_human`."""
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chat = await ChatClient.connect(team_gateway.ws_url)
    try:
        await chat.say("hello")
        greeting = await chat.replies_of_the_turn(team_gateway)
        button = next(b for r in greeting for b in r.get("buttons") or () if b["payload"] == "/request_human")
        await chat.say(button["payload"], payload=button["payload"])
        await chat.replies_of_the_turn(team_gateway)
        async with aiohttp.ClientSession() as http:
            url = f"{team_gateway.url}/webhooks/rest/webhook"
            async with http.post(url, json={"sender": "payload-only", "message": "hello"}) as resp:
                rest_button = next(b for r in await resp.json() for b in r.get("buttons") or ()
                                   if b["payload"] == "/request_human")
            async with http.post(url, json={"sender": "payload-only", "message": "/request_human"}) as resp:
                assert resp.status == 200
        for key, title in ((f"webchat:{chat.conversation_id}", button["title"]),
                           ("rest:payload-only", rest_button["title"])):
            state = await alice.state_where(lambda s, key=key: any(i["key"] == key for i in s["queue"]))
            assert next(i for i in state["queue"] if i["key"] == key)["last_text"] == title
            await alice.send(type="open", key=key)
            shopper = [e["text"] for e in (await alice.next("conversation"))["transcript"] if e["role"] == "shopper"]
            assert shopper == ["hello", title]
    finally:
        await chat.close()
        await alice.close()
