"""The conversation service every channel calls.

- One ordered queue per conversation: two messages from one shopper are answered in order,
  different conversations proceed concurrently.
- Each message id is handled once (channels resend after reconnects and retries).
- Rasa is called with a timeout; when it is unreachable the message stays at the head of
  its queue and is retried with exponential backoff, the shopper gets one holding reply
  instead of silence, and the answer is delivered when Rasa is back.
- An empty reply list to a normal message is what Rasa's REST channel returns when a custom
  action crashed: it is logged and counted as a failure, and the shopper gets an apology
  rather than nothing.
- The conversation has one language (`bot/i18n.py`): decided here, for every channel, from
  the client's locale and what the shopper writes, and kept across button payloads, files
  and short replies. Rasa is told it with every message; the gateway's own texts use it.
- Messages sent together (a Telegram album: same `group_id`) are answered as one turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar

from bot.channels import OutputChannel
from bot.errors import DependencyUnavailable
from bot.i18n import LanguageState, follow_language, text_language
from bot.messages import ConversationRef, InboundMessage, OutboundReply
from bot.metrics import Metrics
from bot.rasa_client import RasaClient, RasaRejected, RasaUnavailable
from bot.texts import gateway_text
from bot.transcript import TranscriptEntry, TranscriptStore

log = logging.getLogger("gateway.conversation")

T = TypeVar("T")

# Messages Rasa legitimately answers with nothing.
CONTROL_COMMANDS = ("/restart", "/session_start")


def _latin_only(text: str | None) -> str:
    return "".join(ch for ch in text or "" if ch.isascii())


class TurnHook(Protocol):
    """Something that sits around the Rasa call (the handoff module does).

    `before_rasa` returns True when it took the message (e.g. a person is handling the
    conversation): Rasa is not called. `after_rasa` sees every turn Rasa answered.
    `silent` is asked when Rasa answered nothing: True when the hook knows why and took
    care of the shopper (a conversation paused for a person whose handoff was lost).
    """

    async def before_rasa(self, message: InboundMessage) -> bool: ...

    async def after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None: ...

    async def silent(self, message: InboundMessage) -> bool: ...


class QueueFull(Exception):
    """The conversation already has too many unanswered messages."""


class Draining(QueueFull):
    """The gateway is stopping (SIGTERM): the client should send it to another gateway."""


@dataclass(eq=False)
class Turn:
    """One shopper message on its way through the service."""

    message: InboundMessage
    replies: asyncio.Future[list[OutboundReply]]
    held: asyncio.Event = field(default_factory=asyncio.Event)
    duplicate: bool = False
    arrived: float = field(default_factory=time.monotonic)

    async def wait(self, timeout: float) -> list[OutboundReply] | None:
        """The replies, or None if Rasa is unreachable (holding reply sent) or `timeout` passed."""
        held: asyncio.Future[Any] = asyncio.ensure_future(self.held.wait())
        waiting: list[asyncio.Future[Any]] = [self.replies, held]
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            held.cancel()
        return self.replies.result() if self.replies.done() and not self.replies.cancelled() else None


_NOTHING_SAID = LanguageState()


@dataclass(eq=False, slots=True)
class _ConversationState:
    """One per conversation this gateway has seen (every open web chat socket has one, from its
    hello): kept small, a list and a dict rather than a deque (760 bytes empty) and an
    OrderedDict; the recent ids are in arrival order, the oldest first."""

    queue: list[Turn] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None
    recent: dict[str, Turn] = field(default_factory=dict)
    outage: bool = False
    language: LanguageState = _NOTHING_SAID  # frozen: shared until something says the language

    @property
    def idle(self) -> bool:
        return not self.queue and (self.worker is None or self.worker.done())


class ConversationService:
    def __init__(
        self,
        rasa: RasaClient,
        *,
        metrics: Metrics | None = None,
        transcripts: TranscriptStore | None = None,
        max_pending: int = 50,
        max_pending_total: int = 5_000,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 15.0,
        holding_after_seconds: float = 2.0,
        max_conversations: int = 50_000,
        remembered_ids: int = 200,
        group_window_seconds: float = 1.0,
    ) -> None:
        self.rasa = rasa
        self.metrics = metrics or Metrics()
        self.transcripts = transcripts or TranscriptStore()
        self._outputs: dict[str, OutputChannel] = {}
        self._hooks: list[TurnHook] = []
        self._states: OrderedDict[str, _ConversationState] = OrderedDict()
        self._max_pending = max_pending
        self._max_pending_total = max_pending_total
        self._pending_total = 0  # messages in every queue, kept as they are added and answered
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._holding_after = holding_after_seconds
        self._max_conversations = max_conversations
        self._remembered_ids = remembered_ids
        self._group_window = group_window_seconds
        self._closing = False
        self._draining = False
        self._all_answered = asyncio.Event()  # set when the last accepted message is answered

    # -- channels -------------------------------------------------------------------------

    def register_output(self, channel: str, output: OutputChannel) -> None:
        self._outputs[channel] = output

    def add_hook(self, hook: TurnHook, first: bool = False) -> None:
        """Hooks are asked in the order added; `first`: before those added so far (a hook that
        only watches, and must see every message before another one takes it)."""
        if first:
            self._hooks.insert(0, hook)
        else:
            self._hooks.append(hook)

    async def deliver(self, channel: str, conversation_id: str, replies: Sequence[OutboundReply]) -> None:
        """Send replies to a conversation and record them (holding notices are not recorded).

        Used for Rasa's replies and for those that do not come from Rasa (an agent, the
        handoff module); a failing channel is logged and counted, never raised."""
        key = ConversationRef(channel, conversation_id).key
        output = self.output_for(channel)
        for reply in replies:
            if not reply.visible:
                continue  # a signal for the gateway (a handoff request), nothing to show
            if not reply.holding:
                self.transcripts.add_reply(key, reply)
            try:
                await output.send_reply(conversation_id, reply)
                self.metrics.inc("replies_sent_total", channel=channel)
            except Exception as exc:
                self.metrics.inc("delivery_failures_total", channel=channel)
                log.error("reply could not be delivered", extra={"conversation": key, "error": repr(exc)})

    @property
    def channels(self) -> frozenset[str]:
        """The channels with a registered output (every conversation is on one of them)."""
        return frozenset(self._outputs)

    def output_for(self, channel: str) -> OutputChannel:
        try:
            return self._outputs[channel]
        except KeyError:
            raise LookupError(f"no output channel registered for {channel!r}") from None

    # -- language ---------------------------------------------------------------------------

    # -- what plugins may use (bot/plugins.py `Conversations`) ---------------------------------

    def history(self, key: str) -> list[TranscriptEntry]:
        """What was said in a conversation, oldest first."""
        return self.transcripts.history(key)

    async def recent(self, limit: int) -> list[tuple[str, TranscriptEntry]]:
        """The most recently active conversations with their last entry, newest first, on
        every gateway sharing the Redis."""
        return await self.transcripts.shared_recent(limit)

    async def set_bot_paused(self, key: str, paused: bool, at: float) -> None:
        """Pause the bot in a conversation (a person answers) or let it answer again.
        Raises `RasaError` when Rasa cannot be told."""
        await self.rasa.append_events(key, [{"event": "pause" if paused else "resume", "timestamp": at}])

    async def bot_paused(self, key: str) -> bool:
        """Whether Rasa holds the conversation paused. Raises `RasaError` when it cannot say."""
        return bool((await self.rasa.tracker(key)).get("paused"))

    def language_of(self, conversation_key: str) -> str:
        """The conversation's language (English until anything says otherwise)."""
        state = self._states.get(conversation_key)
        return state.language.effective if state else "en"

    def declare_locale(self, conversation_key: str, locale: str | None) -> None:
        """A client declared its locale before saying anything (the web chat's hello): the
        gateway's own texts (an upload refused, an error frame) are in it from the start."""
        state = self._state(conversation_key)
        state.language = follow_language(state.language, None, locale)

    @property
    def closing(self) -> bool:
        """True once `stop_accepting()` or `close()` began: nothing new is accepted."""
        return self._closing or self._draining

    def stop_accepting(self) -> None:
        """The first step of a graceful stop: new messages are refused with `Draining`, the
        accepted ones go on being answered."""
        self._draining = True

    async def drained(self, timeout: float) -> int:
        """Wait until every accepted message is answered, at most `timeout` seconds; how many
        are still unanswered (kept ones are answered after a restart)."""
        if self._pending_total:
            self._all_answered.clear()
            try:
                await asyncio.wait_for(self._all_answered.wait(), timeout)
            except TimeoutError:
                pass
        return self._pending_total

    def language_for(self, message: InboundMessage) -> str:
        """The language this message would be answered in, without accepting it."""
        state = self._states.get(message.conversation_key)
        current = state.language if state else LanguageState()
        return follow_language(current, self._evidence(message), message.locale).effective

    @staticmethod
    def _evidence(message: InboundMessage) -> str | None:
        """The words that say something about the language: typed text, not a payload."""
        return None if message.payload else message.text

    def _learn_language(self, key: str, state: _ConversationState, replies: Sequence[OutboundReply]) -> None:
        """A conversation whose language nothing said yet (a payload after a restart) takes
        the language Rasa answered in: Rasa's tracker remembered it."""
        if state.language.language is not None:
            return
        for reply in replies:
            said = text_language(reply.text)
            if said.clear and not (said.language == "zh" and text_language(_latin_only(reply.text)).clear):
                state.language = replace(state.language, language=said.language)  # not a reply in both languages
                return

    # -- intake ---------------------------------------------------------------------------

    def submit(self, message: InboundMessage, replayed: bool = False) -> Turn:
        """Accept a message: it will be answered, in order. Returns at once. `replayed`: it
        was kept and may already have run in Rasa (a dead gateway's, an earlier run's).

        A message id seen before returns the earlier turn (marked `duplicate`) and is not
        sent to Rasa again. Raises `QueueFull` when the conversation has `max_pending`
        unanswered messages; the caller tells the client, nothing is kept.
        """
        if self._closing or self._draining:
            raise Draining("this gateway is stopping; send it again after reconnecting")
        if message.channel not in self._outputs:
            raise LookupError(f"no output channel registered for {message.channel!r}")
        key = message.conversation_key
        state = self._state(key)
        earlier = state.recent.get(message.message_id)
        if earlier is not None:
            self.metrics.inc("messages_duplicate_total", channel=message.channel)
            log.info("duplicate message ignored", extra={"conversation": key, "message_id": message.message_id})
            return Turn(message=earlier.message, replies=earlier.replies, held=earlier.held, duplicate=True)
        if len(state.queue) >= self._max_pending:
            raise QueueFull(f"{len(state.queue)} messages are still waiting for an answer")
        if self._pending_total >= self._max_pending_total:
            self.metrics.inc("messages_refused_total", reason="gateway_busy")
            raise QueueFull("the gateway is holding as many messages as it may; try again shortly")
        state.language = follow_language(state.language, self._evidence(message), message.locale)
        if message.language != state.language.known:
            message = message.in_language(state.language.known)
        if message.payload and message.text.strip() in ("", message.payload.strip()):
            # A client that sends only a button's payload: what the shopper pressed is the
            # button's title (the transcript, the console and Rasa's metadata show that).
            title = self.transcripts.button_title(key, message.payload)
            if title:
                message = replace(message, text=title)
        turn = Turn(message=message, replies=asyncio.get_running_loop().create_future())
        state.recent[message.message_id] = turn
        if len(state.recent) > self._remembered_ids:
            del state.recent[next(iter(state.recent))]  # the oldest
        state.queue.append(turn)
        self._pending_total += 1
        if replayed:
            self.rasa.may_have_run(message)
        if state.outage:
            turn.held.set()
        # Looked for in the history only when it may be there: replayed, or the first message this
        # process sees in the conversation (after a restart); else its id would be in `recent`.
        self.transcripts.add_inbound(message, key, replayed or len(state.recent) == 1)
        self.metrics.inc("messages_received_total", channel=message.channel)
        if log.isEnabledFor(logging.DEBUG):  # a line per message only at DEBUG: about a tenth of a turn's CPU
            log.debug("message accepted", extra={"conversation": key, "message_id": message.message_id,
                                                 "text": message.summary, "pending": len(state.queue)})
        if state.worker is None or state.worker.done():
            state.worker = asyncio.create_task(self._drain(key, state), name=f"conversation:{key}")
        return turn

    def pending(self, conversation_key: str) -> int:
        state = self._states.get(conversation_key)
        return len(state.queue) if state else 0

    @property
    def total_pending(self) -> int:
        return self._pending_total

    def _state(self, key: str) -> _ConversationState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _ConversationState()
            if len(self._states) > self._max_conversations:
                for old_key in [k for k, s in self._states.items() if s.idle][: len(self._states) // 10]:
                    del self._states[old_key]
        else:
            self._states.move_to_end(key)
        return state

    # -- processing -----------------------------------------------------------------------

    async def _drain(self, key: str, state: _ConversationState) -> None:
        while state.queue:
            head = state.queue[0]
            batch = [head] if head.message.group_id is None else await self._next_batch(state)
            turn = batch[0]
            message = turn.message
            answered_by_rasa = False
            try:
                if await self._retrying(turn, state, functools.partial(self._taken_by_hook, message)):
                    replies: list[OutboundReply] = []
                else:
                    replies = await self._answer(turn, state)
                    answered_by_rasa = True
            except asyncio.CancelledError:
                for member in batch:
                    member.replies.cancel()
                raise
            except Exception:  # a bug must not stall the conversation
                log.exception("turn failed", extra={"conversation": key})
                replies = [OutboundReply(text=gateway_text("empty_reply", message.language))]
            if answered_by_rasa:
                self._learn_language(key, state, replies)
            await self._deliver(message, replies)
            if answered_by_rasa and self._hooks:
                await self._retrying(turn, state, functools.partial(self._after_rasa, message, replies))
            for member in batch:
                state.queue.remove(member)
                self._pending_total -= 1
                if not member.replies.done():
                    member.replies.set_result(replies if member is turn else [])
            if not self._pending_total:
                self._all_answered.set()

    async def _next_batch(self, state: _ConversationState) -> list[Turn]:
        """The head turn, merged with the rest of its group (an album) once the group is complete:
        no new member for `group_window_seconds`. Returns the member turns, the merged one first."""
        head = state.queue[0]
        group = head.message.group_id
        if group is None:
            return [head]
        while True:
            members = [t for t in state.queue if t.message.group_id == group]
            quiet = time.monotonic() - max(t.arrived for t in members)
            if quiet >= self._group_window:
                break
            await asyncio.sleep(self._group_window - quiet)
        if len(members) == 1:
            return members
        first = members[0].message
        caption = next((t.message.text for t in members if t.message.text.strip()), "")
        merged = replace(first, text=caption, attachments=tuple(a for t in members for a in t.message.attachments))
        # The merged turn stands in for the head; its future is the head's own.
        stand_in = Turn(message=merged, replies=head.replies, held=head.held, arrived=head.arrived)
        state.queue[state.queue.index(head)] = stand_in
        log.info("messages sent together answered as one", extra={"conversation": first.conversation_key,
                                                                   "messages": len(members)})
        return [stand_in, *members[1:]]

    async def _taken_by_hook(self, message: InboundMessage) -> bool:
        for hook in self._hooks:
            if await hook.before_rasa(message):
                return True
        return False

    async def _after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        for hook in self._hooks:
            await hook.after_rasa(message, replies)

    async def _silence_explained(self, message: InboundMessage) -> bool:
        for hook in self._hooks:
            if await hook.silent(message):
                return True
        return False

    async def _retrying(self, turn: Turn, state: _ConversationState, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` until it succeeds while what it needs is unavailable (Rasa, Redis).

        The message stays at the head of its queue (later ones wait, keeping order); after
        `holding_after_seconds` the shopper gets one holding reply for the outage.
        """
        message = turn.message
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                result = await call()
            except DependencyUnavailable as exc:
                self.metrics.inc("rasa_failures_total" if isinstance(exc, RasaUnavailable) else "store_failures_total")
                if not state.outage:
                    log.warning("dependency unavailable; message kept and retried",
                                extra={"conversation": message.conversation_key, "error": str(exc)})
                delay = min(self._retry_max, self._retry_initial * 2 ** attempt) * random.uniform(0.8, 1.2)
                attempt += 1
                waited = time.monotonic() - started
                if not state.outage:
                    if waited >= self._holding_after:
                        state.outage = True
                        await self._send_holding(message)
                    else:
                        delay = min(delay, self._holding_after - waited)
                if state.outage:
                    for waiting in state.queue:
                        waiting.held.set()
                await asyncio.sleep(delay)
                continue
            if state.outage:
                state.outage = False
                log.info("dependency reachable again; answering kept messages",
                         extra={"conversation": message.conversation_key, "attempts": attempt + 1})
            return result

    async def _answer(self, turn: Turn, state: _ConversationState) -> list[OutboundReply]:
        message = turn.message
        output = self._outputs[message.channel]
        await self._safe_typing(output, message.conversation_id, True)
        try:
            replies = await self._retrying(turn, state, lambda: self.rasa.send_message(message))
        except RasaRejected as exc:
            self.metrics.inc("rasa_rejected_total")
            log.error("Rasa refused the message", extra={"conversation": message.conversation_key,
                                                           "error": str(exc)})
            return [OutboundReply(text=gateway_text("empty_reply", message.language))]
        finally:
            await self._safe_typing(output, message.conversation_id, False)
        if not replies and (message.payload or message.text).strip() not in CONTROL_COMMANDS:
            if await self._retrying(turn, state, lambda: self._silence_explained(message)):
                return []
            self.metrics.inc("rasa_empty_replies_total")
            log.error("Rasa answered a normal message with no reply (did a custom action crash?)",
                      extra={"conversation": message.conversation_key, "message_id": message.message_id})
            return [OutboundReply(text=gateway_text("empty_reply", message.language))]
        return replies

    async def _send_holding(self, message: InboundMessage) -> None:
        self.metrics.inc("holding_replies_total")
        holding = OutboundReply(text=gateway_text("holding", message.language), holding=True)
        await self._deliver(message, [holding])

    async def _deliver(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        await self.deliver(message.channel, message.conversation_id, replies)

    async def _safe_typing(self, output: OutputChannel, conversation_id: str, on: bool) -> None:
        try:
            await output.send_typing(conversation_id, on)
        except Exception as exc:
            log.debug("typing indicator failed", extra={"error": repr(exc)})

    # -- shutdown -------------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        workers = [s.worker for s in self._states.values() if s.worker and not s.worker.done()]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        waiting = sum(len(s.queue) for s in self._states.values())
        if waiting:
            log.warning("shutting down with unanswered messages", extra={"pending": waiting})
