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
from bot.inbox import Liveness, RedisInbox
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


KEYS = DataKeys.generate()


def intake_on(client: redis_asyncio.Redis, timeout: float, prefix: str = "", gateway: str = "") -> DurableIntake:
    """One gateway's intake; gateways given the same `prefix` share one Redis inbox."""
    prefix = prefix or f"test-intake-{uuid.uuid4().hex[:8]}:"
    liveness = Liveness(client, gateway or uuid.uuid4().hex, ttl=1.0, prefix=prefix + "alive:")
    return DurableIntake("slack", RedisDeduper(client, prefix=prefix + "dedupe:"),
                         RedisInbox(client, KEYS, prefix=prefix + "inbox:", liveness=liveness), Metrics(), timeout)


async def test_a_delivery_is_kept_once_and_forgotten_when_answered(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    try:
        intake = intake_on(client, 2.0)
        assert await intake.keep("Ev1", {"text": "where is my refund"}) is True
        assert await intake.keep("Ev1", {"text": "where is my refund"}) is False  # Slack's retry
        assert intake.metrics.value("messages_duplicate_total") == 1
        assert await intake.take_over() == []  # being answered here
        await intake.done("Ev1")
        assert await intake.take_over() == []
    finally:
        await client.aclose()


async def test_a_hung_store_refuses_the_delivery_before_the_platforms_deadline(hung_redis: str) -> None:
    client = redis_asyncio.from_url(hung_redis)
    try:
        intake = intake_on(client, 0.5)
        async with asyncio.timeout(3):  # Slack's acknowledgement window: never waited out
            with pytest.raises(NotKept):
                await intake.keep("Ev2", {"text": "hello"})
            assert await intake.take_over() == []  # and a replay at start does not hang either
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_dead_gateways_deliveries_are_taken_over_by_one_survivor(redis_url: str) -> None:
    """Gateways share one Redis inbox: what a live gateway keeps no other answers; when it
    dies (its heartbeat runs out), exactly one survivor takes each delivery over, oldest first."""
    client = redis_asyncio.from_url(redis_url)
    prefix = f"test-intake-{uuid.uuid4().hex[:8]}:"
    keeper, first, second = (intake_on(client, 2.0, prefix) for _ in range(3))
    try:
        for gateway in (keeper, first, second):
            assert isinstance(gateway.inbox, RedisInbox)
            await gateway.inbox.liveness.start()
        for n in range(5):
            assert await keeper.keep(f"Ev{n}", {"text": f"message {n}"})
        assert await first.take_over() == [] and await second.take_over() == []  # the keeper is alive
        await keeper.inbox.liveness.stop()  # kill: its heartbeat stops (here: at once)
        taken = await asyncio.gather(first.take_over(), second.take_over())
        events = [event for batch in taken for event, _ in batch]
        assert sorted(events) == [f"Ev{n}" for n in range(5)]  # each once, none lost
        assert all([e for e, _ in batch] == sorted(e for e, _ in batch) for batch in taken)  # oldest first
        assert {r["text"] for batch in taken for _, r in batch} == {f"message {n}" for n in range(5)}
        assert await first.take_over() == [] and await second.take_over() == []  # theirs now, both alive
    finally:
        for gateway in (first, second):
            assert isinstance(gateway.inbox, RedisInbox)
            await gateway.inbox.liveness.stop()
        await client.aclose()


async def test_a_restart_under_the_same_gateway_id_takes_its_own_back_at_once(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    prefix = f"test-intake-{uuid.uuid4().hex[:8]}:"
    try:
        before = intake_on(client, 2.0, prefix, gateway="gateway-1")
        assert isinstance(before.inbox, RedisInbox)
        await before.inbox.liveness.start()
        assert await before.keep("Ev1", {"text": "where is my refund"})
        # kill -9: the heartbeat is still there for a while, but this is the same gateway again
        after = intake_on(client, 2.0, prefix, gateway="gateway-1")
        assert [e for e, _ in await after.take_over()] == ["Ev1"]
        assert await intake_on(client, 2.0, prefix).take_over() == []  # a third gateway: not its to take
        await before.inbox.liveness.stop()
    finally:
        await client.aclose()
