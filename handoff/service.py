"""Handoff: a conversation goes to a person, with its history, and comes back to the bot.

Triggers: a Rasa reply carrying `{"handoff": {"reason": ...}}` (the shopper asked for a
person, a severe complaint, the fallback fired twice, ...) or an agent picking a
conversation from the console. While a conversation is handed off the conversation
service asks this module first (`before_rasa`): the shopper's messages go to the agent,
not to Rasa, and Rasa's tracker is paused (and resumed on hand-back) so the bot picks up
with its context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import re
import secrets
import time
from typing import Any, Awaitable, Callable, Sequence

from bot.i18n import format_datetime, zone_label
from bot.messages import Button, ConversationRef, InboundMessage, OutboundReply
from bot.plugins import CaseReader, Conversations, no_cases
from bot.rasa_client import RasaError
from handoff.agents import Agent
from handoff.config import HandoffSettings
from handoff.events import HandoffEvent, HandoffEventKind, HandoffObserver
from handoff.store import Handoff, HandoffStore, LogEntry
from handoff.texts import shopper_text

log = logging.getLogger("gateway.handoff")

OUTCOMES = ("resolved", "refund_issued", "replacement_sent", "no_action_needed", "escalated")
SURVEY_PAYLOAD = re.compile(r"^/csat_([1-5])$")
SLA_WARNING_SECONDS = 10 * 60  # the defaults of HANDOFF_SLA_WARNING_MINUTES
RESOLUTION_WARNING_SECONDS = 120 * 60
AGENT_INITIATED = "agent_initiated"
RECOVERED = "recovered"  # found paused in Rasa with no handoff record (a restart lost it)

class HandoffError(Exception):
    """An agent action that is not allowed; `code` is the console error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Listener:
    """The console hub implements this to hear about changes."""

    def online_agents(self) -> set[str]:
        return set()

    async def changed(self) -> None: ...

    async def entry(self, handoff: Handoff, entry: LogEntry) -> None: ...


def sla_state(h: Handoff, now: float, warning_seconds: float = SLA_WARNING_SECONDS) -> str:
    """The first-response deadline: "ok", "warning" (near), "breached", or "met" once answered."""
    if h.first_response_at is not None:
        return "met" if h.first_response_at <= h.first_response_due else "breached"
    if now > h.first_response_due:
        return "breached"
    if h.first_response_due - now <= warning_seconds:
        return "warning"
    return "ok"


def resolution_state(h: Handoff, now: float, warning_seconds: float = RESOLUTION_WARNING_SECONDS) -> str:
    """The resolution deadline: "ok", "warning", "breached" (while with a person), or "none"."""
    if h.resolution_due is None or not h.active:
        return "none"
    if now > h.resolution_due:
        return "breached"
    if h.resolution_due - now <= warning_seconds:
        return "warning"
    return "ok"


# Reasons the flows hand over for (flows/service.py, flows/forms/complaint.py, the Rasa
# actions) that put a conversation before every other in the queue: health first, then a
# severe complaint (the flows also raise one for health or legal words in a settled case).
HEALTH_REASONS = ("allergy",)
SEVERE_REASONS = ("severe_complaint",)
_SLA_ORDER = {"breached": 0, "warning": 1}


def urgency(h: Handoff) -> str | None:
    """"health" (an allergic reaction or someone hurt), "severe" (a severe complaint, or any
    handoff the flows marked high priority) or None."""
    if h.reason in HEALTH_REASONS:
        return "health"
    if h.reason in SEVERE_REASONS or h.detail.get("priority") == "high":
        return "severe"
    return None


def channels_before(h: Handoff) -> list[str]:
    """The channels the conversation went through before this one (bot/continuation.py)."""
    came = h.detail.get("came_from")
    refs = [ConversationRef.parse(str(k)) for k in came] if isinstance(came, list) else []
    return [r.channel for r in refs if r is not None]


def queue_order(handoffs: Sequence[Handoff], now: float) -> list[Handoff]:
    """Who is answered first: health, then severe complaints (high priority first within
    each), then breached first-response SLAs, then SLAs about to breach, then the oldest."""
    def rank(h: Handoff) -> tuple[int, int, int, float]:
        tier = {"health": 0, "severe": 1}.get(urgency(h) or "", 2)
        return (tier, 0 if h.detail.get("priority") == "high" else 1,
                _SLA_ORDER.get("breached" if h.escalated else sla_state(h, now), 2), h.created_at)
    return sorted(handoffs, key=rank)


def known_refs(h: Handoff) -> tuple[list[str], list[str]]:
    """Order numbers and case (or ticket) ids known for the conversation: the handoff's own
    and those of the cases the flows made in it before the handoff."""
    orders = [str(v) for v in (h.detail.get("order_number"), *h.refs.get("orders", ())) if v]
    cases = [str(v) for v in (h.detail.get("case_id"), h.detail.get("ticket_id"), *h.refs.get("cases", ())) if v]
    return list(dict.fromkeys(orders)), list(dict.fromkeys(cases))


def conversation_values(h: Handoff, cases: Sequence[dict[str, Any]]) -> dict[str, str | None]:
    """What canned replies' variables are filled with (handoff/canned.py): the order, item
    and case the handoff names, else the newest case's; the shopper's first name if the
    channel gave it (Telegram). None: not known, left for the agent."""
    newest: dict[str, Any] = cases[0] if cases else {}
    facts: dict[str, Any] = newest["facts"] if isinstance(newest.get("facts"), dict) else {}
    item: dict[str, Any] = facts["item"] if isinstance(facts.get("item"), dict) else {}
    orders, ids = known_refs(h)
    name = h.detail.get("shopper_name")
    return {"order": orders[0] if orders else None,
            "item": item.get(h.language) or item.get("en") or None,
            "case": ids[0] if ids else None,
            "name": name if isinstance(name, str) and name else None}


def item_view(h: Handoff, now: float) -> dict[str, Any]:
    """A handoff as the console shows it in its lists."""
    orders, cases = known_refs(h)
    return {
        "key": h.key, "channel": h.channel, "language": h.language, "reason": h.reason, "status": h.status,
        "agent": h.agent, "created_at": h.created_at, "first_response_due": h.first_response_due,
        "first_response_at": h.first_response_at, "sla": sla_state(h, now), "ticket": h.ticket,
        "last_text": h.last_text, "waiting_messages": h.waiting_messages,
        "resolution_due": h.resolution_due, "resolution_sla": resolution_state(h, now), "escalated": h.escalated,
        "channels": [*channels_before(h), h.channel],
        "urgency": urgency(h), "priority": "high" if h.detail.get("priority") == "high" else "normal",
        "orders": orders, "cases": cases,
    }


async def _no_trail(key: str) -> list[str]:
    return []


class HandoffService:
    def __init__(self, conversations: Conversations, store: HandoffStore, settings: HandoffSettings,
                 agents: dict[str, Agent], cases: CaseReader = no_cases,
                 clock: Callable[[], float] = time.time, listener: Listener | None = None) -> None:
        self.conversations = conversations
        self.store = store
        self.settings = settings
        self.agents = agents
        self.cases = cases
        self.clock = clock
        self.listener = listener or Listener()  # the console hub
        self._observers: list[HandoffObserver] = []
        self.trail: Callable[[str], Awaitable[list[str]]] = _no_trail
        self._locks: dict[str, asyncio.Lock] = {}

    def observe(self, observer: HandoffObserver) -> None:
        """`observer.handoff_event` hears every change of every handoff made on this gateway."""
        self._observers.append(observer)

    async def _emit(self, kind: HandoffEventKind, key: str, agent: str | None = None, text: str | None = None,
                    score: int | None = None, timer: str | None = None) -> None:
        if not self._observers:
            return
        try:
            handoff = await self.store.get(key)
        except Exception as exc:
            log.warning("handoff event not told: the store is unavailable",
                        extra={"conversation": key, "event": kind.value, "error": repr(exc)})
            return
        if handoff is None:
            return
        for observer in self._observers:
            event = HandoffEvent(kind, dataclasses.replace(handoff, detail=dict(handoff.detail)), self.clock(),
                                 agent=agent, text=text, score=score, timer=timer)
            try:
                await observer.handoff_event(event)
            except Exception:
                log.exception("a handoff observer failed", extra={"conversation": key, "event": kind.value})

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- conversation hooks -------------------------------------------------------------

    async def before_rasa(self, message: InboundMessage) -> bool:
        key = message.conversation_key
        handoff = await self.store.get(key)
        if handoff is None:
            return False
        if handoff.active:
            entry = LogEntry(role="shopper", text=message.text, ts=message.timestamp,
                             attachments=tuple(a.to_dict() for a in message.attachments))
            await self.store.append_log(key, entry)
            await self.store.update(key, last_text=message.text[:200],
                                    waiting_messages=handoff.waiting_messages + 1)
            await self.listener.entry(handoff, entry)
            await self.listener.changed()
            await self._emit(HandoffEventKind.SHOPPER_MESSAGE, key, text=message.text)
            return True
        if handoff.survey_pending:
            return await self._survey_answer(handoff, message)
        return False

    async def after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        for reply in replies:
            request = reply.handoff_request
            if request is not None:
                detail = request.detail()
                if message.sender_name:  # for the canned replies' {name}
                    detail["shopper_name"] = message.sender_name
                await self.start(message.channel, message.conversation_id, request.reason,
                                 message.language or self.conversations.language_of(message.conversation_key),
                                 detail)
                return

    async def silent(self, message: InboundMessage) -> bool:
        """Rasa answered nothing. If that is because the conversation is paused for a person
        and no handoff owns it any more (the gateway restarted with its memory store, or Redis
        lost it), it goes back in the queue and the shopper is told: never paused unowned."""
        key = message.conversation_key
        if await self.store.get(key) is not None:
            return False
        try:
            paused = await self.conversations.bot_paused(key)
        except RasaError:
            return False
        if not paused:
            return False
        log.warning("paused conversation without a handoff: queued again", extra={"conversation": key})
        await self.start(message.channel, message.conversation_id, RECOVERED,
                         message.language or self.conversations.language_of(key), {})
        await self.before_rasa(message)  # the message that met the pause goes to the agent
        return True

    async def reconcile(self) -> None:
        """At start: every conversation the store says is with a person is paused in Rasa
        (Rasa may have restarted and forgotten)."""
        try:
            active = await self.store.active()
        except Exception as exc:  # a store that is down now is reconciled when it is met
            log.warning("cannot reconcile handoffs at start", extra={"error": repr(exc)})
            return
        for handoff in active:
            await self._pause_rasa(handoff.key, "pause")
        if active:
            log.info("handoffs reconciled with Rasa", extra={"count": len(active)})

    async def _survey_answer(self, handoff: Handoff, message: InboundMessage) -> bool:
        raw = (message.payload or message.text).strip()
        match = SURVEY_PAYLOAD.match(raw) or re.fullmatch(r"([1-5])(?:\D.*)?", raw)
        await self.store.update(handoff.key, survey_pending=False)
        if match is None:
            return False  # not an answer: the shopper moved on, the bot takes the message
        score = int(match.group(1))
        await self.store.update(handoff.key, csat=score)
        await self.store.append_log(handoff.key, LogEntry(role="system", text=f"Satisfaction survey: {score}/5",
                                                          ts=self.clock()))
        log.info("satisfaction recorded", extra={"conversation": handoff.key, "score": score})
        await self._tell(handoff, shopper_text("survey_thanks", handoff.language))
        await self._emit(HandoffEventKind.CSAT, handoff.key, score=score)
        return True

    # -- starting a handoff -------------------------------------------------------------

    async def start(self, channel: str, conversation_id: str, reason: str, language: str,
                    detail: dict[str, Any] | None = None) -> Handoff:
        key = ConversationRef(channel, conversation_id).key
        async with self._lock(key):
            now = self.clock()
            earlier = await self.trail(key)  # carried over from other channels (bot/continuation.py)
            if earlier:
                detail = {**(detail or {}), "came_from": earlier}
            candidate = Handoff(key=key, channel=channel, conversation_id=conversation_id, reason=reason,
                                language=language if language in ("en", "zh") else "en", created_at=now,
                                first_response_due=now + self.settings.first_response_minutes * 60,
                                resolution_due=now + self.settings.resolution_hours * 3600,
                                detail=dict(detail or {}))
            handoff = await self.store.create(candidate)
            if handoff is not candidate:
                return handoff  # already with a person
            history = self.conversations.history(key)
            last_shopper = next((e.text for e in reversed(history) if e.role == "shopper" and e.text), None)
            if last_shopper:
                await self.store.update(key, last_text=last_shopper[:200])
            if history:
                await self.store.replace_log(key, [LogEntry(role=e.role, text=e.text, ts=e.ts, author=e.author)
                                                   for e in history])
            refs = await self._case_refs(key)
            if refs:
                await self.store.update(key, refs=refs)
            await self._append(handoff, "system", f"Handed off: {reason}")
            await self._pause_rasa(key, "pause")
            if reason != AGENT_INITIATED:  # an agent taking over greets the shopper by claiming
                await self._announce(handoff, now)
            log.info("conversation handed off", extra={"conversation": key, "reason": reason})
        await self.listener.changed()
        await self._emit(HandoffEventKind.QUEUED, key)
        return handoff

    async def _announce(self, handoff: Handoff, now: float) -> None:
        hours = self.settings.hours
        at = dt.datetime.fromtimestamp(now, hours.zone)
        online = self.listener.online_agents()
        if hours.is_open(at) and online:
            queue = [h for h in await self.store.active() if h.status == "queued"]
            position = next((i for i, h in enumerate(queue, 1) if h.key == handoff.key), len(queue))
            minutes = max(1, math.ceil(position * self.settings.minutes_per_case / len(online)))
            await self._tell(handoff, shopper_text("queued", handoff.language, position=position, minutes=minutes))
            return
        ticket = "H-" + secrets.token_hex(3).upper()
        if hours.is_open(at):
            due = at + dt.timedelta(minutes=self.settings.first_response_minutes)
            text_key = "offline_agents"
        else:
            due = hours.next_opening(at) + dt.timedelta(minutes=self.settings.first_response_minutes)
            text_key = "offline_hours"
        await self.store.update(handoff.key, ticket=ticket, first_response_due=due.timestamp())
        close = "24:00" if hours.closes == dt.time(0, 0) else hours.closes.strftime("%H:%M")
        lang = handoff.language
        await self._tell(handoff, shopper_text(
            text_key, lang, ticket=ticket, due=format_datetime(due, lang, now=at),
            hours=f"{hours.opens.strftime('%H:%M')}-{close}", zone=zone_label(at, lang)))

    async def _case_refs(self, key: str) -> dict[str, list[str]]:
        """The ids and order numbers of the cases the flows made in the conversation."""
        try:
            cases = await self.cases(key)
        except Exception as exc:  # the console still works without them
            log.warning("cases of a handed-off conversation not read", extra={"conversation": key,
                                                                              "error": repr(exc)})
            return {}
        ids = [str(c["id"]) for c in cases if c.get("id")]
        orders = [str(c["order_number"]) for c in cases if c.get("order_number")]
        return {"cases": ids, "orders": list(dict.fromkeys(orders))} if ids or orders else {}

    async def _pause_rasa(self, key: str, event: str) -> None:
        try:
            await self.conversations.set_bot_paused(key, event == "pause", self.clock())
        except RasaError as exc:
            # The gateway's own state decides who answers; Rasa learns it when it is back.
            log.warning("could not tell Rasa about the handoff", extra={"conversation": key, "event": event,
                                                                         "error": str(exc)})

    # -- agent actions ------------------------------------------------------------------

    async def _require(self, key: str) -> Handoff:
        handoff = await self.store.get(key)
        if handoff is None:
            raise HandoffError("not_found", "no such conversation in the handoff queue")
        return handoff

    async def _require_mine(self, key: str, agent: str) -> Handoff:
        handoff = await self._require(key)
        if handoff.status != "assigned" or handoff.agent != agent:
            raise HandoffError("not_yours", "this conversation is not assigned to you")
        return handoff

    async def take(self, agent: str, channel: str, conversation_id: str) -> tuple[bool, str | None]:
        """An agent picks a conversation the bot is handling (from the console's live list)."""
        key = ConversationRef(channel, conversation_id).key
        if not self.conversations.history(key):
            raise HandoffError("not_found", "no such conversation")
        handoff = await self.start(channel, conversation_id, AGENT_INITIATED, self.conversations.language_of(key))
        return await self.claim(agent, handoff.key)


    async def claim(self, agent: str, key: str) -> tuple[bool, str | None]:
        async with self._lock(key):  # after the handoff's own announcement, never before it
            handoff = await self._require(key)
            won, holder = await self.store.claim(key, agent)
        if won:
            name = self.agents[agent].name if agent in self.agents else agent
            await self._append(handoff, "system", f"Claimed by {name}")
            await self._tell(handoff, shopper_text("claimed", handoff.language, agent=name))
            log.info("handoff claimed", extra={"conversation": key, "agent": agent})
            await self.listener.changed()
            await self._emit(HandoffEventKind.CLAIMED, key, agent=agent)
        return won, holder

    async def reply(self, agent: str, key: str, text: str) -> None:
        handoff = await self._require_mine(key, agent)
        name = self.agents[agent].name if agent in self.agents else agent
        await self.conversations.deliver(handoff.channel, handoff.conversation_id,
                                         [OutboundReply(text=text, author=name)])
        fields: dict[str, Any] = {"waiting_messages": 0}
        if handoff.first_response_at is None:
            fields["first_response_at"] = self.clock()
        await self.store.update(key, **fields)
        await self._append(handoff, "agent", text, author=agent)
        await self.listener.changed()
        await self._emit(HandoffEventKind.AGENT_REPLY, key, agent=agent, text=text)

    async def note(self, agent: str, key: str, text: str) -> None:
        handoff = await self._require(key)
        await self._append(handoff, "note", text, author=agent)
        await self._emit(HandoffEventKind.NOTE, key, agent=agent, text=text)

    async def transfer(self, agent: str, key: str, to_agent: str) -> None:
        if to_agent not in self.agents or to_agent == agent:
            raise HandoffError("unknown_agent", "pick another agent of the team")
        handoff = await self._require_mine(key, agent)
        if not await self.store.transfer(key, agent, to_agent):
            raise HandoffError("not_yours", "this conversation is not assigned to you")
        name = self.agents[to_agent].name
        before = self.agents[agent].name if agent in self.agents else agent
        await self._append(handoff, "system", f"Transferred from {before} to {name}")
        await self._tell(handoff, shopper_text("claimed", handoff.language, agent=name))
        await self.listener.changed()
        await self._emit(HandoffEventKind.TRANSFERRED, key, agent=to_agent)

    async def hand_back(self, agent: str, key: str) -> None:
        handoff = await self._require_mine(key, agent)
        await self.store.finish(key, "returned", closed_at=self.clock())
        await self._pause_rasa(key, "resume")
        await self._append(handoff, "system", "Handed back to the bot")
        await self._tell(handoff, shopper_text("handed_back", handoff.language))
        log.info("handed back to the bot", extra={"conversation": key, "agent": agent})
        await self.listener.changed()
        await self._emit(HandoffEventKind.HANDED_BACK, key, agent=agent)

    async def resolve(self, agent: str, key: str, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise HandoffError("invalid_outcome", f"outcome must be one of {', '.join(OUTCOMES)}")
        handoff = await self._require_mine(key, agent)
        await self.store.finish(key, "resolved", outcome=outcome, closed_at=self.clock(), survey_pending=True)
        await self._pause_rasa(key, "resume")
        await self._append(handoff, "system", f"Resolved: {outcome}")
        buttons = tuple(Button(title=str(n), payload=f"/csat_{n}") for n in range(1, 6))
        await self.conversations.deliver(handoff.channel, handoff.conversation_id, [
            OutboundReply(text=shopper_text("survey", handoff.language), buttons=buttons)])
        log.info("handoff resolved", extra={"conversation": key, "agent": agent, "outcome": outcome})
        await self.listener.changed()
        await self._emit(HandoffEventKind.RESOLVED, key, agent=agent)

    # -- SLA (handoff/sla.py) -----------------------------------------------------------

    def agent_name(self, username: str | None) -> str:
        known = self.agents.get(username or "")
        return known.name if known else (username or "?")

    async def system_line(self, key: str, text: str) -> None:
        """A line in the conversation's log for the agents (not sent to the shopper)."""
        handoff = await self._require(key)
        await self._append(handoff, "system", text)

    async def sla_event(self, kind: HandoffEventKind, key: str, timer: str) -> None:
        await self.listener.changed()
        await self._emit(kind, key, timer=timer)

    # -- helpers ------------------------------------------------------------------------

    async def _append(self, handoff: Handoff, role: str, text: str, author: str | None = None) -> None:
        entry = LogEntry(role=role, text=text, ts=self.clock(), author=author)
        await self.store.append_log(handoff.key, entry)
        await self.listener.entry(handoff, entry)

    async def _tell(self, handoff: Handoff, text: str) -> None:
        await self.conversations.deliver(handoff.channel, handoff.conversation_id, [OutboundReply(text=text)])
        await self._append(handoff, "system", f"To shopper: {text}")

    async def conversation_view(self, key: str) -> dict[str, Any]:
        handoff = await self._require(key)
        cases = await self.cases(key)
        return {"conversation": item_view(handoff, self.clock()), "transcript": [e.to_dict() for e in await self.store.log(key)],
                "cases": cases, "values": conversation_values(handoff, cases)}
