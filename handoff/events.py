"""What happens to a handoff, told to whoever wants to know (analytics, an agents' Slack
channel, SLA escalation): one mechanism, `HandoffService.observe(observer)`.

An event is emitted by the gateway where it happened (the agent's action, the shopper's
message), after the store has it; an observer that fails is logged and never undoes or
blocks the agent's action or the shopper's message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from handoff.store import Handoff


class HandoffEventKind(enum.Enum):
    QUEUED = "queued"  # handed off (by a flow, the shopper, or an agent taking it)
    CLAIMED = "claimed"
    TRANSFERRED = "transferred"
    SHOPPER_MESSAGE = "shopper_message"  # the shopper wrote while with a person
    AGENT_REPLY = "agent_reply"
    NOTE = "note"
    HANDED_BACK = "handed_back"
    RESOLVED = "resolved"
    CSAT = "csat"  # the shopper answered the satisfaction survey
    SLA_WARNING = "sla_warning"  # a deadline is near (`timer`: "first_response" | "resolution")
    SLA_BREACHED = "sla_breached"  # a deadline passed


@dataclass(frozen=True)
class HandoffEvent:
    kind: HandoffEventKind
    handoff: Handoff  # as it was right after the event (a copy: observers may keep it)
    at: float  # when (epoch seconds)
    agent: str | None = None  # who acted (claim, reply, note, hand back, resolve; transfer: to whom)
    text: str | None = None  # the shopper's message, the agent's reply or note
    score: int | None = None  # CSAT 1-5
    timer: str | None = None  # SLA events: which deadline


class HandoffObserver(Protocol):
    async def handoff_event(self, event: HandoffEvent) -> None: ...
