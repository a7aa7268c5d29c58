"""SIGTERM stops a gateway gracefully, as an orchestrator or the cluster's load balancer
needs: /readyz turns 503 at once, a message already accepted is still answered, a new one is
not acknowledged but the socket is closed with a reconnect hint (so the client resends it to
another gateway), and the process then exits cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp

from tests.conftest import ChatClient, free_port
from tests.fake_rasa import FakeRasa
from tests.gateway_process import start_gateway_process, stop, wait_ready


async def test_sigterm_answers_what_was_accepted_then_sends_shoppers_elsewhere(
        fake_rasa: FakeRasa, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "RASA_URL": fake_rasa.url, "DATA_DIR": str(tmp_path / "data"),
           "REDIS_URL": "", "LOG_LEVEL": "info", "DRAIN_SECONDS": "10"}
    output = (tmp_path / "gateway.log").open("wb")
    proc = start_gateway_process(env, output)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, proc)
        async with aiohttp.ClientSession() as http:
            chat = await ChatClient.connect(f"ws://127.0.0.1:{port}/webchat/ws")
            fake_rasa.delay_next(2.0, path="/webhooks/rest/webhook")  # Rasa is slow on this turn
            accepted = await chat.say("hello")
            assert (await chat.next_frame("ack"))["id"] == accepted
            async with asyncio.timeout(10):  # the turn is with Rasa
                while not fake_rasa.calls("/webhooks/rest/webhook"):
                    await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)

            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503 and (await resp.json())["draining"] is True
            async with http.post(f"{base}/webhooks/rest/webhook", json={"sender": "late", "message": "hi"}) as resp:
                assert resp.status == 503 and (await resp.json())["error"] == "draining"

            late = await chat.say("are you there?")  # arrives while draining: not acknowledged
            frames = []
            ended: tuple[object, ...] = ()
            while True:
                msg = await asyncio.wait_for(chat.ws.receive(), 15)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    ended = (msg.type, msg.data, msg.extra)
                    break
                frames.append(json.loads(msg.data))
            answered = [f for f in frames if f["type"] == "reply" and not f.get("holding")]
            assert answered and "after-sales assistant" in answered[0]["text"]  # the accepted one is answered
            assert not [f for f in frames if f["type"] == "ack" and f["id"] == late]
            said = (tmp_path / "gateway.log").read_text(errors="replace")
            # The close frame the client got: 1012 "service restart", reconnect.
            assert ended[0] == aiohttp.WSMsgType.CLOSE and ended[1] == 1012, (ended, said)
            await chat.session.close()
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
        output.close()
