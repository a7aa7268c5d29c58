"""A gateway killed (SIGKILL, no shutdown) with an acknowledged web chat message not yet
answered: with Redis, the message and the history survive, and the answer is there when
the shopper comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from gateway.rasa_runtime import REPO_ROOT, RasaProcesses
from tests.conftest import ChatClient, free_port

pytestmark = pytest.mark.e2e


def _start(port: int, rasa_url: str, redis_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEWAY_PORT": str(port), "RASA_URL": rasa_url, "REDIS_URL": redis_url,
           "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning", "HOLDING_AFTER_SECONDS": "0.5",
           "RASA_RETRY_MAX_SECONDS": "1"}
    env.pop("RASA_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "gateway", "gateway"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


async def _healthy(port: int, proc: subprocess.Popen[bytes], rasa_up: bool) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the gateway exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200 and (not rasa_up or (await resp.json())["rasa"] == "up"):
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the gateway did not come up"
            await asyncio.sleep(0.3)


async def test_with_redis_an_acknowledged_message_survives_a_crash(rasa_stack: RasaProcesses, tmp_path: Path,
                                                                   redis_url: str) -> None:
    base, _, number = redis_url.rpartition("/")  # a database of its own (tests/conftest.py `redis_url`): nothing else replays here
    own_db = f"{base}/{(int(number) - 2) % 16}"
    redis.Redis.from_url(own_db).flushdb()
    data_dir = tmp_path / "data"
    port = free_port()
    first = _start(port, f"http://127.0.0.1:{free_port()}", own_db, data_dir)  # Rasa unreachable
    second: subprocess.Popen[bytes] | None = None
    try:
        await _healthy(port, first, rasa_up=False)
        ws_url = f"ws://127.0.0.1:{port}/webchat/ws"
        chat = await ChatClient.connect(ws_url)
        sent = await chat.say("I want to return my order")
        assert (await chat.next_frame("ack"))["id"] == sent
        assert (await chat.next_frame("reply", timeout=10))["holding"] is True  # kept, the shopper is told
        token = chat.token
        await chat.close()
        os.killpg(first.pid, signal.SIGKILL)  # no shutdown, nothing flushed at exit
        first.wait(timeout=10)

        second = _start(port, rasa_stack.rasa_url, own_db, data_dir)  # back, with Rasa
        await _healthy(port, second, rasa_up=True)
        back = await ChatClient.connect(ws_url, token=token)
        history = (await back.next_frame("history"))["messages"]
        shopper = [m for m in history if m["role"] == "shopper"]
        assert [m["text"] for m in shopper] == ["I want to return my order"]  # the history survived, once
        answers: list[dict[str, Any]] = [m for m in history if m["role"] == "bot"]
        if not answers:  # not answered yet when we came back: it arrives live
            answers = [await back.next_frame("reply", timeout=60)]
        assert "order" in answers[0]["text"].lower()  # the kept message was answered after the restart
        await back.close()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
