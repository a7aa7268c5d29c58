"""Behind a load balancer an agent's console may be on any gateway: the list of conversations
the bot is handling right now is the same from each, whichever gateway holds the shopper."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ChatClient, make_settings, settled, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ


async def test_the_live_list_shows_shoppers_on_every_gateway(fake_rasa: FakeRasa, tmp_path: Path,
                                                              redis_url: str) -> None:
    environ = team_environ(tmp_path)
    a, runner_a = await start_gateway(make_settings(tmp_path / "a", fake_rasa.url, redis_url=redis_url, environ=environ))
    b, runner_b = await start_gateway(make_settings(tmp_path / "b", fake_rasa.url, redis_url=redis_url, environ=environ))
    on_a, on_b = await ChatClient.connect(a.ws_url), await ChatClient.connect(b.ws_url)
    try:
        await on_a.say("hello")
        await on_a.next_frame("reply")
        await on_b.say("where is my refund")
        await on_b.next_frame("reply")
        await settled(a.service)
        await settled(b.service)
        keys = {f"webchat:{on_a.conversation_id}", f"webchat:{on_b.conversation_id}"}
        for gateway in (a, b):
            agent = await ConsoleClient.sign_in(gateway.url, "alice")
            try:
                state = await agent.state_where(lambda s: keys <= {c["key"] for c in s["live"]})
                last = {c["key"]: c["last_text"] for c in state["live"]}
                assert last[f"webchat:{on_a.conversation_id}"]  # the bot's answer, as the agent sees it
            finally:
                await agent.close()
    finally:
        await on_a.close()
        await on_b.close()
        await runner_b.cleanup()
        await runner_a.cleanup()
