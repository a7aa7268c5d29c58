"""Handoffs worked from the team's chat (bot/staff.py): each handoff opens a thread in every
configured room (an agents' Slack channel) with its summary and Claim / Hand back / Resolve
buttons; everything that happens to it afterwards is posted there (the shopper's messages,
agents' replies and notes from the console, claims, hand-back, resolution, CSAT); and what a
team member does in the thread is done through the same `HandoffService` calls as the
console's, so the console and the room always show the same state.

In a thread, a reply from the agent who claimed the conversation goes to the shopper on
whatever channel they are on; a reply that starts with the note marker (`//` by default)
stays internal. A member the room cannot match to a console agent, or an agent acting on a
conversation that is not theirs, is told why in the thread and nothing else happens.

Which thread belongs to which conversation is kept in Redis with `REDIS_URL` (any gateway
can carry out an action from any thread), else in memory; as long as a finished handoff.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from typing import Any

from bot.staff import StaffAction, StaffActionKind, StaffButton, StaffRooms, StaffThread
from handoff.events import HandoffEvent, HandoffEventKind
from handoff.service import HandoffError, HandoffService
from handoff.sla import FIRST_RESPONSE, agent_clock
from handoff.store import FINISHED_RETENTION_SECONDS, Handoff

log = logging.getLogger("gateway.handoff.staff")

NOTE_MARKER = "//"
RESOLVED_FROM_THREAD = "resolved"  # the outcome a thread's Resolve button records
_ECHOES_REMEMBERED = 1_000

_QUEUED_BUTTONS = (StaffButton("Claim", StaffActionKind.CLAIM, "primary"),)
_ASSIGNED_BUTTONS = (StaffButton("Hand back to the bot", StaffActionKind.HAND_BACK),
                     StaffButton("Resolve", StaffActionKind.RESOLVE, "primary"))


class ThreadIndex(ABC):
    """Which threads show which conversation, both ways."""

    @abstractmethod
    async def add(self, key: str, thread: StaffThread) -> None: ...

    @abstractmethod
    async def threads(self, key: str) -> list[StaffThread]: ...

    @abstractmethod
    async def conversation(self, thread: StaffThread) -> str | None: ...


class MemoryThreadIndex(ThreadIndex):
    def __init__(self) -> None:
        self._threads: dict[str, list[StaffThread]] = {}
        self._keys: dict[StaffThread, str] = {}

    async def add(self, key: str, thread: StaffThread) -> None:
        self._threads.setdefault(key, []).append(thread)
        self._keys[thread] = key

    async def threads(self, key: str) -> list[StaffThread]:
        return list(self._threads.get(key, []))

    async def conversation(self, thread: StaffThread) -> str | None:
        return self._keys.get(thread)


class RedisThreadIndex(ThreadIndex):
    def __init__(self, redis: Any, prefix: str = "gateway:handoff:staff:") -> None:
        self.redis = redis
        self.prefix = prefix

    def _by_key(self, key: str) -> str:
        return f"{self.prefix}threads:{key}"

    def _by_thread(self, thread: StaffThread) -> str:
        return f"{self.prefix}thread:{json.dumps([thread.room, thread.channel, thread.thread_id])}"

    async def add(self, key: str, thread: StaffThread) -> None:
        entry = json.dumps([thread.room, thread.channel, thread.thread_id])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self._by_key(key), entry)
            pipe.expire(self._by_key(key), FINISHED_RETENTION_SECONDS)
            pipe.set(self._by_thread(thread), key, ex=FINISHED_RETENTION_SECONDS)
            await pipe.execute()

    async def threads(self, key: str) -> list[StaffThread]:
        found = []
        for raw in await self.redis.lrange(self._by_key(key), 0, -1):
            room, channel, thread_id = json.loads(raw)
            found.append(StaffThread(str(room), str(channel), str(thread_id)))
        return found

    async def conversation(self, thread: StaffThread) -> str | None:
        raw = await self.redis.get(self._by_thread(thread))
        return raw.decode() if isinstance(raw, bytes) else raw


class StaffDesk:
    """The handoff module's side of the team's chat: a `HandoffObserver` and a `bot.staff.StaffDesk`."""

    def __init__(self, service: HandoffService, rooms: StaffRooms, index: ThreadIndex,
                 note_marker: str = NOTE_MARKER) -> None:
        self.service = service
        self.rooms = rooms
        self.index = index
        self.note_marker = note_marker
        # What a thread itself sent (replies, notes): not posted back into the thread.
        self._echoes: list[tuple[str, HandoffEventKind, str]] = []

    # -- what happens to handoffs, posted into their threads -----------------------------------

    def summary(self, h: Handoff) -> str:
        zone = self.service.settings.hours.zone
        facts = [h.reason.replace("_", " "), h.channel, h.language]
        if h.detail.get("priority") == "high":
            facts.insert(0, ":rotating_light: urgent")
        lines = [" · ".join(facts)]
        if h.last_text:
            lines.append("> " + h.last_text.replace("\n", " ")[:200])
        known = [f"{label} {h.detail[name]}" for name, label in (("order_number", "order"), ("case_id", "case"),
                                                                   ("ticket_id", "ticket"), ("queue", "team"))
                 if h.detail.get(name)]
        if known:
            lines.append(" · ".join(known))
        if h.status == "queued":
            lines.append(f"Waiting since {agent_clock(h.created_at, zone)}; first answer due by "
                         f"{agent_clock(h.first_response_due, zone)}")
        elif h.status == "assigned":
            lines.append(f"With {self.service.agent_name(h.agent)}")
        else:
            lines.append({"returned": "Handed back to the bot", "resolved": f"Resolved: {h.outcome}"}.get(
                h.status, h.status))
        return "\n".join(lines)

    @staticmethod
    def _buttons(h: Handoff) -> tuple[StaffButton, ...]:
        return {"queued": _QUEUED_BUTTONS, "assigned": _ASSIGNED_BUTTONS}.get(h.status, ())

    def _line(self, event: HandoffEvent) -> str | None:
        kind, name = event.kind, self.service.agent_name(event.agent)
        if kind is HandoffEventKind.SHOPPER_MESSAGE:
            return f"Shopper: {event.text or '(an attachment)'}"
        if kind is HandoffEventKind.AGENT_REPLY:
            return f"{name} → shopper: {event.text}"
        if kind is HandoffEventKind.NOTE:
            return f"{name} (internal note): {event.text}"
        if kind is HandoffEventKind.CLAIMED:
            return f"Claimed by {name}"
        if kind is HandoffEventKind.TRANSFERRED:
            return f"Transferred to {name}"
        if kind is HandoffEventKind.HANDED_BACK:
            return f"{name} handed the conversation back to the bot"
        if kind is HandoffEventKind.RESOLVED:
            return f"{name} resolved it ({event.handoff.outcome}); the shopper is asked how satisfied they are"
        if kind is HandoffEventKind.CSAT:
            return f"The shopper rated the help {event.score}/5"
        if kind in (HandoffEventKind.SLA_WARNING, HandoffEventKind.SLA_BREACHED):
            return self.sla_text(event)
        return None

    def sla_text(self, event: HandoffEvent) -> str:
        h = event.handoff
        first = event.timer == FIRST_RESPONSE
        due = h.first_response_due if first else (h.resolution_due or 0.0)
        what = "First response" if first else "Resolution"
        zone = self.service.settings.hours.zone
        if event.kind is HandoffEventKind.SLA_BREACHED:
            text = f":rotating_light: SLA breached: {what.lower()} was due at {agent_clock(due, zone)}"
        else:
            text = f":warning: {what} due at {agent_clock(due, zone)}"
        if h.escalated and first and event.kind is HandoffEventKind.SLA_BREACHED:
            text += " · escalated to " + ", ".join(self.service.agent_name(a) for a in self.service.settings.supervisors)
        return text

    def _echo(self, key: str, kind: HandoffEventKind, text: str) -> bool:
        if (key, kind, text) in self._echoes:
            self._echoes.remove((key, kind, text))
            return True
        return False

    async def handoff_event(self, event: HandoffEvent) -> None:
        if not self.rooms.rooms:
            return
        h = event.handoff
        if event.kind is HandoffEventKind.QUEUED:
            for room in self.rooms.rooms.values():
                thread = await room.open_thread(self.summary(h), self._buttons(h))
                await self.index.add(h.key, thread)
            return
        if event.text is not None and self._echo(h.key, event.kind, event.text):
            return
        line = self._line(event)
        if event.kind is HandoffEventKind.SLA_BREACHED and line:
            for room in self.rooms.rooms.values():  # the whole channel hears of a breach, not only the thread
                await room.announce(f"{line} ({h.reason.replace('_', ' ')}, {h.channel}, {h.language})")
        for thread in await self.index.threads(h.key):
            target = self.rooms.room(thread.room)
            if target is None:
                continue
            if line:
                await target.post(thread, line)
            if event.kind in (HandoffEventKind.CLAIMED, HandoffEventKind.TRANSFERRED, HandoffEventKind.HANDED_BACK,
                              HandoffEventKind.RESOLVED):
                await target.update_summary(thread, self.summary(h), self._buttons(h))

    # -- what the team does in a thread ------------------------------------------------------

    async def staff_action(self, action: StaffAction) -> str | None:
        key = await self.index.conversation(action.thread)
        if key is None:
            return None if action.kind is StaffActionKind.REPLY else "This thread is no longer a conversation."
        if action.agent is None or action.agent not in self.service.agents:
            return (f"{action.member} is not one of the shop's agents here, so nothing was done "
                    "(an administrator maps team chat users to agents).")
        agent = action.agent
        try:
            if action.kind is StaffActionKind.CLAIM:
                won, holder = await self.service.claim(agent, key)
                return None if won else f"{self.service.agent_name(holder)} claimed it first."
            if action.kind is StaffActionKind.REPLY:
                text = action.text.strip()
                if not text:
                    return None
                if text.startswith(self.note_marker):
                    note = text[len(self.note_marker):].strip()
                    self._remember(key, HandoffEventKind.NOTE, note)
                    await self.service.note(agent, key, note)
                    return None
                self._remember(key, HandoffEventKind.AGENT_REPLY, text)
                await self.service.reply(agent, key, text)
                return None
            if action.kind is StaffActionKind.HAND_BACK:
                await self.service.hand_back(agent, key)
                return None
            if action.kind is StaffActionKind.RESOLVE:
                await self.service.resolve(agent, key, RESOLVED_FROM_THREAD)
                return None
        except HandoffError as exc:
            self._forget_echo(key)
            if exc.code == "not_yours":
                return f"Not sent: claim the conversation first ({exc})."
            return str(exc)
        return None

    def _remember(self, key: str, kind: HandoffEventKind, text: str) -> None:
        self._echoes.append((key, kind, text))
        del self._echoes[:-_ECHOES_REMEMBERED]

    def _forget_echo(self, key: str) -> None:
        self._echoes = [e for e in self._echoes if e[0] != key]
