"""Redis going away mid-conversation: the shopper is told, nothing is lost, and the
message is answered when Redis is back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ChatClient, free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import team_environ


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `./aftersales test` installs it")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


async def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


async def test_redis_stopped_mid_conversation_then_started(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    port = free_port()
    redis_proc = start_redis(port, tmp_path)
    await wait_port(port)
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path),
                             redis_url=f"redis://127.0.0.1:{port}/0")
    running, runner = await start_gateway(settings)
    chat = await ChatClient.connect(running.ws_url)
    try:
        await chat.say("hello")
        assert "after-sales assistant" in (await chat.next_frame("reply"))["text"]

        redis_proc.terminate()
        redis_proc.wait(10)
        await chat.say("thanks")
        await chat.next_frame("ack")
        holding = await chat.next_frame("reply", timeout=15)
        assert holding["holding"] is True

        redis_proc = start_redis(port, tmp_path)
        await wait_port(port)
        answer = await chat.next_frame("reply", timeout=30)
        assert answer["text"].startswith("You're welcome") and answer["holding"] is False
        assert running.service.metrics.value("store_failures_total") >= 1
    finally:
        await chat.close()
        await runner.cleanup()
        redis_proc.terminate()
        redis_proc.wait(10)
