"""Deliveries a platform considers done (we answered its webhook with 200) but that the
gateway has not finished answering yet. Written before acknowledging, removed once the
shopper got the answer, replayed at start-up: an acknowledged message is never lost
when the process dies. In memory by default (survives nothing); in Redis when REDIS_URL
is set. If Redis is down, `put` raises and the adapter refuses the delivery (non-2xx) so
the platform retries it later instead of the gateway losing it. In Redis each kept
delivery is sealed (`bot/sealing.py`, bound to its channel and event id)."""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from typing import Any

from bot.resealing import Writes, as_text, rewrite_watched
from bot.sealing import DataKeys, Resealed, SealingError

log = logging.getLogger("gateway.inbox")


class Inbox(ABC):
    @abstractmethod
    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        """Keep a delivery before acknowledging it to the platform."""

    @abstractmethod
    async def done(self, channel: str, event_id: str) -> None:
        """The delivery was answered; forget it."""

    @abstractmethod
    async def pending(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        """Deliveries kept but not answered, oldest first (replayed at start-up)."""


class MemoryInbox(Inbox):
    def __init__(self) -> None:
        self._items: dict[str, dict[str, dict[str, Any]]] = {}

    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        self._items.setdefault(channel, {})[event_id] = payload

    async def done(self, channel: str, event_id: str) -> None:
        self._items.get(channel, {}).pop(event_id, None)

    async def pending(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        return list(self._items.get(channel, {}).items())


class RedisInbox(Inbox):
    """One hash per channel (event id -> JSON) plus a list that keeps arrival order."""

    def __init__(self, redis: Any, keys: DataKeys, prefix: str = "gateway:inbox:") -> None:
        self._redis = redis
        self._keys = keys
        self._prefix = prefix

    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        key = self._prefix + channel
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, event_id, self._keys.seal_text(json.dumps(payload), f"inbox:{channel}:{event_id}"))
            pipe.rpush(key + ":order", event_id)
            await pipe.execute()

    async def done(self, channel: str, event_id: str) -> None:
        key = self._prefix + channel
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, event_id)
            pipe.lrem(key + ":order", 0, event_id)
            await pipe.execute()

    async def pending(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        key = self._prefix + channel
        order = [e.decode() if isinstance(e, bytes) else e for e in await self._redis.lrange(key + ":order", 0, -1)]
        raw = await self._redis.hgetall(key)
        items = {as_text(k): as_text(v) for k, v in raw.items()}
        found = []
        for event_id in order:
            if event_id not in items:
                continue
            try:
                found.append((event_id, json.loads(self._keys.open_text(items[event_id],
                                                                        f"inbox:{channel}:{event_id}"))))
            except SealingError as exc:
                log.error("a kept delivery cannot be opened", extra={"channel": channel, "event": event_id,
                                                                     "error": str(exc)})
        return found

    async def reseal_all(self) -> Resealed:
        """Seal every kept delivery with the newest key (a channel's hash with one that does
        not open is left as it is and counted)."""
        done = Resealed()
        async for raw_name in self._redis.scan_iter(match=self._prefix + "*", count=500):
            name = as_text(raw_name)
            if name.endswith(":order") or await self._redis.type(name) not in (b"hash", "hash"):
                continue
            try:
                done.rewritten += await self._reseal_one(name, name[len(self._prefix):])
            except SealingError as exc:
                done.skip(name, exc)
        return done

    async def _reseal_one(self, name: str, channel: str) -> int:
        async def plan(pipe: Any) -> Writes:
            writes: Writes = []
            for raw_id, raw in (await pipe.hgetall(name)).items():
                event_id, value = as_text(raw_id), as_text(raw)
                if not self._keys.text_is_current(value):
                    context = f"inbox:{channel}:{event_id}"
                    writes.append((event_id, self._keys.seal_text(self._keys.open_text(value, context), context)))
            return writes
        return await rewrite_watched(self._redis, name, plan)
