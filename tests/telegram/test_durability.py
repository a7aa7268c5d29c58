"""With Redis: an update acknowledged to Telegram is answered even if the gateway stops before
answering it, and a redelivery after a restart is still recognised. Without a working Redis,
updates are refused (Telegram keeps them) rather than acknowledged and lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as redis_asyncio

from tests.conftest import free_port
from tests.fake_rasa import FakeRasa
from tests.telegram.conftest import new_chat_id, telegram_gateway
from tests.telegram.fake_bot_api import FakeBotAPI


def unreachable_rasa() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def kept_updates(redis_url: str, fake: FakeBotAPI) -> list[str]:
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        keys = await client.hkeys("gateway:inbox:telegram")
    finally:
        await client.aclose()
    return [k.decode() for k in keys if k.decode().startswith(f"{fake.bot_id}:")]


async def eventually_empty(redis_url: str, fake: FakeBotAPI, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while await kept_updates(redis_url, fake):
            await asyncio.sleep(0.05)


async def test_webhook_update_acknowledged_before_a_restart_is_answered_after_it(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI, redis_url: str) -> None:
    chat_id = new_chat_id()
    update = fake.text_update(chat_id, "hello")
    async with telegram_gateway(tmp_path, unreachable_rasa(), fake, redis_url=redis_url) as first:
        assert await fake.deliver(update) == 200
        [holding] = await fake.wait_sent(chat_id)  # Rasa is down: the shopper is told to wait
        assert "saved" in holding.params["text"]
        await first.stop()  # the process goes away before the answer
    assert await kept_updates(redis_url, fake) == [f"{fake.bot_id}:{update['update_id']}"]

    async with telegram_gateway(tmp_path, fake_rasa.url, fake, redis_url=redis_url) as second:
        replies = await fake.wait_sent(chat_id, 2)
        assert "after-sales assistant" in replies[1].params["text"]
        await eventually_empty(redis_url, fake)  # answered: no longer kept
        # Telegram delivers the same update again (it never saw our 200, say): not answered twice.
        assert await fake.deliver(update) == 200
        await second.settled()
        assert len(fake.sent(chat_id)) == 2


async def test_polled_update_confirmed_before_a_restart_is_answered_after_it(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI, redis_url: str) -> None:
    chat_id = new_chat_id()
    update = fake.queue_update(fake.text_update(chat_id, "hello"))
    async with telegram_gateway(tmp_path, unreachable_rasa(), fake, mode="polling", redis_url=redis_url) as first:
        await fake.wait_until(lambda: not fake.pending_updates())  # confirmed to Telegram
        await first.stop()
    assert not fake.pending_updates()  # Telegram will not send it again: only the gateway has it

    async with telegram_gateway(tmp_path, fake_rasa.url, fake, mode="polling", redis_url=redis_url) as second:
        await fake.wait_until(lambda: any("after-sales assistant" in t for t in fake.texts(chat_id)))
        fake.queue_update(dict(update))  # served again anyway: still answered once
        await fake.wait_until(lambda: not fake.pending_updates())
        await second.settled()
        assert sum("after-sales assistant" in t for t in fake.texts(chat_id)) == 1


async def test_without_a_working_redis_updates_are_refused_not_lost(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI) -> None:
    chat_id = new_chat_id()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with telegram_gateway(tmp_path, fake_rasa.url, fake, redis_url=dead_redis) as tg:
        assert await fake.deliver(fake.text_update(chat_id, "hello")) == 503  # Telegram retries later
        await tg.settled()
        assert fake.sent(chat_id, ok_only=False) == []
