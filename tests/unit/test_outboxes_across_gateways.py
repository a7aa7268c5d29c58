"""Two gateways on one Redis, as behind a load balancer without sticky sessions: a REST
sender's kept replies come back in the answer to its next request on the other gateway, and
a socket.io shopper gets a reply made on the other gateway, live or at its next session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis_asyncio
import socketio  # type: ignore[import-untyped]

from bot.messages import OutboundReply
from bot.texts import gateway_text
from channels.webchat import WEBCHAT_KEY
from channels.webchat.socketio import SocketIOOutput
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.fake_rasa import FakeRasa

WEBHOOK = "/webhooks/rest/webhook"


@pytest.fixture
async def two_gateways(fake_rasa: FakeRasa, tmp_path: Path,
                       redis_url: str) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    started = [await start_gateway(make_settings(tmp_path / name, fake_rasa.url, redis_url=redis_url,
                                                 rasa_timeout_seconds=1.0, gateway_id=name))
               for name in ("a", "b")]
    try:
        yield started[0][0], started[1][0]
    finally:
        for _, runner in reversed(started):
            await runner.cleanup()


async def post(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + WEBHOOK, json=body) as resp:
            assert resp.status == 200
            answer: list[dict[str, Any]] = await resp.json()
            return answer


async def test_a_rest_senders_kept_replies_come_back_from_the_other_gateway(
        two_gateways: tuple[RunningGateway, RunningGateway], fake_rasa: FakeRasa, redis_url: str) -> None:
    a, b = two_gateways
    await fake_rasa.stop_listening()  # the assistant is away while the first message comes
    first = await post(a.url, {"sender": "shop-42", "message": "hello"})
    assert [r["text"] for r in first] == [gateway_text("holding", "en")]  # kept, not answered yet
    await fake_rasa.start_listening()
    client = redis_asyncio.from_url(redis_url)
    try:  # gateway A ran the kept message when the assistant came back; its answer waits in Redis
        async with asyncio.timeout(20):
            while not await client.exists("gateway:outbox:rest:shop-42"):
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    second = await post(b.url, {"sender": "shop-42", "message": "/ask_return_policy"})
    texts = [r.get("text") or "" for r in second]
    assert "after-sales assistant" in texts[0]  # the kept answer to "hello" first ...
    assert any(t.startswith("Our return policy:") for t in texts[1:])  # ... then this one's
    third = await post(a.url, {"sender": "shop-42", "message": "/ask_return_policy"})
    assert not any("after-sales assistant" in (r.get("text") or "") for r in third)  # handed out once


class SocketIOShopper:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.uttered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Queue[str] = asyncio.Queue()
        self.sio.on("bot_uttered", self.uttered.put)
        self.sio.on("session_confirm", self.confirmed.put)

    async def start(self, url: str, session_id: str | None = None) -> str:
        await self.sio.connect(url, socketio_path="socket.io", transports=["websocket"])
        await self.sio.emit("session_request", {"session_id": session_id})
        return await asyncio.wait_for(self.confirmed.get(), 10)


async def test_a_socketio_shopper_gets_what_the_other_gateway_sends_live_and_later(
        two_gateways: tuple[RunningGateway, RunningGateway]) -> None:
    a, b = two_gateways
    shopper = SocketIOShopper()
    session_id = await shopper.start(b.url)  # the shopper's socket is on B
    try:
        await shopper.sio.emit("user_uttered", {"message": "hello", "session_id": session_id})
        assert "after-sales assistant" in (await asyncio.wait_for(shopper.uttered.get(), 15))["text"]
        conversation_id = b.app[WEBCHAT_KEY].signer.verify(session_id)
        assert conversation_id is not None
        # An agent's message made on gateway A (the console's path: the service delivers it).
        await a.service.deliver("socketio", conversation_id, [OutboundReply(text="Agent Lin here, looking now.")])
        assert (await asyncio.wait_for(shopper.uttered.get(), 10))["text"] == "Agent Lin here, looking now."
        await shopper.sio.disconnect()

        # Nobody is attached anywhere: A's next message waits in Redis for the next session, on B.
        output = a.service.output_for("socketio")
        assert isinstance(output, SocketIOOutput)
        async with asyncio.timeout(10):
            while await output.presence.anywhere(conversation_id):
                await asyncio.sleep(0.05)
        await a.service.deliver("socketio", conversation_id, [OutboundReply(text="Your refund is approved.")])
        back = SocketIOShopper()
        assert await back.start(b.url, session_id) == session_id
        try:
            assert (await asyncio.wait_for(back.uttered.get(), 10))["text"] == "Your refund is approved."
            await asyncio.sleep(0.3)
            assert back.uttered.empty()  # once
        finally:
            await back.sio.disconnect()
    finally:
        if shopper.sio.connected:
            await shopper.sio.disconnect()
