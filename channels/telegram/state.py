"""What the Telegram channel remembers besides the shared deduper and inbox: chats that
blocked the bot, button payloads too long for Telegram's 64-byte `callback_data`, and the
file ids shoppers sent (only those can be fetched through the gateway). In memory by
default; in Redis (durable, shared between gateway instances) when REDIS_URL is set."""

from __future__ import annotations

import base64
import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

# Marks a callback_data that is a key into the payload store, not a payload itself.
PAYLOAD_KEY_PREFIX = "#k:"
CALLBACK_DATA_LIMIT = 64  # bytes, Telegram's limit

PAYLOAD_TTL_SECONDS = 90 * 86_400
FILE_TTL_SECONDS = 90 * 86_400


def payload_key(payload: str) -> str:
    """A short, stable key for a payload (the same payload always gets the same key)."""
    digest = hashlib.sha256(payload.encode("utf-8")).digest()
    return PAYLOAD_KEY_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")[:24]


def fits_callback_data(payload: str) -> bool:
    """True when `payload` can be sent as callback_data as is."""
    return (len(payload.encode("utf-8")) <= CALLBACK_DATA_LIMIT and bool(payload)
            and not payload.startswith(PAYLOAD_KEY_PREFIX))


class TelegramState(ABC):
    """Per-bot memory of the Telegram channel."""

    @abstractmethod
    async def mark_blocked(self, chat_id: str) -> bool:
        """Remember that the chat blocked the bot; True when it was not marked before."""

    @abstractmethod
    async def clear_blocked(self, chat_id: str) -> bool:
        """The shopper is back (wrote again, unblocked); True when the chat had been marked."""

    @abstractmethod
    async def is_blocked(self, chat_id: str) -> bool:
        """Whether replies to this chat are to be dropped."""

    @abstractmethod
    async def keep_payload(self, key: str, payload: str) -> None:
        """Remember the payload a short callback key stands for."""

    @abstractmethod
    async def payload(self, key: str) -> str | None:
        """The payload behind a callback key, or None when unknown (expired, other instance)."""

    @abstractmethod
    async def remember_file(self, file_id: str, info: dict[str, Any]) -> None:
        """A shopper sent this file: it may now be fetched through the gateway."""

    @abstractmethod
    async def file_info(self, file_id: str) -> dict[str, Any] | None:
        """What we know about a file a shopper sent, or None when it was never seen."""

    async def close(self) -> None:
        """Release connections, if any."""


class _Bounded(OrderedDict[str, Any]):
    """An LRU dict that forgets the oldest entries beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class MemoryTelegramState(TelegramState):
    """Process memory: survives nothing, good for one gateway without Redis."""

    def __init__(self, limit: int = 100_000) -> None:
        self._blocked: set[str] = set()
        self._payloads = _Bounded(limit)
        self._files = _Bounded(limit)

    async def mark_blocked(self, chat_id: str) -> bool:
        new = chat_id not in self._blocked
        self._blocked.add(chat_id)
        return new

    async def clear_blocked(self, chat_id: str) -> bool:
        was = chat_id in self._blocked
        self._blocked.discard(chat_id)
        return was

    async def is_blocked(self, chat_id: str) -> bool:
        return chat_id in self._blocked

    async def keep_payload(self, key: str, payload: str) -> None:
        self._payloads.put(key, payload)

    async def payload(self, key: str) -> str | None:
        value = self._payloads.get(key)
        return value if isinstance(value, str) else None

    async def remember_file(self, file_id: str, info: dict[str, Any]) -> None:
        self._files.put(file_id, dict(info))

    async def file_info(self, file_id: str) -> dict[str, Any] | None:
        value = self._files.get(file_id)
        return dict(value) if isinstance(value, dict) else None


class RedisTelegramState(TelegramState):
    """Keys under `gateway:telegram:<bot id>:` so several bots can share one Redis."""

    def __init__(self, redis: Any, bot_id: str, owns_client: bool = True) -> None:
        self._redis = redis
        self._prefix = f"gateway:telegram:{bot_id}:"
        self._owns_client = owns_client

    async def mark_blocked(self, chat_id: str) -> bool:
        return bool(await self._redis.sadd(self._prefix + "blocked", chat_id))

    async def clear_blocked(self, chat_id: str) -> bool:
        return bool(await self._redis.srem(self._prefix + "blocked", chat_id))

    async def is_blocked(self, chat_id: str) -> bool:
        return bool(await self._redis.sismember(self._prefix + "blocked", chat_id))

    async def keep_payload(self, key: str, payload: str) -> None:
        await self._redis.set(self._prefix + "cb:" + key, payload.encode("utf-8"), ex=PAYLOAD_TTL_SECONDS)

    async def payload(self, key: str) -> str | None:
        raw = await self._redis.get(self._prefix + "cb:" + key)
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw if isinstance(raw, str) else None

    async def remember_file(self, file_id: str, info: dict[str, Any]) -> None:
        await self._redis.set(self._prefix + "file:" + file_id, json.dumps(info), ex=FILE_TTL_SECONDS)

    async def file_info(self, file_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._prefix + "file:" + file_id)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

