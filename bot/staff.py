"""The team's own chat (an agents' Slack channel, ...) as a place to work handoffs from.

Two plugins meet here without importing each other: a team chat channel (channels/slack)
adds a `StaffRoom`, the transport; the handoff module attaches the `StaffDesk`, which
opens a thread per handoff in every room, mirrors what happens there, and carries out what
the team does in a thread (claim, reply, note, hand back, resolve). `StaffRooms` is the
registry the wiring hands both in `PluginContext.staff`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class StaffThread:
    """One thread in a room: where one handoff is worked."""

    room: str  # the room's name ("slack")
    channel: str  # the team chat's channel id
    thread_id: str  # the thread's id in that channel (Slack: the ts of its first message)


class StaffActionKind(enum.Enum):
    CLAIM = "claim"
    REPLY = "reply"  # to the shopper
    NOTE = "note"  # internal, for the team only
    HAND_BACK = "hand_back"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class StaffButton:
    title: str
    action: StaffActionKind
    style: str = ""  # "primary" | "danger" | ""


@dataclass(frozen=True)
class StaffAction:
    """Something a team member did in a thread."""

    kind: StaffActionKind
    thread: StaffThread
    member: str  # who did it, as the team chat names them (for messages)
    agent: str | None  # the console agent they are (the room's own mapping), None: not an agent
    text: str = ""


class StaffRoom(Protocol):
    """A team chat the gateway can post to (implemented by a channel plugin)."""

    name: str

    async def open_thread(self, summary: str, buttons: Sequence[StaffButton]) -> StaffThread: ...

    async def post(self, thread: StaffThread, text: str) -> None: ...

    async def update_summary(self, thread: StaffThread, summary: str, buttons: Sequence[StaffButton]) -> None: ...

    async def announce(self, text: str) -> None:
        """A message to the whole room, outside any thread (an SLA breach)."""


class StaffDesk(Protocol):
    """What carries out the team's actions (the handoff module)."""

    async def staff_action(self, action: StaffAction) -> str | None:
        """Carry it out; None when done, else why not, for the member (in the thread)."""


class StaffRooms:
    """The rooms configured on this gateway and the desk that works in them."""

    def __init__(self) -> None:
        self.rooms: dict[str, StaffRoom] = {}
        self.desk: StaffDesk | None = None

    def add_room(self, room: StaffRoom) -> None:
        self.rooms[room.name] = room

    def attach_desk(self, desk: StaffDesk) -> None:
        self.desk = desk

    def room(self, name: str) -> StaffRoom | None:
        return self.rooms.get(name)
