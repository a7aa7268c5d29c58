"""What was said in each conversation, shopper and bot, oldest first.

The web chat replays it when a shopper reloads the page; the handoff module shows it to
the agent. Read from memory, bounded: the newest `max_entries` per conversation, the most
recently active `max_conversations` conversations. With REDIS_URL every entry is also
written to Redis (a list per conversation, kept `JOURNAL_DAYS`), in the background and in
order, and loaded back at start: a crash or restart keeps the history. Each entry is
sealed there (`bot/sealing.py`, bound to its conversation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from bot import jsoncodec
from bot.messages import InboundMessage, OutboundReply
from bot.redis_batch import RedisBatch
from bot.resealing import as_text, reseal_list
from bot.sealing import DataKeys, Resealed, SealingError

log = logging.getLogger("gateway.transcript")

JOURNAL_DAYS = 30
MAX_ENTRIES = 500  # per conversation, in memory and in the journal
RECENT_KEPT = 1000  # conversations in the shared "recently active" list
WRITE_BATCH = 200  # entries written to Redis in one transaction, at most

# Append a batch of entries, atomically (one command for Redis to answer, not a MULTI of
# five per entry). KEYS: the recent list, then each conversation's list. ARGV: the entries
# kept per list, their lifetime, the conversations kept in the recent list, then per
# conversation: how many entries, the newest one's time, the conversation key, the entries.
_APPEND = """
local keep, ttl, recent = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for k = 2, #KEYS do
  local count = tonumber(ARGV[i])
  redis.call('RPUSH', KEYS[k], unpack(ARGV, i + 3, i + 2 + count))
  redis.call('LTRIM', KEYS[k], -keep, -1)
  redis.call('EXPIRE', KEYS[k], ttl)
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  i = i + 3 + count
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -recent - 1)
return 1
"""


@dataclass(frozen=True)
class TranscriptEntry:
    role: str  # "shopper" | "bot" | "agent" | "note" | "system"
    text: str | None
    buttons: tuple[dict[str, str], ...] = ()
    image: str | None = None
    ts: float = field(default_factory=time.time)
    message_id: str | None = None  # the shopper's message id (clients match it to unacked sends)
    author: str | None = None  # the agent who wrote it (role "agent" or "note")

    def kept(self) -> dict[str, Any]:
        """Every field, as the journal keeps it (what `dataclasses.asdict` gives, without its
        deep copy: the buttons are plain dicts of strings)."""
        return {"role": self.role, "text": self.text, "buttons": self.buttons, "image": self.image, "ts": self.ts,
                "message_id": self.message_id, "author": self.author}

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": self.role, "text": self.text, "buttons": list(self.buttons),
                                 "image": self.image, "ts": self.ts}
        if self.message_id is not None:
            entry["id"] = self.message_id
        if self.author is not None:
            entry["author"] = self.author
        return entry


class RedisTranscriptJournal:
    """The transcript's copy in Redis: appended by one writer task, read once at start."""

    def __init__(self, redis: Any, keys: DataKeys, max_entries: int = MAX_ENTRIES,
                 prefix: str = "gateway:transcript:", recent_key: str = "gateway:recent-conversations") -> None:
        self.redis = redis
        self.batch = RedisBatch.of(redis)  # the journal's writes share round trips with the turns' commands
        self.keys = keys
        self.max_entries = max_entries
        self.prefix = prefix
        # Conversations by their last entry's time (not under `prefix`: that holds lists only).
        self.recent_key = recent_key
        # Bounded: during a long Redis outage the newest entries past this stay in memory only.
        self._queue: asyncio.Queue[tuple[str, TranscriptEntry]] = asyncio.Queue(maxsize=50_000)
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, key: str, entry: TranscriptEntry) -> None:
        try:
            self._queue.put_nowait((key, entry))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("Redis has been away too long; transcript entries kept in memory only",
                          extra={"dropped": self.dropped})

    @staticmethod
    def _context(key: str) -> str:
        return f"transcript:{key}"

    def _seal(self, key: str, entry: TranscriptEntry) -> str:
        return self.keys.seal_text(jsoncodec.dumps(entry.kept()), self._context(key))

    def _open(self, key: str, raw: bytes | str) -> TranscriptEntry:
        data = json.loads(self.keys.open_text(as_text(raw), self._context(key)))
        return TranscriptEntry(**{**data, "buttons": tuple(data.get("buttons") or ())})

    async def read(self, key: str) -> list[TranscriptEntry]:
        """One conversation's kept entries, oldest first (unreadable ones are left out and logged)."""
        entries = []
        for raw in await self.redis.lrange(self.prefix + key, 0, -1):
            try:
                entries.append(self._open(key, raw))
            except SealingError as exc:
                log.error("a transcript entry cannot be opened", extra={"conversation": key, "error": str(exc)})
            except (ValueError, TypeError):
                continue
        return entries

    async def load(self) -> dict[str, list[TranscriptEntry]]:
        found: dict[str, list[TranscriptEntry]] = {}
        async for raw_key in self.redis.scan_iter(match=self.prefix + "*", count=500):
            key = as_text(raw_key)[len(self.prefix):]
            entries = await self.read(key)
            if entries:
                found[key] = entries
        return found

    async def erase(self, key: str) -> int:
        """Forget one conversation's kept entries; how many there were."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(self.prefix + key)
            pipe.delete(self.prefix + key)
            pipe.zrem(self.recent_key, key)
            count, _, _ = await pipe.execute()
        return int(count)

    async def recent(self, limit: int) -> list[tuple[str, TranscriptEntry]]:
        """The most recently active conversations on every gateway, with their last entry,
        newest first (what the console's live list shows, the same from any gateway)."""
        keys = [as_text(k) for k in await self.redis.zrevrange(self.recent_key, 0, limit - 1)]
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.lindex(self.prefix + key, -1)
            lasts = await pipe.execute()
        found = []
        for key, raw in zip(keys, lasts, strict=True):
            if raw is None:
                continue
            try:
                found.append((key, self._open(key, raw)))
            except SealingError as exc:
                log.error("a kept transcript entry cannot be opened", extra={"conversation": key, "error": str(exc)})
        return found

    async def reseal_all(self) -> Resealed:
        """Seal every kept entry with the newest key. A conversation the running gateway
        appends to meanwhile is read again (WATCH), nothing is lost; one with an entry that
        does not open is left as it is and counted."""
        done = Resealed()
        async for raw_key in self.redis.scan_iter(match=self.prefix + "*", count=500):
            name = as_text(raw_key)
            try:
                done.rewritten += await reseal_list(self.redis, name, self.keys, self._context(name[len(self.prefix):]))
            except SealingError as exc:
                done.skip(name, exc)
        return done

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="transcript-journal")

    async def _write_forever(self) -> None:
        while True:
            # What queued up while the last write was on its way goes in one transaction:
            # per conversation its entries in order, then the same trims as one by one.
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_key: dict[str, list[TranscriptEntry]] = {}
            for key, entry in batch:
                by_key.setdefault(key, []).append(entry)
            keys: list[str] = [self.recent_key]
            args: list[Any] = [self.max_entries, JOURNAL_DAYS * 86400, RECENT_KEPT]
            for key, entries in by_key.items():
                keys.append(self.prefix + key)
                args += [len(entries), entries[-1].ts, key, *(self._seal(key, e) for e in entries)]
            while True:
                try:
                    await self.batch.eval(_APPEND, len(keys), *keys, *args)
                    break
                except Exception as exc:  # Redis away: keep the entries, try again shortly
                    log.warning("transcript not written to Redis yet; retrying", extra={"error": repr(exc)})
                    await asyncio.sleep(1.0)

    async def close(self, flush_seconds: float = 2.0) -> None:
        if self._writer is None:
            return
        deadline = time.monotonic() + flush_seconds
        while not self._queue.empty() and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded flush
            await asyncio.sleep(0.02)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


class TranscriptStore:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_conversations: int = 10_000,
                 journal: RedisTranscriptJournal | None = None) -> None:
        self._max_entries = max_entries
        self._max_conversations = max_conversations
        self._by_key: OrderedDict[str, deque[TranscriptEntry]] = OrderedDict()
        self.journal = journal

    async def start(self) -> None:
        """Load what the journal kept (oldest conversations first), then start writing to it."""
        if self.journal is None:
            return
        try:
            kept = await self.journal.load()
        except Exception as exc:  # Redis away at start: start anyway; new entries wait for it
            log.error("kept transcripts could not be loaded from Redis", extra={"error": repr(exc)})
            kept = {}
        for key, entries in sorted(kept.items(), key=lambda kv: kv[1][-1].ts):
            self._entries(key).extend(entries)
        log.info("transcripts loaded", extra={"conversations": len(kept)})
        self.journal.start()

    async def close(self) -> None:
        if self.journal is not None:
            await self.journal.close()

    def _append(self, key: str, entry: TranscriptEntry) -> None:
        self._entries(key).append(entry)
        if self.journal is not None:
            self.journal.record(key, entry)

    def _entries(self, key: str) -> deque[TranscriptEntry]:
        entries = self._by_key.get(key)
        if entries is None:
            entries = self._by_key[key] = deque(maxlen=self._max_entries)
            while len(self._by_key) > self._max_conversations:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return entries

    def add_inbound(self, message: InboundMessage, key: str | None = None, may_be_there: bool = True) -> None:
        """`key`: the message's conversation key, when the caller has it at hand. `may_be_there`
        False: the caller knows the history does not hold it yet, so it is not looked for."""
        key = key or message.conversation_key
        entries = self._entries(key)
        message_id = message.message_id
        for earlier in islice(reversed(entries), 20) if may_be_there else ():
            if earlier.message_id == message_id and earlier.role == "shopper":
                return  # replayed after a restart: it is in the history already
        entries.append(TranscriptEntry(role="shopper", text=message.summary, ts=message.timestamp, message_id=message_id))
        if self.journal is not None:
            self.journal.record(key, entries[-1])

    def button_title(self, key: str, payload: str) -> str | None:
        """The title of the button with this payload among the bot's latest messages in the
        conversation (what the shopper saw and pressed), or None."""
        for entry in islice(reversed(self._by_key.get(key, ())), 20):
            if entry.role == "bot":
                for button in entry.buttons:
                    if button.get("payload") == payload and button.get("title"):
                        return str(button["title"])
        return None

    def add_reply(self, key: str, reply: OutboundReply) -> None:
        if reply.text is None and reply.image is None and not reply.buttons:
            return  # custom payloads are signals, not something the shopper saw
        self._append(key, TranscriptEntry(
            role="agent" if reply.author else "bot", text=reply.text,
            buttons=tuple(b.to_dict() for b in reply.buttons), image=reply.image, author=reply.author))

    def carry_over(self, from_key: str, to_key: str, note: str) -> None:
        """A conversation continued on another channel (bot/continuation.py): its history goes
        on in `to_key`, after a line saying where it came from, before what `to_key` has."""
        earlier = [*self.history(from_key), TranscriptEntry(role="system", text=note)]
        here = self._entries(to_key)
        kept = list(here)
        here.clear()
        for entry in [*earlier, *kept]:
            here.append(entry)
        if self.journal is not None:
            for entry in earlier:
                self.journal.record(to_key, entry)

    def recent(self, limit: int = 20) -> list[tuple[str, TranscriptEntry]]:
        """The most recently active conversations with their last entry, newest first."""
        found: list[tuple[str, TranscriptEntry]] = []
        for key in reversed(self._by_key):
            entries = self._by_key[key]
            if entries:
                found.append((key, entries[-1]))
            if len(found) >= limit:
                break
        return found

    def history(self, key: str) -> list[TranscriptEntry]:
        return list(self._by_key.get(key, ()))

    async def shared_recent(self, limit: int = 20) -> list[tuple[str, TranscriptEntry]]:
        """`recent` over every gateway on the Redis, with what this one has not written
        there yet; this gateway's own when there is no Redis or it is away."""
        local = self.recent(limit)
        if self.journal is None:
            return local
        try:
            kept = await self.journal.recent(limit)
        except Exception as exc:
            log.error("the shared list of conversations could not be read; this gateway's is shown",
                      extra={"error": repr(exc)})
            return local
        newest = dict(kept)
        for key, entry in local:
            if key not in newest or entry.ts > newest[key].ts:
                newest[key] = entry
        return sorted(newest.items(), key=lambda item: item[1].ts, reverse=True)[:limit]

    async def shared_history(self, key: str) -> list[TranscriptEntry]:
        """The history as every gateway on the Redis has written it (a shopper may have talked
        through another gateway since this one started), merged with what this gateway has
        not written there yet; this gateway's own copy when there is no Redis or it is away."""
        local = self.history(key)
        if self.journal is None:
            return local
        try:
            kept = await self.journal.read(key)
        except Exception as exc:
            log.error("the shared history could not be read; this gateway's copy is shown",
                      extra={"conversation": key, "error": repr(exc)})
            return local
        seen = {(e.role, e.ts, e.text) for e in kept}
        merged = sorted([*kept, *(e for e in local if (e.role, e.ts, e.text) not in seen)], key=lambda e: e.ts)
        entries = self._entries(key)
        entries.clear()
        entries.extend(merged)
        return list(entries)
