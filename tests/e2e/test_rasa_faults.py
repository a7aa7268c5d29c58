"""Rasa going away mid-conversation: the shopper is told, nothing is lost, and the kept
messages are answered, in order, when Rasa is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rasa_runtime import RasaProcesses
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
