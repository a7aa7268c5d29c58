"""What an orchestrator and a load balancer see: `/healthz` says the process is alive,
`/readyz` says it can serve shoppers (Redis, when configured, and at least one Rasa server
with a model); with two Rasa servers, one down, it is still ready and turns go to the
other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            return resp.status, await resp.json()


async def test_ready_only_while_a_rasa_server_answers(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url))
    try:
        assert await get(f"{gateway.url}/readyz") == (200, {
            "ready": True, "draining": False, "rasa": {"ready": [fake_rasa.url], "servers": [fake_rasa.url]},
            "redis": "not configured"})
        await fake_rasa.stop_listening()
        status, body = await get(f"{gateway.url}/readyz")
        assert status == 503 and body["ready"] is False and body["rasa"]["ready"] == []
        assert (await get(f"{gateway.url}/healthz"))[0] == 200  # alive all the same: not to be restarted
        await fake_rasa.start_listening()
        assert (await get(f"{gateway.url}/readyz"))[0] == 200
    finally:
        await runner.cleanup()


async def test_not_ready_while_redis_is_down(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, fake_rasa.url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    gateway, runner = await start_gateway(settings)
    try:
        status, body = await get(f"{gateway.url}/readyz")
        assert status == 503 and body["redis"] == "down" and body["rasa"]["ready"] == [fake_rasa.url]
    finally:
        await runner.cleanup()


async def test_with_one_of_two_rasa_servers_down_turns_go_to_the_other(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    other = await FakeRasa().start()
    gateway, runner = await start_gateway(make_settings(tmp_path, f"{fake_rasa.url},{other.url}"))
    try:
        async with aiohttp.ClientSession() as http:
            async def say(sender: str) -> int:
                async with http.post(f"{gateway.url}/webhooks/rest/webhook",
                                     json={"sender": sender, "message": "hello"}) as resp:
                    assert "after-sales assistant" in (await resp.json())[0]["text"]
                    return resp.status

            for n in range(4):
                await say(f"pool-{n}")
            assert fake_rasa.calls("/webhooks/rest/webhook") and other.calls("/webhooks/rest/webhook")  # shared
            await other.stop_listening()
            before = len(fake_rasa.calls("/webhooks/rest/webhook"))
            for n in range(4, 8):
                assert await say(f"pool-{n}") == 200  # answered at once, not after a holding reply
            assert len(fake_rasa.calls("/webhooks/rest/webhook")) == before + 4
            status, body = await get(f"{gateway.url}/readyz")
            assert status == 200 and body["rasa"]["ready"] == [fake_rasa.url]
            refused = gateway.service.metrics.value("rasa_refused_total", rasa=other.url)
            assert refused == 1  # then skipped for a while, not tried for every turn
    finally:
        await runner.cleanup()
        await other.close()
