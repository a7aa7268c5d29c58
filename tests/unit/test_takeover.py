"""Two gateways on one Redis: one is killed (-9) after acknowledging a web chat message that
Rasa ran but whose answer it never got. The survivor takes the message over once the dead
gateway's heartbeat runs out, does not run it in Rasa a second time (the tracker shows it ran),
and the shopper, reconnected to the survivor, gets the answer once.

The heartbeat's run-out is fast-forwarded: the test checks that the dead gateway's key is set
to expire within the heartbeat's 15 s, then lets it expire now instead of waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import redis.asyncio as redis_asyncio

from bot.config import Settings
from tests.conftest import ChatClient, free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.gateway_process import start_gateway_process, stop, wait_ready

WEBHOOK = "/webhooks/rest/webhook"


def two_gateways(fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> tuple[Settings, int, str, dict[str, str]]:
    """The survivor's settings (take-over every 0.5 s), and the port, id and environment of a
    gateway process on the same Redis and keys that the test will kill."""
    survivor_settings = make_settings(tmp_path / "b", fake_rasa.url, redis_url=redis_url, takeover_seconds=0.5)
    port = free_port()
    doomed_id = f"doomed-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "GATEWAY_PORT": str(port), "RASA_URL": fake_rasa.url, "REDIS_URL": redis_url,
           "DATA_DIR": str(tmp_path / "a"), "GATEWAY_SECRET": survivor_settings.secret,
           "DATA_KEYS": survivor_settings.data_keys, "LOG_LEVEL": "warning", "GATEWAY_ID": doomed_id}
    return survivor_settings, port, doomed_id, env


async def test_a_survivor_answers_what_a_killed_gateway_acknowledged_once(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    survivor_settings, port, doomed_id, env = two_gateways(fake_rasa, tmp_path, redis_url)
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
        heartbeat = f"gateway:alive:{doomed_id}"  # bot/inbox.py Liveness
        store = redis_asyncio.Redis.from_url(redis_url)
        try:
            left = await store.pttl(heartbeat)
            assert 0 < left <= 15_000, left  # the dead gateway's heartbeat runs out on its own ...
            await store.pexpire(heartbeat, 1)  # ... and here it runs out now
        finally:
            await store.aclose()
        answer = await again.next_frame("reply", timeout=15)  # the next take-over (every 0.5 s here)
        assert "after-sales assistant" in answer["text"]
        await again.unread_replies(survivor)  # the survivor finished what it took over
        assert len([f for f in again.frames if f["type"] == "reply"]) == 1  # once
        assert fake_rasa.user_texts(key) == ["hello"]  # Rasa ran it once: the survivor read the tracker
        await again.close()
    finally:
        await runner.cleanup()


async def test_a_taken_over_message_shows_once_in_the_history_the_dead_gateway_wrote(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    """The survivor was running before the shopper wrote (so its own copy of the history is
    empty); the killed gateway had written the shopper's line to the shared history; the
    survivor takes the message over before the shopper comes back: the shopper's line is
    there once, followed by the answer."""
    survivor_settings, port, doomed_id, env = two_gateways(fake_rasa, tmp_path, redis_url)
    survivor, runner = await start_gateway(survivor_settings)
    doomed = start_gateway_process(env)
    store = redis_asyncio.Redis.from_url(redis_url)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", doomed)
        fake_rasa.hang_next(path=WEBHOOK, after=True)
        shopper = await ChatClient.connect(f"ws://127.0.0.1:{port}/webchat/ws")
        sent = await shopper.say("hello")
        assert (await shopper.next_frame("ack"))["id"] == sent
        key = f"webchat:{shopper.conversation_id}"
        async with asyncio.timeout(10):
            while not fake_rasa.user_texts(key) or not await store.llen(f"gateway:transcript:{key}"):
                await asyncio.sleep(0.05)  # Rasa ran it, and the shopper's line is in the shared history
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        await shopper.session.close()
    except BaseException:
        await store.aclose()
        await runner.cleanup()
        raise
    finally:
        stop(doomed)

    try:
        await store.pexpire(f"gateway:alive:{doomed_id}", 1)
        async with asyncio.timeout(15):  # taken over and answered, with nobody connected
            while await store.llen(f"gateway:transcript:{key}") < 2:
                await asyncio.sleep(0.05)
        again = await ChatClient.connect(survivor.ws_url, token=shopper.token)
        history = await again.next_frame("history")
        said = [(m["role"], m.get("text")) for m in history["messages"]]
        assert [text for role, text in said if role == "shopper"] == ["hello"], said
        assert "after-sales assistant" in said[-1][1], said
        await again.close()
    finally:
        await store.aclose()
        await runner.cleanup()
