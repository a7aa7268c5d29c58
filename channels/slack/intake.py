"""The Slack channel's input role, wired into Bolt as middleware and listeners.

For every request Bolt has verified (signature, or Socket Mode), the `gate` middleware:
1. turns the payload into a delivery, or acknowledges and drops it (bots, the app itself,
   edits, deletions, channels the app was not addressed in);
2. logs Slack's retries (`X-Slack-Retry-Num`) and acknowledges a delivery it has already
   handled without answering it again (dedupe by event id; durable with Redis);
3. keeps the delivery in the inbox *before* acknowledging it; if that fails (Redis down)
   it answers 503 and un-marks the dedupe key, so Slack delivers it again later.
The listeners then hand the message to the conversation service, which returns at once:
the acknowledgement never waits for Rasa or for posting replies (Slack wants it within
3 seconds). A button click also gets its buttons replaced by `✓ <choice>` (after the ack).
The inbox entry is removed once the turn is answered; what is left is replayed at start-up.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Coroutine, Mapping

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.conversation import ConversationService
from bot.dedupe import Deduper
from bot.inbox import Inbox
from bot.intake import DurableIntake, NotKept
from bot.messages import OutboundReply
from bot.staff import StaffAction, StaffRooms
from channels.slack.convert import (
    BUTTON_ACTION_PREFIX,
    CHANNEL,
    Converter,
    Delivery,
    SlackIdentity,
    SlackTarget,
    from_record,
    to_record,
)
from channels.slack.files import SlackFiles
from channels.slack.logtext import LogText, log
from channels.slack.output import SlackOutput
from channels.slack.staff import SlackStaffRoom

# Slack retries a delivery not acknowledged within 3 s: keeping it must answer sooner.
KEEP_TIMEOUT_SECONDS = 2.0
DELIVERY_KEY = "slack_delivery"  # where the gate leaves the delivery in Bolt's context

class KnownThreads:
    """Channel threads that are gateway conversations (replies there continue them without a mention)."""

    def __init__(self, max_threads: int = 50_000) -> None:
        self._threads: OrderedDict[str, None] = OrderedDict()
        self._max = max_threads

    def add(self, conversation_id: str) -> None:
        self._threads[conversation_id] = None
        self._threads.move_to_end(conversation_id)
        while len(self._threads) > self._max:
            self._threads.popitem(last=False)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._threads


def _header(request: AsyncBoltRequest, name: str) -> str | None:
    values = request.headers.get(name)
    return values[0] if values else None


class SlackIntake:
    """Accepts Slack deliveries into the conversation service, once each, never losing an acknowledged one."""

    def __init__(self, service: ConversationService, deduper: Deduper, inbox: Inbox, output: SlackOutput,
                 files: SlackFiles, max_text_length: int, locale: str | None = None) -> None:
        self.service = service
        self.intake = DurableIntake(CHANNEL, deduper, inbox, service.metrics, KEEP_TIMEOUT_SECONDS)
        self.output = output
        self.files = files
        self.identity = SlackIdentity()
        self.threads = KnownThreads()
        self.converter = Converter(identity=lambda: self.identity, file_url=files.links.url,
                                   known_thread=self.threads.__contains__, max_text_length=max_text_length,
                                   locale=locale)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.deduper = deduper
        self.staff: tuple[SlackStaffRoom, StaffRooms] | None = None  # the agents' channel, when configured

    def install(self, bolt: AsyncApp) -> None:
        """Register the gate middleware and the listeners on a Bolt app."""
        bolt.use(self.gate)
        bolt.event("message")(self.on_event)
        bolt.event("app_mention")(self.on_event)
        bolt.action(re.compile("^" + re.escape(BUTTON_ACTION_PREFIX)))(self.on_click)

    # -- Bolt middleware and listeners ------------------------------------------------------

    async def gate(self, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest,
                   next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Filter, dedupe and keep a verified delivery before it is acknowledged (see module doc)."""
        self._learn_identity(context)
        if self.staff is not None and self.staff[0].concerns(body):
            return await self._staff_gate(body)
        delivery = self.converter.delivery(body)
        if delivery is None:
            return BoltResponse(status=200, body="")
        retry = _header(request, "x-slack-retry-num")
        if retry not in (None, "", "0"):
            log.info(LogText.RETRY_RECEIVED, extra={"delivery": delivery.key, "retry_num": retry,
                                                    "retry_reason": _header(request, "x-slack-retry-reason")})
        refusal = await self._keep(delivery)
        if refusal is not None:
            return refusal
        context[DELIVERY_KEY] = delivery
        await next()
        return None

    async def on_event(self, context: AsyncBoltContext) -> None:
        """A direct message or mention: hand it over (acknowledged by Bolt right after)."""
        self.accept(context[DELIVERY_KEY])

    async def on_click(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """A button click: acknowledge, mark the choice on the message, hand the payload over."""
        await ack()
        delivery: Delivery = context[DELIVERY_KEY]
        message = body.get("message") or {}
        channel, ts = (body.get("channel") or {}).get("id"), message.get("ts")
        if isinstance(channel, str) and isinstance(ts, str):
            self._spawn(self.output.show_choice(delivery.message.conversation_id, channel, ts,
                                                message.get("blocks") or [], delivery.message.text))
        self.accept(delivery)

    async def _staff_gate(self, body: dict[str, Any]) -> BoltResponse:
        """The agents' channel: a thread reply or a button click is acknowledged at once and
        carried out after (once, by event id or click); anything else there is ignored."""
        assert self.staff is not None
        room = self.staff[0]
        found = room.action(body)
        if found is not None:
            dedupe_key, action = found
            try:
                first = await self.deduper.first_time(f"slack-staff:{dedupe_key}")
            except Exception as exc:  # Redis down: Slack delivers it again later
                log.warning(LogText.ACCEPT_FAILED, extra={"conversation": "staff", "error": repr(exc)})
                return BoltResponse(status=503, body="")
            if first:
                self._spawn(self._staff_action(room, action))
        return BoltResponse(status=200, body="")

    async def _staff_action(self, room: SlackStaffRoom, action: StaffAction) -> None:
        assert self.staff is not None
        desk = self.staff[1].desk
        if desk is None:
            return
        try:
            refusal = await desk.staff_action(action)
            if refusal:
                await room.post(action.thread, refusal)
        except Exception:
            log.exception("an agents' channel action failed")

    # -- keeping, accepting, finishing --------------------------------------------------------

    async def _keep(self, delivery: Delivery) -> BoltResponse | None:
        """Mark the delivery seen and keep it (bot/intake.py); a response to send instead of
        going on, if any: 200 for a duplicate, 503 (Slack retries) when it cannot be kept."""
        try:
            kept = await self.intake.keep(delivery.key, to_record(delivery))
        except NotKept:
            return BoltResponse(status=503, body="")
        return None if kept else BoltResponse(status=200, body="")

    def accept(self, delivery: Delivery, replayed: bool = False) -> None:
        """Submit a kept delivery to the conversation service (bot/intake.py: a full queue
        makes it wait, never refuses it); returns at once."""
        self._spawn(self._submit(delivery, replayed))

    async def _submit(self, delivery: Delivery, replayed: bool) -> None:
        message = delivery.message
        self.files.remember(delivery.files)
        if SlackTarget.parse(message.conversation_id).thread_ts is not None:
            self.threads.add(message.conversation_id)
        try:
            turn = await self.intake.submit(self.service, message, replayed)
        except Exception as exc:  # still kept: the next take-over (or start) tries it again
            self.intake.release(delivery.key)
            log.error(LogText.ACCEPT_FAILED, extra={"conversation": message.conversation_key, "error": repr(exc)})
            return
        log.info(LogText.ACCEPTED, extra={"conversation": message.conversation_key, "delivery": delivery.key,
                                          "attachments": len(message.attachments), "text": message.text})
        turn.replies.add_done_callback(lambda future: self._answered(delivery.key, future))

    def _answered(self, key: str, future: asyncio.Future[list[OutboundReply]]) -> None:
        if not future.cancelled():  # cancelled: the gateway stopped first; replayed after a restart
            self._spawn(self._done(key))

    async def _done(self, key: str) -> None:
        await self.intake.done(key)

    # -- start-up and shutdown ----------------------------------------------------------------

    async def replay(self) -> int:
        """Submit the deliveries kept but not answered before the last stop; how many there were."""
        pending = await self.intake.take_over()
        if pending:
            log.info(LogText.REPLAYING, extra={"count": len(pending)})
        for key, record in pending:
            try:
                delivery = from_record(key, record)
            except (KeyError, TypeError, ValueError) as exc:
                log.error(LogText.REPLAY_BAD_RECORD, extra={"delivery": key, "error": repr(exc)})
                await self._done(key)
                continue
            self.accept(delivery, replayed=True)
        return len(pending)

    def _learn_identity(self, context: AsyncBoltContext) -> None:
        """Fill in the app's identity from Bolt's own auth.test when start-up could not get it."""
        if self.identity.user_id is None and context.bot_user_id:
            self.identity = SlackIdentity(user_id=context.bot_user_id, bot_id=context.bot_id,
                                          team_id=context.team_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float = 2.0) -> None:
        """Let pending bookkeeping (inbox removals, button updates) finish briefly, then cancel it."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()


def identity_from_auth_test(result: Mapping[str, Any]) -> SlackIdentity:
    """The app's identity from an auth.test answer."""
    def text(key: str) -> str | None:
        value = result.get(key)
        return value if isinstance(value, str) and value else None

    return SlackIdentity(user_id=text("user_id"), bot_id=text("bot_id"), team_id=text("team_id"))
