"""SLA escalation: every handed-off conversation has two deadlines, the first response
(HANDOFF_FIRST_RESPONSE_MINUTES, 30 by default) and the resolution (HANDOFF_RESOLUTION_HOURS,
24 by default: "1小时响应、24小时闭环" in the domain's documents). Each gateway checks them every
HANDOFF_SLA_CHECK_SECONDS; a deadline that comes near (HANDOFF_SLA_WARNING_MINUTES before it)
or passes is raised once, on whichever gateway sees it first (`HandoffStore.first_alert`), as
a handoff event (`SLA_WARNING` / `SLA_BREACHED`): the consoles show a notice, the agents'
Slack thread and channel are told (handoff/staff_desk.py). A first response that is late
escalates the conversation to the supervisors (HANDOFF_SUPERVISORS): it is marked escalated,
which the console shows first, and the notice names them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from handoff.events import HandoffEventKind
from handoff.service import HandoffService
from handoff.store import Handoff

log = logging.getLogger("gateway.handoff.sla")

FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"


def agent_clock(at: float, zone: dt.tzinfo) -> str:
    """A time as agents read it in notices: `03 Dec 14:50 CST`, in the team's zone."""
    moment = dt.datetime.fromtimestamp(at, zone)
    return f"{moment:%d %b %H:%M} {moment.tzname() or ''}".strip()


@dataclass(frozen=True)
class Deadline:
    timer: str  # FIRST_RESPONSE | RESOLUTION
    level: str  # "warning" | "breached"
    due: float


def deadlines(h: Handoff, now: float, first_warning: float, resolution_warning: float) -> list[Deadline]:
    """The deadlines of an active handoff that are near or passed right now."""
    found: list[Deadline] = []
    if h.first_response_at is None:
        due = h.first_response_due
        if now > due:
            found.append(Deadline(FIRST_RESPONSE, "breached", due))
        elif due - now <= first_warning:
            found.append(Deadline(FIRST_RESPONSE, "warning", due))
    if h.resolution_due is not None:
        due = h.resolution_due
        if now > due:
            found.append(Deadline(RESOLUTION, "breached", due))
        elif due - now <= resolution_warning:
            found.append(Deadline(RESOLUTION, "warning", due))
    return found


class SlaWatcher:
    def __init__(self, service: HandoffService) -> None:
        self.service = service

    async def check(self) -> list[tuple[str, Deadline]]:
        """Raise what became due since the last check (on any gateway); what was raised here."""
        settings, store = self.service.settings, self.service.store
        now = self.service.clock()
        raised: list[tuple[str, Deadline]] = []
        for h in await store.active():
            for deadline in deadlines(h, now, settings.first_response_warning_minutes * 60,
                                      settings.resolution_warning_minutes * 60):
                if not await store.first_alert(h.key, f"{deadline.timer}:{deadline.level}"):
                    continue
                raised.append((h.key, deadline))
                if deadline.timer == FIRST_RESPONSE and deadline.level == "breached" and settings.supervisors:
                    await store.update(h.key, escalated=True)
                    await self.service.system_line(h.key, "First response late: escalated to "
                                                   + ", ".join(self.service.agent_name(a) for a in settings.supervisors))
                kind = HandoffEventKind.SLA_BREACHED if deadline.level == "breached" else HandoffEventKind.SLA_WARNING
                log.warning("SLA deadline %s", deadline.level, extra={"conversation": h.key, "timer": deadline.timer})
                await self.service.sla_event(kind, h.key, deadline.timer)
        return raised
