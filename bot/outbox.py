"""Replies kept for a client that is not there to take them yet (a REST sender's next
request, a socket.io client's next session), bounded three ways: per key, by number of
keys (least recently used first) and by age. A client gone for good costs nothing forever.

`MemoryOutbox` keeps them in this process (the embedded default). `RedisOutbox` keeps them
in Redis, sealed, so that the sender's next request may reach any gateway behind the load
balancer; while Redis cannot take a reply it is kept here and handed out with the rest.
Items are JSON-shaped dicts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Protocol

from bot.resealing import as_text, reseal_list
from bot.sealing import DataKeys, Resealed, SealingError

log = logging.getLogger("gateway.outbox")

PER_KEY = 200
MAX_KEYS = 10_000
MAX_AGE_SECONDS = 24 * 3600.0
Item = dict[str, Any]


class Outbox(Protocol):
    async def put(self, key: str, item: Item) -> None: ...

    async def take(self, key: str) -> list[Item]:
        """Everything kept for `key` that is not too old, oldest first; the box is emptied."""
        ...


class MemoryOutbox:
    def __init__(self, per_key: int = PER_KEY, max_keys: int = MAX_KEYS, max_age: float = MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_age = max_age
        self.clock = clock
        self._boxes: OrderedDict[str, deque[tuple[float, Item]]] = OrderedDict()

    async def put(self, key: str, item: Item) -> None:
        self.put_here(key, item)

    def put_here(self, key: str, item: Item) -> None:
        now = self.clock()
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = deque(maxlen=self.per_key)
        else:
            self._boxes.move_to_end(key)
        box.append((now, item))
        self._prune(now)

    async def take(self, key: str) -> list[Item]:
        return self.take_here(key)

    def take_here(self, key: str) -> list[Item]:
        box = self._boxes.pop(key, None)
        if not box:
            return []
        oldest = self.clock() - self.max_age
        return [item for stamp, item in box if stamp >= oldest]

    def _prune(self, now: float) -> None:
        while len(self._boxes) > self.max_keys:
            self._boxes.popitem(last=False)
        # The least recently written box first: once one is fresh, all after it are.
        oldest = now - self.max_age
        while self._boxes:
            key, box = next(iter(self._boxes.items()))
            if box[-1][0] >= oldest:
                break
            del self._boxes[key]

    def __len__(self) -> int:
        return len(self._boxes)


class RedisOutbox:
    """One sealed Redis list per key (`<prefix><namespace>:<key>`), trimmed to `per_key` and
    expiring `max_age` after its last write; taken atomically (one taker gets each item)."""

    def __init__(self, redis: Any, keys: DataKeys, namespace: str, per_key: int = PER_KEY,
                 max_age: float = MAX_AGE_SECONDS, prefix: str = "gateway:outbox:",
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.namespace = namespace
        self.per_key = per_key
        self.max_age = max_age
        self.prefix = prefix
        self.clock = clock
        self.here = MemoryOutbox(per_key=per_key, max_age=max_age)  # while Redis cannot take them

    def name(self, key: str) -> str:
        return f"{self.prefix}{self.namespace}:{key}"

    def _context(self, key: str) -> str:
        return f"outbox:{self.namespace}:{key}"

    async def put(self, key: str, item: Item) -> None:
        sealed = self.keys.seal_text(json.dumps({"at": self.clock(), "item": item}, ensure_ascii=False),
                                     self._context(key))
        name = self.name(key)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(name, sealed)
                pipe.ltrim(name, -self.per_key, -1)
                pipe.expire(name, int(self.max_age))
                await pipe.execute()
        except Exception as exc:
            log.warning("a reply for an absent client is kept on this gateway only (Redis away)",
                        extra={"error": repr(exc), "namespace": self.namespace})
            self.here.put_here(key, item)

    async def take(self, key: str) -> list[Item]:
        items = self.here.take_here(key)
        name = self.name(key)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrange(name, 0, -1)
                pipe.delete(name)
                raws, _ = await pipe.execute()
        except Exception as exc:
            log.warning("kept replies cannot be read from Redis now; they are handed out later",
                        extra={"error": repr(exc), "namespace": self.namespace})
            return items
        oldest = self.clock() - self.max_age
        kept = []
        for raw in raws:
            try:
                record = json.loads(self.keys.open_text(as_text(raw), self._context(key)))
            except (SealingError, ValueError) as exc:
                log.error("a kept reply cannot be opened; left out", extra={"error": repr(exc)})
                continue
            if float(record.get("at") or 0) >= oldest and isinstance(record.get("item"), dict):
                kept.append(record["item"])
        return kept + items

    async def reseal_all(self) -> Resealed:
        done = Resealed()
        start = self.prefix + self.namespace + ":"
        async for raw_key in self.redis.scan_iter(match=start + "*", count=500):
            name = as_text(raw_key)
            try:
                done.rewritten += await reseal_list(self.redis, name, self.keys, self._context(name[len(start):]))
            except SealingError as exc:
                done.skip(name, exc)
        return done

    async def erase(self, key: str) -> int:
        return int(await self.redis.delete(self.name(key)))
