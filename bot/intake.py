"""Keeping a delivery before acknowledging it, for every channel whose platform redelivers
(Telegram, Slack): the one mechanism, with one set of rules.

`keep` marks the delivery seen (dedupe) and stores it in the inbox *before* the channel
acknowledges it; a duplicate is reported as such; a delivery that cannot be kept raises
`NotKept` and must not be acknowledged, so the platform delivers it again (the mark is
taken back, so that redelivery is not mistaken for a duplicate). `done` forgets an
answered delivery; `pending` gives back what an earlier run kept but did not answer.

`submit` hands a kept delivery to the conversation service under the one full-queue policy:
the platform was told the delivery arrived, so it is never refused (refusing would lose it).
While its conversation has too many unanswered messages it waits, still kept, behind the
earlier ones of that conversation, and the shopper is told once, in their language, that it
will be answered after them.

Every store call is bounded by `store_timeout`: a hung Redis makes a delivery "not kept"
in time for the channel to refuse it, instead of holding the acknowledgement past the
platform's deadline (Slack retries after 3 s).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from bot.conversation import ConversationService, QueueFull, Turn
from bot.dedupe import Deduper
from bot.inbox import Inbox, Kept
from bot.messages import InboundMessage, OutboundReply
from bot.metrics import Metrics
from bot.ordering import KeyedLocks
from bot.texts import gateway_text

log = logging.getLogger("gateway.intake")

STORE_TIMEOUT_SECONDS = 10.0
QUEUE_FULL_RETRY_SECONDS = 0.5


class NotKept(Exception):
    """The delivery could not be kept durably; it must not be acknowledged."""


class DurableIntake:
    def __init__(self, channel: str, deduper: Deduper, inbox: Inbox, metrics: Metrics,
                 store_timeout: float = STORE_TIMEOUT_SECONDS,
                 queue_full_retry_seconds: float = QUEUE_FULL_RETRY_SECONDS) -> None:
        self.channel = channel
        self.deduper = deduper
        self.inbox = inbox
        self.metrics = metrics
        self.store_timeout = store_timeout
        self.queue_full_retry_seconds = queue_full_retry_seconds
        self._waiting = KeyedLocks()  # kept deliveries of one conversation go in in arrival order
        self._waiters: dict[str, int] = {}  # conversation key -> deliveries waiting to go in
        self._told: set[str] = set()  # conversations told to wait, until none of theirs waits

    def _dedupe_key(self, event_id: str) -> str:
        return f"{self.channel}:{event_id}"

    async def keep(self, event_id: str, record: dict[str, Any]) -> bool:
        """True: kept, answer it. False: a duplicate, acknowledge it and do nothing. Raises `NotKept`.

        Keeping comes first and is one step in the inbox (`Inbox.keep_new`: kept now, unless some
        gateway keeps it unanswered or answered it within the hour), so a gateway killed between
        two steps never leaves a delivery marked as handled that nobody keeps. The duplicate mark
        comes after; finding it already there means an older delivery answered long ago."""
        key = self._dedupe_key(event_id)
        try:
            kept = await asyncio.wait_for(self.inbox.keep_new(self.channel, event_id, record), self.store_timeout)
        except Exception as exc:
            log.error("cannot keep a delivery (Redis down?); refused so that the platform delivers it again",
                      extra={"channel": self.channel, "delivery": event_id, "error": repr(exc)})
            raise NotKept from exc
        if kept is not Kept.NOW:
            self._duplicate(event_id)
            return False
        try:
            first = await asyncio.wait_for(self.deduper.first_time(key), self.store_timeout)
        except Exception as exc:  # kept: it is answered; only the long-term duplicate mark is missing
            log.error("cannot mark a kept delivery as seen", extra={"channel": self.channel, "delivery": event_id,
                                                                     "error": repr(exc)})
            return True
        if not first:
            await self.inbox.discard(self.channel, event_id)
            self._duplicate(event_id)
            return False
        return True

    def _duplicate(self, event_id: str) -> None:
        self.metrics.inc("messages_duplicate_total", channel=self.channel)
        log.info("delivery already handled; acknowledged without answering again",
                 extra={"channel": self.channel, "delivery": event_id})

    async def submit(self, service: ConversationService, message: InboundMessage, replayed: bool = False) -> Turn:
        """Submit a kept delivery; while its conversation's queue is full, wait (it stays kept,
        behind the earlier ones) and tell the shopper once (not again while any of theirs
        still waits). Cancelled at shutdown, it stays in the inbox, answered after the restart."""
        key = message.conversation_key
        if replayed:  # the shared history first: a line the dead gateway wrote is not written again
            await service.transcripts.shared_history(key)
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            async with self._waiting.hold(key):
                while True:
                    try:
                        return service.submit(message, replayed=replayed)
                    except QueueFull as exc:
                        log.warning("conversation queue full; the kept message waits for its turn",
                                    extra={"conversation": key, "error": str(exc)})
                        if key not in self._told and not service.closing:
                            self._told.add(key)
                            text = gateway_text("kept_waiting", service.language_for(message))
                            await service.deliver(message.channel, message.conversation_id,
                                                  [OutboundReply(text=text, holding=True)])
                    await asyncio.sleep(self.queue_full_retry_seconds)
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:
                del self._waiters[key]
                self._told.discard(key)

    async def done(self, event_id: str) -> None:
        """The delivery was answered: forget it (a failure only means it is answered again after a restart)."""
        try:
            await asyncio.wait_for(self.inbox.done(self.channel, event_id), self.store_timeout)
        except Exception as exc:
            log.warning("cannot forget an answered delivery; it will be answered again after a restart",
                        extra={"channel": self.channel, "delivery": event_id, "error": repr(exc)})

    def release(self, event_id: str) -> None:
        """A delivery taken over could not be started here; the next take-over tries it again."""
        self.inbox.release(self.channel, event_id)

    async def take_over(self, belongs: Callable[[str], bool] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Deliveries kept and not answered that no live gateway is answering (an earlier run's,
        a dead gateway's), oldest first, now this gateway's to answer; [] when the store cannot say."""
        try:
            return await asyncio.wait_for(self.inbox.claim_unowned(self.channel, belongs), self.store_timeout)
        except Exception as exc:
            log.error("cannot read the deliveries left unanswered",
                      extra={"channel": self.channel, "error": repr(exc)})
            return []
