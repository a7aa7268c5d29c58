"""Handoff state behind one interface: in memory (the embedded default) or Redis
(`REDIS_URL`: a gateway restart loses no queued conversation and no assignment).

One record per conversation key (the latest handoff of that conversation) plus its log:
the transcript snapshot taken at handoff, then every shopper message, agent reply,
internal note and system line, in order.

In Redis, what the shopper said is sealed (`bot/sealing.py`): every log entry and the
record's `last_text`, `detail` and `refs`, each bound to its conversation; the fields the Lua
scripts compare (`status`, `agent`) and the queue's times stay in clear.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, ParamSpec, TypeVar

from redis import exceptions as redis_errors

from bot.errors import DependencyUnavailable
from bot.redis_batch import RedisBatch
from bot.resealing import Writes, reseal_list, rewrite_watched
from bot.sealing import DataKeys, Resealed, SealingError, is_sealed_text

log = logging.getLogger("gateway.handoff")

T = TypeVar("T")
P = ParamSpec("P")

ACTIVE = ("queued", "assigned")
# A finished handoff (record and transcript) is kept this long for the shop's reports and a
# returning shopper's history, then deleted; at most this many in memory, and at most this
# many transcript lines per conversation.
FINISHED_RETENTION_SECONDS = 30 * 24 * 3600
MAX_FINISHED_IN_MEMORY = 10_000
MAX_LOG_ENTRIES = 2_000


@dataclass(frozen=True)
class LogEntry:
    """One line of a handoff's log: what agents see in the console, in order."""

    role: str  # "shopper" | "bot" | "agent" | "note" | "system"
    text: str | None
    ts: float = field(default_factory=time.time)
    author: str | None = None  # the agent who wrote it (role "agent" or "note")
    attachments: tuple[dict[str, Any], ...] = ()  # what the shopper sent with it (Attachment.to_dict)

    def to_dict(self) -> dict[str, Any]:
        """The console protocol's form (docs/console-protocol.md), also how it is kept."""
        entry: dict[str, Any] = {"role": self.role, "author": self.author, "text": self.text, "ts": self.ts}
        if self.attachments:
            entry["attachments"] = list(self.attachments)
        return entry

    @classmethod
    def from_dict(cls, raw: Any) -> "LogEntry | None":
        """An entry as kept; None for something that is not one."""
        if not isinstance(raw, dict):
            return None
        text, ts, author = raw.get("text"), raw.get("ts"), raw.get("author")
        attachments = raw.get("attachments") or []
        return cls(role=str(raw.get("role") or "system"), text=text if isinstance(text, str) else None,
                   ts=float(ts) if isinstance(ts, (int, float)) else 0.0,
                   author=author if isinstance(author, str) else None,
                   attachments=tuple(a for a in attachments if isinstance(a, dict)) if isinstance(attachments, list) else ())


@dataclass
class Handoff:
    key: str
    channel: str
    conversation_id: str
    reason: str
    language: str
    created_at: float
    first_response_due: float
    status: str = "queued"  # queued | assigned | returned | resolved
    agent: str | None = None
    first_response_at: float | None = None
    ticket: str | None = None
    outcome: str | None = None
    csat: int | None = None
    closed_at: float | None = None
    survey_pending: bool = False
    last_text: str | None = None
    waiting_messages: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    resolution_due: float | None = None  # resolved or handed back by then (the resolution SLA)
    escalated: bool = False  # its first response was late: the supervisors were called in
    # Order numbers and case ids of the cases the flows made in the conversation before the
    # handoff ({"orders": [...], "cases": [...]}): what the console's search matches.
    refs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


_FIELDS = {f.name for f in dataclasses.fields(Handoff)}
SEALED_FIELDS = ("last_text", "detail", "refs")  # the record's fields that hold what the shopper said


class HandoffStore(ABC):
    @abstractmethod
    async def create(self, handoff: Handoff) -> Handoff:
        """Store a new handoff; if the conversation already has an active one, return that."""

    @abstractmethod
    async def get(self, key: str) -> Handoff | None: ...

    @abstractmethod
    async def active(self) -> list[Handoff]:
        """Queued and assigned handoffs, oldest first."""

    @abstractmethod
    async def claim(self, key: str, agent: str) -> tuple[bool, str | None]:
        """Atomically assign a queued handoff; returns (won, the agent who has it)."""

    @abstractmethod
    async def transfer(self, key: str, from_agent: str, to_agent: str) -> bool:
        """Atomically move an assigned handoff from one agent to another."""

    @abstractmethod
    async def update(self, key: str, **fields: Any) -> None:
        """Set fields of the record (not status/agent changes that need atomicity)."""

    @abstractmethod
    async def finish(self, key: str, status: str, **fields: Any) -> bool:
        """Leave the active set (returned to the bot or resolved); False if it was not active."""

    @abstractmethod
    async def append_log(self, key: str, entry: LogEntry) -> None: ...

    @abstractmethod
    async def replace_log(self, key: str, entries: list[LogEntry]) -> None: ...

    @abstractmethod
    async def log(self, key: str) -> list[LogEntry]: ...

    @abstractmethod
    async def first_alert(self, key: str, alert: str) -> bool:
        """True the first time `alert` (e.g. "first_response:breached") is raised for this
        handoff, on any gateway; False ever after."""


class MemoryHandoffStore(HandoffStore):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, Handoff] = {}
        self._logs: dict[str, list[LogEntry]] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()  # key -> when, oldest first
        self._alerts: dict[str, set[str]] = {}
        self._clock = clock

    def _forget_old(self) -> None:
        oldest = self._clock() - FINISHED_RETENTION_SECONDS
        while self._finished:
            key, when = next(iter(self._finished.items()))
            if when >= oldest and len(self._finished) <= MAX_FINISHED_IN_MEMORY:
                break
            del self._finished[key]
            record = self._records.get(key)
            if record is not None and not record.active:
                del self._records[key]
                self._logs.pop(key, None)
                self._alerts.pop(key, None)

    async def create(self, handoff: Handoff) -> Handoff:
        existing = self._records.get(handoff.key)
        if existing is not None and existing.active:
            return existing
        self._records[handoff.key] = handoff
        self._finished.pop(handoff.key, None)
        return handoff

    async def get(self, key: str) -> Handoff | None:
        record = self._records.get(key)
        return dataclasses.replace(record) if record else None

    async def active(self) -> list[Handoff]:
        return sorted((dataclasses.replace(r) for r in self._records.values() if r.active),
                      key=lambda r: r.created_at)

    async def claim(self, key: str, agent: str) -> tuple[bool, str | None]:
        record = self._records.get(key)
        if record is None or record.status != "queued":
            return False, record.agent if record else None
        record.status, record.agent = "assigned", agent
        return True, agent

    async def transfer(self, key: str, from_agent: str, to_agent: str) -> bool:
        record = self._records.get(key)
        if record is None or record.status != "assigned" or record.agent != from_agent:
            return False
        record.agent = to_agent
        return True

    async def update(self, key: str, **fields: Any) -> None:
        record = self._records[key]
        for name, value in fields.items():
            setattr(record, name, value)

    async def finish(self, key: str, status: str, **fields: Any) -> bool:
        record = self._records.get(key)
        if record is None or not record.active:
            return False
        record.status = status
        await self.update(key, **fields)
        self._finished[key] = self._clock()
        self._finished.move_to_end(key)
        self._forget_old()
        return True

    async def append_log(self, key: str, entry: LogEntry) -> None:
        entries = self._logs.setdefault(key, [])
        entries.append(entry)
        if len(entries) > MAX_LOG_ENTRIES:
            del entries[: len(entries) - MAX_LOG_ENTRIES]

    async def replace_log(self, key: str, entries: list[LogEntry]) -> None:
        self._logs[key] = list(entries)

    async def log(self, key: str) -> list[LogEntry]:
        return list(self._logs.get(key, []))

    async def first_alert(self, key: str, alert: str) -> bool:
        raised = self._alerts.setdefault(key, set())
        if alert in raised or key not in self._records:
            return False
        raised.add(alert)
        return True


# Scripts run atomically inside Redis: two agents claiming at once, exactly one wins.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') == '"queued"' then
  redis.call('HSET', KEYS[1], 'status', '"assigned"', 'agent', ARGV[1])
  return 1
end
return redis.call('HGET', KEYS[1], 'agent') or 0
"""
_TRANSFER = """
if redis.call('HGET', KEYS[1], 'status') == '"assigned"' and redis.call('HGET', KEYS[1], 'agent') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'agent', ARGV[2])
  return 1
end
return 0
"""
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"queued"' or status == '"assigned"' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_CREATE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"queued"' or status == '"assigned"' then
  return 0
end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


def _unavailable_when_redis_is_down(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise DependencyUnavailable(f"Redis unavailable: {exc}") from exc
    return wrapper


class RedisHandoffStore(HandoffStore):
    """A hash per conversation (`handoff:<key>`, JSON-encoded fields), a sorted set of
    active handoffs by creation time, and a list per conversation for the log."""

    def __init__(self, redis: Any, keys: DataKeys, prefix: str = "gateway:handoff:") -> None:
        self._redis = redis
        self._batch = RedisBatch.of(redis)  # every turn's lookup (`get`) shares round trips with its other commands
        self._keys = keys
        self._prefix = prefix
        self._active_key = prefix + "active"
        self._claim = redis.register_script(_CLAIM)
        self._transfer = redis.register_script(_TRANSFER)
        self._finish = redis.register_script(_FINISH)
        self._create = redis.register_script(_CREATE)

    def _rec(self, key: str) -> str:
        return f"{self._prefix}rec:{key}"

    def _log(self, key: str) -> str:
        return f"{self._prefix}log:{key}"

    def _encode(self, key: str, name: str, value: Any) -> str:
        if name in SEALED_FIELDS:
            value = self._keys.seal_text(json.dumps(value, ensure_ascii=False), f"handoff:{key}:{name}")
        return json.dumps(value)

    def _decode(self, key: str, raw: dict[Any, Any]) -> Handoff | None:
        if not raw:
            return None
        values = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
        for name in SEALED_FIELDS:
            value = values.get(name)
            if isinstance(value, str) and is_sealed_text(value):  # else written before sealing: as it is
                try:
                    values[name] = json.loads(self._keys.open_text(value, f"handoff:{key}:{name}"))
                except SealingError as exc:
                    log.error("a handoff field cannot be opened", extra={"conversation": key, "field": name,
                                                                         "error": str(exc)})
                    values.pop(name)
        return Handoff(**{k: v for k, v in values.items() if k in _FIELDS})

    def _seal_entry(self, key: str, entry: LogEntry) -> str:
        return self._keys.seal_text(json.dumps(entry.to_dict(), ensure_ascii=False), f"handoff-log:{key}")

    def _open_entry(self, key: str, raw: bytes | str) -> LogEntry | None:
        try:
            entry = json.loads(self._keys.open_text(raw.decode() if isinstance(raw, bytes) else raw,
                                                    f"handoff-log:{key}"))
        except SealingError as exc:
            log.error("a handoff log entry cannot be opened", extra={"conversation": key, "error": str(exc)})
            return None
        return LogEntry.from_dict(entry)

    @_unavailable_when_redis_is_down
    async def create(self, handoff: Handoff) -> Handoff:
        args: list[Any] = [handoff.created_at, handoff.key]
        for name, value in dataclasses.asdict(handoff).items():
            args += [name, self._encode(handoff.key, name, value)]
        created = await self._create(keys=[self._rec(handoff.key), self._active_key], args=args)
        if created:
            async with self._redis.pipeline(transaction=False) as pipe:  # kept again while it is open
                pipe.persist(self._rec(handoff.key))
                pipe.persist(self._log(handoff.key))
                await pipe.execute()
            return handoff
        existing = await self.get(handoff.key)
        assert existing is not None
        return existing

    @_unavailable_when_redis_is_down
    async def get(self, key: str) -> Handoff | None:
        return self._decode(key, await self._batch.hgetall(self._rec(key)))

    @_unavailable_when_redis_is_down
    async def active(self) -> list[Handoff]:
        keys = [k.decode() if isinstance(k, bytes) else k for k in await self._redis.zrange(self._active_key, 0, -1)]
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._rec(key))
            raws = await pipe.execute()
        records = [self._decode(key, raw) for key, raw in zip(keys, raws, strict=True)]
        return [r for r in records if r is not None and r.active]

    @_unavailable_when_redis_is_down
    async def claim(self, key: str, agent: str) -> tuple[bool, str | None]:
        result = await self._claim(keys=[self._rec(key)], args=[json.dumps(agent)])
        if result == 1:
            return True, agent
        if isinstance(result, bytes | str):
            return False, json.loads(result)
        return False, None

    @_unavailable_when_redis_is_down
    async def transfer(self, key: str, from_agent: str, to_agent: str) -> bool:
        return bool(await self._transfer(keys=[self._rec(key)], args=[json.dumps(from_agent), json.dumps(to_agent)]))

    @_unavailable_when_redis_is_down
    async def update(self, key: str, **fields: Any) -> None:
        if fields:
            await self._redis.hset(self._rec(key), mapping={k: self._encode(key, k, v) for k, v in fields.items()})

    @_unavailable_when_redis_is_down
    async def finish(self, key: str, status: str, **fields: Any) -> bool:
        done = await self._finish(keys=[self._rec(key), self._active_key], args=[json.dumps(status), key])
        if done:
            await self.update(key, **fields)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.expire(self._rec(key), FINISHED_RETENTION_SECONDS)
                pipe.expire(self._log(key), FINISHED_RETENTION_SECONDS)
                await pipe.execute()
        return bool(done)

    @_unavailable_when_redis_is_down
    async def append_log(self, key: str, entry: LogEntry) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self._log(key), self._seal_entry(key, entry))
            pipe.ltrim(self._log(key), -MAX_LOG_ENTRIES, -1)
            await pipe.execute()

    @_unavailable_when_redis_is_down
    async def replace_log(self, key: str, entries: list[LogEntry]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._log(key))
            if entries:
                pipe.rpush(self._log(key), *(self._seal_entry(key, e) for e in entries))
            await pipe.execute()

    @_unavailable_when_redis_is_down
    async def log(self, key: str) -> list[LogEntry]:
        entries = [self._open_entry(key, item) for item in await self._redis.lrange(self._log(key), 0, -1)]
        return [e for e in entries if e is not None]

    @_unavailable_when_redis_is_down
    async def first_alert(self, key: str, alert: str) -> bool:
        # A field of the record itself (not a Handoff field: `_decode` skips it), so it goes with it.
        if not await self._redis.exists(self._rec(key)):
            return False
        return bool(await self._redis.hsetnx(self._rec(key), f"alert:{alert}", "1"))

    # -- a shopper's erasure, key rotation (the CLI) ----------------------------------------

    async def erase(self, key: str) -> bool:
        """Forget the conversation's handoff: record, log, place in the queue. Whether there was one."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._rec(key), self._log(key))
            pipe.zrem(self._active_key, key)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def reseal_all(self) -> Resealed:
        """Seal every record's shopper fields and every log entry with the newest key. Keys the
        running gateway changes meanwhile are read again; one with a value that does not open
        is left as it is and counted."""
        done = Resealed()
        async for raw_name in self._redis.scan_iter(match=self._prefix + "*", count=500):
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            for kind in ("rec:", "log:"):
                if name.startswith(self._prefix + kind):
                    try:
                        done.rewritten += await self._reseal_one(name, kind, name[len(self._prefix + kind):])
                    except SealingError as exc:
                        done.skip(name, exc)
        return done

    async def _reseal_one(self, name: str, kind: str, key: str) -> int:
        if kind == "log:":
            return await reseal_list(self._redis, name, self._keys, f"handoff-log:{key}")

        async def plan(pipe: Any) -> Writes:
            writes: Writes = []
            for field_name, raw in zip(SEALED_FIELDS, await pipe.hmget(name, *SEALED_FIELDS), strict=True):
                value = json.loads(raw) if raw is not None else None
                if raw is None or (isinstance(value, str) and self._keys.text_is_current(value)):
                    continue
                if isinstance(value, str) and is_sealed_text(value):
                    value = json.loads(self._keys.open_text(value, f"handoff:{key}:{field_name}"))
                writes.append((field_name, self._encode(key, field_name, value)))
            return writes
        return await rewrite_watched(self._redis, name, plan)
