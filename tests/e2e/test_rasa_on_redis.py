"""Rasa on Redis (REDIS_URL): the Rasa server keeps its trackers (sealed) and locks in Redis,
so restarting it loses no conversation: a return form carries on at the question it had
reached, a conversation handed to a person stays paused, and nothing the shopper said is
readable in Redis. The shopper's export and erase reach Rasa's tracker too."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from gateway.rasa_runtime import RasaProcesses, tracker_name
from tests.conftest import free_port, make_settings, running, start_gateway
from tests.e2e.test_data_protection import cli

pytestmark = pytest.mark.e2e


@pytest.fixture
async def rasa_on_redis(rasa_install: tuple[Path, Path], tmp_path: Path,
                        redis_url: str) -> AsyncIterator[RasaProcesses]:
    venv, model = rasa_install
    with running(RasaProcesses(venv=venv, model=model, rasa_port=free_port(), actions_port=free_port(),
                               log_dir=tmp_path / "rasa-logs", redis_url=redis_url,
                               data_keys=make_settings(tmp_path, "").data_keys)) as procs:  # the default key prefix
        yield procs


async def test_a_rasa_restart_keeps_forms_pauses_and_seals_what_was_said(
        rasa_on_redis: RasaProcesses, tmp_path: Path, redis_url: str) -> None:
    gateway, runner = await start_gateway(make_settings(tmp_path, rasa_on_redis.rasa_url, redis_url=redis_url))
    shopper, handed_off = f"redis-{uuid.uuid4().hex[:8]}", f"paused-{uuid.uuid4().hex[:8]}"
    try:
        async with aiohttp.ClientSession() as http:
            async def say(sender: str, text: str) -> str:
                async with http.post(f"{gateway.url}/webhooks/rest/webhook",
                                     json={"sender": sender, "message": text}) as resp:
                    assert resp.status == 200
                    replies: list[dict[str, Any]] = await resp.json()
                    return " ".join(r.get("text") or "" for r in replies)

            assert "last 4 digits" in await say(shopper, "I want to return my order AS10001, it has a cigarette smell")
            assert "reason" in await say(shopper, "5821")
            await say(handed_off, "hello")
            await gateway.service.set_bot_paused(f"rest:{handed_off}", True, at=time.time())

            rasa_on_redis.stop_server()  # the Rasa server's memory is gone
            rasa_on_redis.start_server()
            rasa_on_redis.wait_ready(timeout=240)

            # The form goes on at its next question: neither the order nor the proof is asked again.
            answer = await say(shopper, "I changed my mind")
            assert "unworn" in answer and "last 4 digits" not in answer and "which order" not in answer.lower()
            assert await gateway.service.bot_paused(f"rest:{handed_off}")

        client = redis_asyncio.from_url(redis_url)
        try:
            raw = await client.get(tracker_name(f"rest:{shopper}"))
            assert raw and b"cigarette" not in raw and b"5821" not in raw and b"AS10001" not in raw

            env = {"DATA_DIR": str(gateway.settings.data_dir), "DATA_KEYS": gateway.settings.data_keys,
                   "REDIS_URL": redis_url, "GATEWAY_SECRET": gateway.settings.secret}
            done = cli("shopper", "export", f"rest:{shopper}", "--out", str(tmp_path / "export"), env=env)
            assert done.returncode == 0, done.stderr
            document = json.loads((tmp_path / "export" / "shopper.json").read_text(encoding="utf-8"))
            events = document["rasa_trackers"][f"rest:{shopper}"]["events"]
            assert "5821" in [e.get("text") for e in events if e.get("event") == "user"]
            erased = cli("shopper", "erase", f"rest:{shopper}", "--yes", env=env)
            assert erased.returncode == 0 and "Rasa's tracker deleted" in erased.stdout, erased.stderr
            assert await client.get(tracker_name(f"rest:{shopper}")) is None
        finally:
            await client.aclose()
    finally:
        await runner.cleanup()

