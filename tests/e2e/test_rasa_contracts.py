"""Tools and widgets written for Rasa work unchanged against the gateway: the REST channel
contract and the socket.io channel contract (as rasa-webchat speaks it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from gateway.rasa_runtime import RasaProcesses
from tests.conftest import RunningGateway, make_settings, start_gateway

pytestmark = pytest.mark.e2e


async def post(url: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, **kwargs) as resp:
            return resp.status, await resp.json()


async def test_rest_contract_matches_what_rasa_itself_answers(gateway: RunningGateway,
                                                              rasa_stack: RasaProcesses) -> None:
    status, via_gateway = await post(gateway.url + "/webhooks/rest/webhook", {"sender": "s-1", "message": "hello"})
    assert status == 200
    _, direct = await post(rasa_stack.rasa_url + "/webhooks/rest/webhook", {"sender": "d-1", "message": "hello"})
    assert [set(r) for r in via_gateway] == [set(r) for r in direct]
    assert via_gateway[0]["recipient_id"] == "s-1"
    assert via_gateway[0]["text"] == direct[0]["text"]
    assert via_gateway[0]["buttons"] == direct[0]["buttons"]


async def test_rest_health_and_button_payloads(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/webhooks/rest/") as resp:
            assert await resp.json() == {"status": "ok"}
    status, replies = await post(gateway.url + "/webhooks/rest/webhook",
                                 {"sender": "s-2", "message": "/ask_return_policy"})
    assert status == 200 and replies[0]["text"].startswith("Our return policy:")


@pytest.mark.parametrize("body, status, code", [
    ("not json", 400, "invalid_json"),
    (["a"], 400, "invalid_body"),
    ({"message": "hi"}, 400, "invalid_sender"),
    ({"sender": "s", "message": ""}, 400, "empty_text"),
    ({"sender": "s", "message": 3}, 400, "empty_text"),
    ({"sender": "s", "message": "x" * 4001}, 413, "text_too_long"),
])
async def test_rest_bad_input_gets_a_clear_error(gateway: RunningGateway, body: Any, status: int, code: str) -> None:
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
        async with session.post(gateway.url + "/webhooks/rest/webhook", **kwargs) as resp:
            assert resp.status == status
            assert (await resp.json())["error"] == code
    assert gateway.service.metrics.value("messages_received_total") == 0


async def test_rest_token_when_configured(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    running, runner = await start_gateway(make_settings(tmp_path, rasa_stack.rasa_url, rest_auth_token="s3cret"))
    try:
        url = running.url + "/webhooks/rest/webhook"
        status, body = await post(url, {"sender": "a", "message": "hello"})
        assert status == 401 and body["error"] == "unauthorized"
        status, body = await post(url, {"sender": "a", "message": "hello"}, headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and body[0]["text"]
    finally:
        await runner.cleanup()


async def test_rest_message_id_makes_retries_safe(gateway: RunningGateway) -> None:
    url = gateway.url + "/webhooks/rest/webhook"
    first = await post(url, {"sender": "s-3", "message": "thanks", "message_id": "abc"})
    again = await post(url, {"sender": "s-3", "message": "thanks", "message_id": "abc"})
    assert first == again
    assert gateway.service.metrics.value("messages_received_total") == 1


class SocketIOShopper:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.uttered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Queue[str] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sio.on("bot_uttered", self.uttered.put)
        self.sio.on("session_confirm", self.confirmed.put)
        self.sio.on("error", self.errors.put)

    async def start(self, url: str, session_id: str | None = None) -> str:
        await self.sio.connect(url, socketio_path="socket.io", transports=["websocket"])
        await self.sio.emit("session_request", {"session_id": session_id})
        return await asyncio.wait_for(self.confirmed.get(), 10)


async def test_socketio_contract_as_rasa_webchat_speaks_it(gateway: RunningGateway) -> None:
    shopper = SocketIOShopper()
    try:
        session_id = await shopper.start(gateway.url)
        await shopper.sio.emit("user_uttered", {"message": "hello", "session_id": session_id})
        uttered = await asyncio.wait_for(shopper.uttered.get(), 30)
        assert "after-sales assistant" in uttered["text"]
        # rasa-webchat declared no language and "hello" says none: greeted in both languages
        assert "after-sales assistant" in uttered["text"] and "售后助手" in uttered["text"]
        assert uttered["quick_replies"][0] == {"content_type": "text", "title": "退货退款 · Return / refund",
                                               "payload": "/request_return"}
        await shopper.sio.emit("user_uttered", {"message": "/ask_return_policy", "session_id": session_id})
        assert (await asyncio.wait_for(shopper.uttered.get(), 30))["text"].startswith("Our return policy:")
        await shopper.sio.emit("user_uttered", {"message": "x" * 4001, "session_id": session_id})
        assert (await asyncio.wait_for(shopper.errors.get(), 10))["code"] == "text_too_long"
    finally:
        await shopper.sio.disconnect()


async def test_socketio_session_resumes_but_a_forged_id_does_not(gateway: RunningGateway) -> None:
    first = SocketIOShopper()
    session_id = await first.start(gateway.url)
    await first.sio.disconnect()

    again = SocketIOShopper()
    try:
        assert await again.start(gateway.url, session_id) == session_id
    finally:
        await again.sio.disconnect()

    forger = SocketIOShopper()
    try:
        guessed = session_id.split(".")[0] + ".forged"
        assert await forger.start(gateway.url, guessed) not in (session_id, guessed)
    finally:
        await forger.sio.disconnect()
