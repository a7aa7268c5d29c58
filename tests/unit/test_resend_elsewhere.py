"""A web chat client that lost its socket resends what it sent, with the same id, to whichever
gateway the load balancer picks. That gateway acknowledges it and does not run it again: the
gateway that kept it answers it (here, once the assistant answers), and the answer reaches the
shopper's new socket on the other gateway, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import ChatClient, make_settings, settled, start_gateway
from tests.fake_rasa import FakeRasa

WEBHOOK = "/webhooks/rest/webhook"


async def test_a_resend_to_another_gateway_is_answered_once_by_the_keeper(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    a, runner_a = await start_gateway(make_settings(tmp_path / "a", fake_rasa.url, redis_url=redis_url, gateway_id="a"))
    b, runner_b = await start_gateway(make_settings(tmp_path / "b", fake_rasa.url, redis_url=redis_url, gateway_id="b"))
    try:
        fake_rasa.hang_next(path=WEBHOOK)  # the assistant is slow with this one
        first = await ChatClient.connect(a.ws_url)
        sent = await first.say("hello")
        assert (await first.next_frame("ack"))["id"] == sent
        await first.close()  # the shopper's connection drops before the answer

        again = await ChatClient.connect(b.ws_url, token=first.token)  # the load balancer picked B
        await again.say("hello", message_id=sent)  # resent, same id
        assert (await again.next_frame("ack"))["id"] == sent
        assert b.service.total_pending == 0  # B acknowledged it without taking it on (the ack follows a take-on)

        async with asyncio.timeout(10):  # A's call is hanging in the assistant (not still on its way)
            while not fake_rasa.calls(WEBHOOK):
                await asyncio.sleep(0.01)
        fake_rasa.release_hung()  # A tries again and gets the answer
        answer = await again.next_frame("reply", timeout=15)
        assert "after-sales assistant" in answer["text"]
        await settled(a.service)
        await settled(b.service)
        key = f"webchat:{first.conversation_id}"
        assert fake_rasa.user_texts(key) == ["hello"]  # run once, by A
        assert len([f for f in again.frames if f["type"] == "reply" and not f.get("holding")]) == 1  # once

        await again.say("hello", message_id=sent)  # and once answered, a late resend is not run either
        assert (await again.next_frame("ack"))["id"] == sent
        await settled(b.service)
        assert fake_rasa.user_texts(key) == ["hello"]
        await again.close()
    finally:
        await runner_b.cleanup()
        await runner_a.cleanup()
