"""Replies kept for REST and socket.io clients that are away: bounded per key, by keys and by
age, in this process or in Redis (where a Redis that is away does not lose them)."""

from __future__ import annotations

import os

import redis.asyncio as redis_asyncio

from bot.outbox import MemoryOutbox, RedisOutbox
from bot.sealing import DataKeys
from tests.conftest import free_port


async def test_a_client_gone_for_good_costs_nothing_for_ever() -> None:
    now = [0.0]
    box = MemoryOutbox(per_key=3, max_keys=100, max_age=60, clock=lambda: now[0])
    for n in range(5):
        await box.put("a", {"text": f"reply {n}"})
    assert await box.take("a") == [{"text": "reply 2"}, {"text": "reply 3"}, {"text": "reply 4"}]  # newest
    assert await box.take("a") == []  # taken once
    for n in range(1000):
        await box.put(f"sender-{n}", {"text": "hello"})
    assert len(box) == 100  # the least recently used senders went first
    await box.put("late", {"text": "old news"})
    now[0] += 61
    await box.put("fresh", {"text": "new"})
    assert await box.take("late") == [] and len(box) == 1  # an hour-old reply is not delivered, nor kept
    assert await box.take("fresh") == [{"text": "new"}]


async def test_in_redis_the_same_bounds_hold_and_what_is_kept_is_sealed(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    now = [1000.0]
    keys = DataKeys.parse(os.environ["DATA_KEYS"])
    box = RedisOutbox(client, keys, "rest", per_key=3, max_age=60, clock=lambda: now[0])
    try:
        for n in range(5):
            await box.put("s-1", {"text": f"退款 {n}"})
        raw = b"".join(await client.lrange("gateway:outbox:rest:s-1", 0, -1))
        assert "退款".encode() not in raw and b"reply" not in raw  # sealed at rest
        assert 0 < await client.ttl("gateway:outbox:rest:s-1") <= 60  # gone for good costs nothing
        assert await box.take("s-1") == [{"text": f"退款 {n}"} for n in (2, 3, 4)]
        assert await box.take("s-1") == []
        await box.put("s-2", {"text": "old news"})
        now[0] += 61
        assert await box.take("s-2") == []
    finally:
        await client.aclose()


async def test_while_redis_is_away_a_reply_is_kept_here_and_handed_out() -> None:
    away = redis_asyncio.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5)
    box = RedisOutbox(away, DataKeys.parse(os.environ["DATA_KEYS"]), "socketio")
    try:
        await box.put("c-1", {"text": "your refund is approved"})
        assert await box.take("c-1") == [{"text": "your refund is approved"}]
        assert await box.take("c-1") == []
    finally:
        await away.aclose()
