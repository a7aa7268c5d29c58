"""'Have we handled this delivery before?' for platforms that redeliver (Telegram update_id,
Slack event_id, web chat message ids after a reconnect). In memory by default; in Redis
(durable across restarts, shared between gateway instances) when REDIS_URL is set."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any


class Deduper(ABC):
    @abstractmethod
    async def first_time(self, key: str) -> bool:
        """Atomically mark `key` as seen; True when it had not been seen before."""

    @abstractmethod
    async def forget(self, key: str) -> None:
        """Un-mark `key` (the delivery could not be kept, so a redelivery must be handled)."""


class MemoryDeduper(Deduper):
    def __init__(self, ttl_seconds: float = 86_400, max_keys: int = 200_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_keys
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def first_time(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen and (len(self._seen) > self._max or next(iter(self._seen.values())) < now - self._ttl):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)


class RedisDeduper(Deduper):
    """`SET key 1 NX EX ttl`: one round trip, atomic across gateway instances."""

    def __init__(self, redis: Any, prefix: str = "gateway:dedupe:", ttl_seconds: int = 86_400) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds

    async def first_time(self, key: str) -> bool:
        return bool(await self._redis.set(self._prefix + key, b"1", nx=True, ex=self._ttl))

    async def forget(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
