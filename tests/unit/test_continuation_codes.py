"""Continuation codes (bot/continuation.py): made of letters and digits a shopper cannot
misread, used once, and no longer valid once their time is over, in memory and in Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis_asyncio

from bot.continuation import CODE_ALPHABET, CODE_LENGTH, Continuations, MemoryCodeStore, RedisCodeStore


@pytest.mark.parametrize("with_redis", [False, True])
async def test_a_code_is_single_use_and_expires(with_redis: bool, redis_url: str) -> None:
    client = redis_asyncio.Redis.from_url(redis_url) if with_redis else None
    try:
        store = RedisCodeStore(client) if client is not None else MemoryCodeStore()
        continuations = Continuations(store)
        code = await continuations.issue("webchat:abc")
        assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
        assert not set(code) & set("0O1IL")
        assert await store.take(code) == "webchat:abc"
        assert await store.take(code) is None  # used once
        assert await store.put("SHORTLIV", "webchat:abc", 1)
        await asyncio.sleep(1.2)
        assert await store.take("SHORTLIV") is None  # expired
        await store.set_trail("telegram:1", ["webchat:abc"])
        assert await continuations.trail("telegram:1") == ["webchat:abc"]
    finally:
        if client is not None:
            await client.aclose()
