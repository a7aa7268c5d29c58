"""Rasa going away mid-conversation: the shopper is told, nothing is lost, and the kept
messages are answered, in order, when Rasa is back."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from flows.cases import CaseStore, console_cases
from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient, free_port, make_settings, start_gateway

pytestmark = pytest.mark.e2e


async def test_rasa_stopped_mid_conversation_then_started(rasa_stack: RasaProcesses,
                                                          rasa_install: tuple[Path, Path], tmp_path: Path) -> None:
    venv, model = rasa_install
    own = RasaProcesses(venv=venv, model=model, rasa_port=free_port(), actions_port=rasa_stack.actions_port,
                        log_dir=tmp_path / "logs")
    own.start_server()
    running, runner = await start_gateway(make_settings(tmp_path, own.rasa_url))
    try:
        await asyncio.to_thread(own.wait_ready, 180)
        chat = await ChatClient.connect(running.ws_url)
        await chat.say("hello")
        assert "after-sales assistant" in (await chat.next_frame("reply"))["text"]

        own.stop_server()
        thanks_id = await chat.say("thanks")
        assert (await chat.next_frame("ack"))["id"] == thanks_id
        holding = await chat.next_frame("reply", timeout=10)
        assert holding["holding"] is True and "saved" in holding["text"]
        await chat.say("are you a bot?")
        await chat.next_frame("ack")

        own.start_server()
        first = await chat.next_frame("reply", timeout=180)
        second = await chat.next_frame("reply", timeout=30)
        assert first["text"].startswith("You're welcome") and first["holding"] is False
        assert "a bot" in second["text"]
        metrics = running.service.metrics
        assert metrics.value("holding_replies_total") == 1
        assert metrics.value("rasa_failures_total") >= 1
        assert running.service.total_pending == 0
        await chat.close()
    finally:
        await runner.cleanup()
        own.stop()


async def test_rest_caller_gets_a_holding_reply_then_the_answer_on_the_next_call(
        tmp_path: Path, rasa_stack: RasaProcesses) -> None:
    from tests.e2e.test_rasa_contracts import post

    dead_port = free_port()
    running, runner = await start_gateway(make_settings(tmp_path, f"http://127.0.0.1:{dead_port}"))
    try:
        url = running.url + "/webhooks/rest/webhook"
        status, replies = await post(url, {"sender": "r-1", "message": "thanks"})
        assert status == 200 and "saved" in replies[0]["text"]
        assert running.service.pending("rest:r-1") == 1  # kept, not dropped
    finally:
        await runner.cleanup()


class DroppingProxy:
    """A real HTTP proxy in front of Rasa that, once, lets Rasa run a turn to the end and then
    drops the connection before the answer reaches the gateway (a timeout or a network cut
    in the middle of a turn)."""

    def __init__(self, upstream: str, drop_message: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.drop_message = drop_message
        self.dropped = 0
        self.turns_sent: list[str] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "DroppingProxy":
        app = web.Application(client_max_size=1024 ** 2)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.http = aiohttp.ClientSession()
        return self

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.http is not None
        body = await request.read()
        async with self.http.request(request.method, self.upstream + request.path_qs, data=body,
                                     headers={"Content-Type": request.content_type}) as upstream:
            answer = await upstream.read()
            status = upstream.status
        if request.method == "POST" and request.path == "/webhooks/rest/webhook":
            message = json.loads(body).get("message")
            self.turns_sent.append(message)
            if message == self.drop_message and not self.dropped:
                self.dropped += 1
                assert request.transport is not None
                request.transport.abort()  # Rasa has run the turn; the gateway never hears of it
                return web.Response(status=204)
        return web.Response(body=answer, status=status, content_type="application/json")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()


async def test_a_turn_whose_answer_was_lost_is_not_run_twice(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    """The exchange is booked in the turn whose answer is lost. The retry must not book it
    again: the shopper gets one confirmation, Rasa ran the turn once, one case exists."""
    proxy = await DroppingProxy(rasa_stack.rasa_url, drop_message="44").start()
    running, runner = await start_gateway(make_settings(tmp_path, proxy.url))
    chat = await ChatClient.connect(running.ws_url)
    try:
        for text in ("I want to return my order", "AS10001", "it ends in 5821", "they're too small",
                     "actually I want an exchange"):
            await chat.say(text)
            await chat.replies_until_quiet()
        await chat.say("44")
        replies = await chat.replies_until_quiet(first_timeout=30, quiet=2.0)
        confirmations = [r for r in replies if re.search(r"\bEX-\d{6}\b", r.get("text") or "")]
        assert proxy.dropped == 1 and len(confirmations) == 1, replies
        assert proxy.turns_sent.count("44") == 1  # the retry read the tracker instead of resending
        key = f"webchat:{chat.conversation_id}"
        exchanges = [c for c in await console_cases()(key) if c["kind"] == "exchange"]
        assert len(exchanges) == 1 and exchanges[0]["id"] in confirmations[0]["text"]
    finally:
        await chat.close()
        await runner.cleanup()
        await proxy.close()


def test_the_action_server_makes_one_case_per_shopper_message(tmp_path: Path) -> None:
    """Even if a turn does reach Rasa twice, the case store gives back the first case."""
    store = CaseStore(tmp_path / "cases.sqlite3")
    first = store.create_sync("exchange", ["submitted"], conversation_id="webchat:a", turn_id="m-1")
    again = store.create_sync("exchange", ["submitted"], conversation_id="webchat:a", turn_id="m-1")
    other = store.create_sync("exchange", ["submitted"], conversation_id="webchat:a", turn_id="m-2")
    assert again.id == first.id and other.id != first.id
    assert len(store._query("conversation_id = ?", ("webchat:a",), 10)) == 2
