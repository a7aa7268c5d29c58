"""`RedisBatch` (bot/redis_batch.py): commands given together leave in one pipeline, run in
the order given, and each caller gets its own answer or its own error."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis_asyncio
from redis import exceptions as redis_errors

from bot.redis_batch import RedisBatch


async def test_commands_given_together_share_one_pipeline_in_order(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    batch = RedisBatch.of(client)
    assert RedisBatch.of(client) is batch
    key = f"test-batch:{uuid.uuid4().hex}"
    pipelines = 0
    real_pipeline = client.pipeline

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kwargs)

    client.pipeline = counting  # type: ignore[method-assign]
    try:
        answers = await asyncio.gather(*(batch.eval("return redis.call('RPUSH', KEYS[1], ARGV[1])", 1, key, str(n))
                                         for n in range(20)), batch.hgetall(key + ":none"))
        assert answers == [*range(1, 21), {}]
        assert pipelines == 1
        assert [int(v) for v in await client.lrange(key, 0, -1)] == list(range(20))
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_refused_command_fails_alone(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    batch = RedisBatch.of(client)
    try:
        good, bad = await asyncio.gather(batch.eval("return 7", 0), batch.eval("return redis.call('NOPE')", 0),
                                         return_exceptions=True)
        assert good == 7
        assert isinstance(bad, redis_errors.ResponseError)
    finally:
        await client.aclose()


async def test_no_redis_fails_every_command_with_the_clients_error() -> None:
    client = redis_asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    batch = RedisBatch.of(client)
    try:
        for outcome in await asyncio.gather(batch.publish("x", "1"), batch.hgetall("y"), return_exceptions=True):
            assert isinstance(outcome, redis_errors.ConnectionError)
        with pytest.raises(redis_errors.ConnectionError):
            await batch.publish("x", "2")  # and the next ones, once it is still away
    finally:
        await client.aclose()


async def test_scripts_still_run_after_redis_forgot_them(redis_url: str) -> None:
    """Scripts go as EVALSHA once Redis has them; a Redis restarted (or flushed) without them
    gets the script again and the caller its answer, in the order of its own calls."""
    client = redis_asyncio.from_url(redis_url)
    batch = RedisBatch.of(client)
    key = f"test-batch:{uuid.uuid4().hex}"
    script = f"-- {key}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])"
    try:
        assert await batch.eval(script, 1, key, "first") == 1  # EVAL: Redis now holds it
        assert await batch.eval(script, 1, key, "second") == 2  # EVALSHA
        await client.script_flush()  # what a Redis restart without persistence does to scripts
        answers = await asyncio.gather(*(batch.eval(script, 1, key, str(n)) for n in range(3)))
        assert answers == [3, 4, 5]
        assert [v.decode() for v in await client.lrange(key, 0, -1)] == ["first", "second", "0", "1", "2"]
    finally:
        await client.delete(key)
        await client.aclose()
