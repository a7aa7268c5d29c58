"""The one keep-before-acknowledge pipeline (bot/intake.py) every redelivering channel uses,
against a real Redis and against a Redis that accepts connections and never answers: a
delivery is kept once, a redelivery is a duplicate, an answered one is forgotten, and a hung
store makes the delivery "not kept" in time for the channel to refuse it (Slack retries
after 3 s), instead of holding the acknowledgement."""

from __future__ import annotations

import asyncio
import uuid
from typing import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from bot.dedupe import RedisDeduper
from bot.inbox import RedisInbox
from bot.intake import DurableIntake, NotKept
from bot.metrics import Metrics
from bot.sealing import DataKeys


@pytest.fixture
async def hung_redis() -> AsyncIterator[str]:
    """A TCP server that reads what a client sends and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


def intake_on(client: redis_asyncio.Redis, timeout: float) -> DurableIntake:
    prefix = f"test-intake-{uuid.uuid4().hex[:8]}:"
    return DurableIntake("slack", RedisDeduper(client, prefix=prefix + "dedupe:"),
                         RedisInbox(client, DataKeys.generate(), prefix=prefix + "inbox:"), Metrics(), timeout)


async def test_a_delivery_is_kept_once_and_forgotten_when_answered(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    try:
        intake = intake_on(client, 2.0)
        assert await intake.keep("Ev1", {"text": "where is my refund"}) is True
        assert await intake.keep("Ev1", {"text": "where is my refund"}) is False  # Slack's retry
        assert intake.metrics.value("messages_duplicate_total") == 1
        assert [event for event, _ in await intake.pending()] == ["Ev1"]  # a restart would answer it
        await intake.done("Ev1")
        assert await intake.pending() == []
    finally:
        await client.aclose()


async def test_a_hung_store_refuses_the_delivery_before_the_platforms_deadline(hung_redis: str) -> None:
    client = redis_asyncio.from_url(hung_redis)
    try:
        intake = intake_on(client, 0.5)
        async with asyncio.timeout(3):  # Slack's acknowledgement window: never waited out
            with pytest.raises(NotKept):
                await intake.keep("Ev2", {"text": "hello"})
            assert await intake.pending() == []  # and a replay at start does not hang either
    finally:
        await client.aclose(close_connection_pool=True)
