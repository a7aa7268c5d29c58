"""Deliveries a platform considers done (we answered its webhook with 200) but that the
gateway has not finished answering yet. Written before acknowledging, removed once the
shopper got the answer, replayed at start-up: an acknowledged message is never lost
when the process dies. In memory by default (survives nothing); in Redis when REDIS_URL
is set. If Redis is down, `put` raises and the adapter refuses the delivery (non-2xx) so
the platform retries it later instead of the gateway losing it. In Redis each kept
delivery is sealed (`bot/sealing.py`, bound to its channel and event id).

Several gateways share one Redis inbox. Each kept delivery is owned by the gateway that
kept it; a gateway is alive while its heartbeat key (`Liveness`) exists. `claim_unowned`
takes over, atomically, what belongs to no live gateway (one that died, or this gateway's
earlier run of this gateway under the same `GATEWAY_ID`) and returns it to be answered; so a delivery is answered by one gateway,
and by a survivor when its gateway dies."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Callable

from bot import jsoncodec
from bot.redis_batch import RedisBatch
from bot.resealing import Writes, as_text, rewrite_watched
from bot.sealing import DataKeys, Resealed, SealingError

log = logging.getLogger("gateway.inbox")

class Kept(enum.Enum):
    """What `keep_new` found: the delivery is now kept, or it was sent before (kept by some
    gateway and not answered yet, or answered within `ANSWERED_SECONDS`)."""

    NOW = "now"
    BEFORE = "before"
    ANSWERED = "answered"


ANSWERED_SECONDS = 3600  # how long an answered delivery's id is remembered (a client's resend)
ANSWERED_REMEMBERED_HERE = 100_000


class Inbox(ABC):
    @abstractmethod
    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        """Keep a delivery before acknowledging it to the platform."""

    @abstractmethod
    async def keep_new(self, channel: str, event_id: str, payload: dict[str, Any]) -> Kept:
        """Keep a delivery unless it was sent before, on any gateway (a client resending what
        it sent to a gateway that died): such a one is answered, or will be, by its keeper."""

    @abstractmethod
    async def done(self, channel: str, event_id: str) -> None:
        """The delivery was answered; forget it (its id is remembered `ANSWERED_SECONDS`)."""

    async def done_all(self, channel: str, event_ids: list[str]) -> int:
        """`done` for several deliveries at once; how many could not be forgotten (they are
        answered again after the next start, and shown once)."""
        failed = 0
        for event_id in event_ids:
            try:
                await self.done(channel, event_id)
            except Exception:
                failed += 1
        return failed

    @abstractmethod
    async def discard(self, channel: str, event_id: str) -> None:
        """The delivery was kept but then refused (not acknowledged): forget it entirely."""

    @abstractmethod
    async def claim_unowned(self, channel: str, belongs: Callable[[str], bool] | None = None,
                            ) -> list[tuple[str, dict[str, Any]]]:
        """Deliveries kept but not answered that no live gateway is answering (and whose event
        id `belongs` here, if given), oldest first, now owned by this gateway: answered at
        start-up, and taken over while running (every `Settings.takeover_seconds`)."""


    def release(self, channel: str, event_id: str) -> None:
        """A delivery taken over here could not be started: the next take-over tries it again."""


class MemoryInbox(Inbox):
    """One process: what it keeps it answers, so nothing is ever unowned while it runs."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, dict[str, Any]]] = {}
        self._answered: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        self._items.setdefault(channel, {})[event_id] = payload

    async def keep_new(self, channel: str, event_id: str, payload: dict[str, Any]) -> Kept:
        if (channel, event_id) in self._answered:
            return Kept.ANSWERED
        if event_id in self._items.get(channel, {}):
            return Kept.BEFORE
        await self.put(channel, event_id, payload)
        return Kept.NOW

    async def done(self, channel: str, event_id: str) -> None:
        self._items.get(channel, {}).pop(event_id, None)
        self._answered[(channel, event_id)] = None
        while len(self._answered) > ANSWERED_REMEMBERED_HERE:
            self._answered.popitem(last=False)

    async def discard(self, channel: str, event_id: str) -> None:
        self._items.get(channel, {}).pop(event_id, None)

    async def claim_unowned(self, channel: str, belongs: Callable[[str], bool] | None = None,
                            ) -> list[tuple[str, dict[str, Any]]]:
        return []


def default_gateway_id() -> str:
    """This gateway's name among others on one Redis when `GATEWAY_ID` is not set: the host
    and a part new on every run (a restarted gateway then takes its earlier run's deliveries
    over once that run's heartbeat has run out)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Liveness:
    """This gateway's heartbeat in Redis: a key that lives `ttl` seconds, renewed every
    `ttl / 3`; deleted on a clean stop, so survivors take over its deliveries at once."""

    def __init__(self, redis: Any, gateway_id: str, ttl: float = 15.0, prefix: str = "gateway:alive:") -> None:
        self.redis = redis
        self.gateway_id = gateway_id
        self.ttl = ttl
        self.prefix = prefix
        self._task: asyncio.Task[None] | None = None

    def key(self, gateway_id: str) -> str:
        return self.prefix + gateway_id

    async def beat(self) -> None:
        await self.redis.set(self.key(self.gateway_id), "1", px=int(self.ttl * 1000))

    async def start(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # Redis away at start: the loop keeps trying
            log.error("cannot write this gateway's heartbeat", extra={"error": repr(exc)})
        self._task = asyncio.create_task(self._beat_forever(), name="gateway-heartbeat")

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.beat()
            except Exception as exc:
                log.error("cannot renew this gateway's heartbeat; its deliveries may be taken over",
                          extra={"error": repr(exc)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.redis.delete(self.key(self.gateway_id))
        except Exception as exc:
            log.warning("cannot remove this gateway's heartbeat; it expires on its own", extra={"error": repr(exc)})

    async def alive(self, gateway_ids: set[str]) -> set[str]:
        ids = sorted(gateway_ids)
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for gateway_id in ids:
                pipe.exists(self.key(gateway_id))
            answers = await pipe.execute()
        return {gateway_id for gateway_id, n in zip(ids, answers, strict=True) if n}


# Take a delivery over only if its owner is still the one we saw dead (another survivor may
# have taken it first) and it is still kept.
_CLAIM = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if (owner or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


# Forget a kept delivery (and, when ARGV[2] is "1", remember it was answered for ARGV[3]
# seconds), atomically: one command for Redis to answer instead of a MULTI of four.
_FORGET = """
if ARGV[2] == '1' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[3]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


# Keep a delivery unless it is kept already or was answered lately: 0 kept now, 1 kept
# before, 2 answered.
_KEEP_NEW = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 0
"""


class RedisInbox(Inbox):
    """Per channel: a hash of kept deliveries (event id -> sealed JSON), a list that keeps
    their arrival order, and a hash of their owners (event id -> gateway id)."""

    def __init__(self, redis: Any, keys: DataKeys, prefix: str = "gateway:inbox:",
                 liveness: Liveness | None = None) -> None:
        self._redis = redis
        self._batch = RedisBatch.of(redis)  # keeping and forgetting share round trips with the turns' other commands
        self._keys = keys
        self._prefix = prefix
        self.liveness = liveness or Liveness(redis, default_gateway_id())
        self._kept_here: set[tuple[str, str]] = set()  # (channel, event id) this process kept

    @property
    def owner(self) -> str:
        return self.liveness.gateway_id

    def release(self, channel: str, event_id: str) -> None:
        self._kept_here.discard((channel, event_id))

    async def put(self, channel: str, event_id: str, payload: dict[str, Any]) -> None:
        key = self._prefix + channel
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, event_id, self._keys.seal_text(json.dumps(payload), f"inbox:{channel}:{event_id}"))
            pipe.rpush(key + ":order", event_id)
            pipe.hset(key + ":owner", event_id, self.owner)
            await pipe.execute()
        self._kept_here.add((channel, event_id))

    def _answered_key(self, channel: str, event_id: str) -> str:
        return f"{self._prefix}{channel}:answered:{event_id}"

    async def keep_new(self, channel: str, event_id: str, payload: dict[str, Any]) -> Kept:
        key = self._prefix + channel
        sealed = self._keys.seal_text(jsoncodec.dumps(payload), f"inbox:{channel}:{event_id}")
        found = int(await self._batch.eval(_KEEP_NEW, 4, key, key + ":order", key + ":owner",
                                           self._answered_key(channel, event_id), event_id, sealed, self.owner))
        if found == 0:
            self._kept_here.add((channel, event_id))
        return (Kept.NOW, Kept.BEFORE, Kept.ANSWERED)[found]

    async def done(self, channel: str, event_id: str) -> None:
        await self._forget(channel, event_id, remember=True)

    async def discard(self, channel: str, event_id: str) -> None:
        await self._forget(channel, event_id, remember=False)

    async def done_all(self, channel: str, event_ids: list[str]) -> int:
        sent = [self._forget_command(channel, event_id, remember=True) for event_id in event_ids]  # one round trip
        failed = 0
        for event_id, outcome in zip(event_ids, await asyncio.gather(*sent, return_exceptions=True), strict=True):
            if isinstance(outcome, BaseException):
                failed += 1
            else:
                self._kept_here.discard((channel, event_id))
        return failed

    def _forget_command(self, channel: str, event_id: str, remember: bool) -> asyncio.Future[Any]:
        key = self._prefix + channel
        return self._batch.eval(_FORGET, 4, key, key + ":order", key + ":owner", self._answered_key(channel, event_id),
                                event_id, "1" if remember else "0", ANSWERED_SECONDS)

    async def _forget(self, channel: str, event_id: str, remember: bool) -> None:
        await self._forget_command(channel, event_id, remember)
        self._kept_here.discard((channel, event_id))

    async def claim_unowned(self, channel: str, belongs: Callable[[str], bool] | None = None,
                            ) -> list[tuple[str, dict[str, Any]]]:
        key = self._prefix + channel
        order = [as_text(e) for e in await self._redis.lrange(key + ":order", 0, -1)]
        if not order:
            return []
        owners = {as_text(k): as_text(v) for k, v in (await self._redis.hgetall(key + ":owner")).items()}
        others = {o for o in owners.values() if o != self.owner}
        alive = await self.liveness.alive(others)
        claimed = []
        for event_id in order:
            owner = owners.get(event_id, "")
            if (channel, event_id) in self._kept_here or owner in alive or (belongs and not belongs(event_id)):
                continue  # being answered here, or by a live gateway, or another bot's
            if await self._redis.eval(_CLAIM, 2, key, key + ":owner", event_id, owner, self.owner):
                claimed.append(event_id)
                self._kept_here.add((channel, event_id))
        if not claimed:
            return []
        raw = await self._redis.hmget(key, claimed)
        items = {event_id: as_text(value) for event_id, value in zip(claimed, raw, strict=True) if value is not None}
        found = []
        for event_id in claimed:
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
            if name.endswith((":order", ":owner")) or await self._redis.type(name) not in (b"hash", "hash"):
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
