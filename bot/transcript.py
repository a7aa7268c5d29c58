"""What was said in each conversation, shopper and bot, oldest first.

The web chat replays it when a shopper reloads the page; the handoff module shows it to
the agent. In-memory and bounded: the newest `max_entries` per conversation, the most
recently active `max_conversations` conversations.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from bot.messages import InboundMessage, OutboundReply


@dataclass(frozen=True)
class TranscriptEntry:
    role: str  # "shopper" | "bot" | "agent" | "note" | "system"
    text: str | None
    buttons: tuple[dict[str, str], ...] = ()
    image: str | None = None
    ts: float = field(default_factory=time.time)
    message_id: str | None = None  # the shopper's message id (clients match it to unacked sends)
    author: str | None = None  # the agent who wrote it (role "agent" or "note")

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": self.role, "text": self.text, "buttons": list(self.buttons),
                                 "image": self.image, "ts": self.ts}
        if self.message_id is not None:
            entry["id"] = self.message_id
        if self.author is not None:
            entry["author"] = self.author
        return entry


class TranscriptStore:
    def __init__(self, max_entries: int = 500, max_conversations: int = 10_000) -> None:
        self._max_entries = max_entries
        self._max_conversations = max_conversations
        self._by_key: OrderedDict[str, deque[TranscriptEntry]] = OrderedDict()

    def _entries(self, key: str) -> deque[TranscriptEntry]:
        entries = self._by_key.get(key)
        if entries is None:
            entries = self._by_key[key] = deque(maxlen=self._max_entries)
            while len(self._by_key) > self._max_conversations:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return entries

    def add_inbound(self, message: InboundMessage) -> None:
        self._entries(message.conversation_key).append(
            TranscriptEntry(role="shopper", text=message.summary, ts=message.timestamp,
                            message_id=message.message_id))

    def add_reply(self, key: str, reply: OutboundReply) -> None:
        if reply.text is None and reply.image is None and not reply.buttons:
            return  # custom payloads are signals, not something the shopper saw
        self._entries(key).append(TranscriptEntry(
            role="agent" if reply.author else "bot", text=reply.text,
            buttons=tuple(b.to_dict() for b in reply.buttons), image=reply.image, author=reply.author))

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
