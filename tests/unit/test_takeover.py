"""Two gateways on one Redis: one is killed (-9) after acknowledging a web chat message that
Rasa ran but whose answer it never got. The survivor takes the message over once the dead
gateway's heartbeat runs out, does not run it in Rasa a second time (the tracker shows it ran),
and the shopper, reconnected to the survivor, gets the answer once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.conftest import ChatClient, free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.gateway_process import start_gateway_process, stop, wait_ready

WEBHOOK = "/webhooks/rest/webhook"


async def test_a_survivor_answers_what_a_killed_gateway_acknowledged_once(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    survivor_settings = make_settings(tmp_path / "b", fake_rasa.url, redis_url=redis_url)
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "RASA_URL": fake_rasa.url, "REDIS_URL": redis_url,
           "DATA_DIR": str(tmp_path / "a"), "GATEWAY_SECRET": survivor_settings.secret,
           "DATA_KEYS": survivor_settings.data_keys, "LOG_LEVEL": "warning"}
    doomed = start_gateway_process(env)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", doomed)
        fake_rasa.hang_next(path=WEBHOOK, after=True)  # the turn runs; its answer never comes back
        shopper = await ChatClient.connect(f"ws://127.0.0.1:{port}/webchat/ws")
        sent = await shopper.say("hello")
        assert (await shopper.next_frame("ack"))["id"] == sent
        key = f"webchat:{shopper.conversation_id}"
        async with asyncio.timeout(10):
            while not fake_rasa.user_texts(key):
                await asyncio.sleep(0.05)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        await shopper.session.close()
    finally:
        stop(doomed)

    survivor, runner = await start_gateway(survivor_settings)
    try:
        again = await ChatClient.connect(survivor.ws_url, token=shopper.token)
        assert again.conversation_id == shopper.conversation_id
        answer = await again.next_frame("reply", timeout=45)  # heartbeat (15 s) + take-over (5 s)
        assert "after-sales assistant" in answer["text"]
        await asyncio.sleep(1.0)
        assert len([f for f in again.frames if f["type"] == "reply"]) == 1  # once
        assert fake_rasa.user_texts(key) == ["hello"]  # Rasa ran it once: the survivor read the tracker
        await again.close()
    finally:
        await runner.cleanup()
