"""Keeping things in order and spacing retries, for the core and every channel.

`KeyedLocks`: one first-come-first-served lock per key (a conversation, a chat), dropped
when nobody holds or waits for it. asyncio.Lock wakes waiters in the order they queued,
so holders of one key run in the order they asked: what keeps one conversation's messages
and replies in order while different conversations run at once.

`backoff`: the delay before retry number `attempt` (1 = the first retry): `base` doubling
up to `cap`, with ±20 % jitter so that many clients do not retry in step.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import asynccontextmanager
from typing import AsyncIterator


def backoff(attempt: int, base: float, cap: float) -> float:
    return float(min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.8, 1.2))


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, holders and waiters)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
