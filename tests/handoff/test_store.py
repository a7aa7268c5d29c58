"""The handoff store's guarantees, for both implementations against real backends."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from bot.sealing import DataKeys
from handoff.store import (
    FINISHED_RETENTION_SECONDS,
    MAX_LOG_ENTRIES,
    Handoff,
    HandoffStore,
    LogEntry,
    MemoryHandoffStore,
    RedisHandoffStore,
)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[HandoffStore]:
    if request.param == "memory":
        yield MemoryHandoffStore()
        return
    client = redis_asyncio.from_url(redis_url)
    yield RedisHandoffStore(client, DataKeys.generate(), prefix=f"test:{time.time_ns()}:")
    await client.aclose()


def new(key: str, created: float = 1.0) -> Handoff:
    return Handoff(key=key, channel="webchat", conversation_id=key, reason="shopper_request", language="en",
                   created_at=created, first_response_due=created + 1800)


async def test_fifty_concurrent_claims_one_winner(store: HandoffStore) -> None:
    await store.create(new("c1"))
    results = await asyncio.gather(*(store.claim("c1", f"agent{i}") for i in range(50)))
    winners = [agent for won, agent in results if won]
    assert len(winners) == 1
    assert {holder for _, holder in results} == {winners[0]}
    record = await store.get("c1")
    assert record is not None and (record.status, record.agent) == ("assigned", winners[0])


async def test_one_active_handoff_per_conversation_and_queue_order(store: HandoffStore) -> None:
    first = await store.create(new("b", created=2.0))
    again = await store.create(new("b", created=5.0))
    assert again.created_at == first.created_at == 2.0
    await store.create(new("a", created=1.0))
    assert [h.key for h in await store.active()] == ["a", "b"]
    assert await store.finish("a", "resolved", outcome="resolved")
    assert not await store.finish("a", "resolved")
    assert [h.key for h in await store.active()] == ["b"]
    reopened = await store.create(new("a", created=9.0))
    assert reopened.created_at == 9.0 and reopened.status == "queued"


async def test_transfer_only_by_the_assignee(store: HandoffStore) -> None:
    await store.create(new("t"))
    await store.claim("t", "alice")
    assert not await store.transfer("t", "bob", "carol")
    assert await store.transfer("t", "alice", "bob")
    record = await store.get("t")
    assert record is not None and record.agent == "bob"


async def test_log_keeps_order_and_unicode(store: HandoffStore) -> None:
    await store.create(new("l"))
    for text in ["我要退货", "second", "<b>third</b>"]:
        await store.append_log("l", LogEntry(role="shopper", text=text, ts=1.0))
    assert [e.text for e in await store.log("l")] == ["我要退货", "second", "<b>third</b>"]


async def test_finished_handoffs_expire_and_transcripts_are_bounded(store: HandoffStore) -> None:
    """A store that is never cleaned grows for ever: finished handoffs are kept for the
    retention period only, and one conversation's transcript keeps its newest lines."""
    await store.create(new("old"))
    for n in range(MAX_LOG_ENTRIES + 20):
        await store.append_log("old", LogEntry(role="shopper", text=f"line {n}"))
    kept = await store.log("old")
    assert len(kept) == MAX_LOG_ENTRIES and kept[-1].text == f"line {MAX_LOG_ENTRIES + 19}"
    assert await store.finish("old", "resolved")
    if isinstance(store, RedisHandoffStore):
        ttl = await store._redis.ttl(store._rec("old"))
        assert 0 < ttl <= FINISHED_RETENTION_SECONDS  # Redis deletes it when the time comes
        await store.create(new("old", created=5.0))
        assert await store._redis.ttl(store._rec("old")) == -1  # open again: kept
    else:
        clock = [time.time()]
        memory = MemoryHandoffStore(clock=lambda: clock[0])
        await memory.create(new("gone"))
        await memory.finish("gone", "resolved")
        clock[0] += FINISHED_RETENTION_SECONDS + 1
        await memory.create(new("new"))
        await memory.finish("new", "resolved")
        assert await memory.get("gone") is None and await memory.log("gone") == []
        assert await memory.get("new") is not None
