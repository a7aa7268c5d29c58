"""The one contract between the gateway core and what plugs into it: every channel and
the handoff module is a `Plugin`, `setup(app, ctx) -> bool`, listed explicitly by the
wiring (gateway/app.py). A plugin reads and validates its own settings from `ctx.env`
(raising `bot.config.ConfigError` with clear messages), registers its output channel or
hooks with `ctx.service`, adds its routes and start-up/clean-up hooks to `app`, and
returns False (doing nothing) when it is not configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

from aiohttp import web

from bot.config import Settings
from bot.continuation import Continuations
from bot.conversation import ConversationService
from bot.dedupe import Deduper
from bot.fanout import Fanout
from bot.inbox import Inbox, Liveness
from bot.messages import OutboundReply
from bot.sealing import DataKeys
from bot.staff import StaffRooms
from bot.transcript import TranscriptEntry

# The flows' cases of a conversation key, newest first, for agents (id, kind, status, summary).
CaseReader = Callable[[str], Awaitable[list[dict[str, Any]]]]


async def no_cases(key: str) -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class CaseFact:
    """What the shop's analytics read of one case the flows made: no shopper text, no ids."""

    kind: str  # return | replacement | compensation | exchange | complaint
    created_at: float  # epoch seconds
    channel: str  # of the conversation it was made in ("webchat", "telegram", ...; "unknown")
    language: str  # "en" | "zh"
    category: str  # the product category ("shoes", "skincare", ...; "unknown" when none was given)
    reason: str  # returns: why the shopper sent it back; complaints: what the complaint is about
    outcome: str  # refund, fast_refund, refused, replacement, compensation, exchange, ticket, or a handoff reason
    refusal: str | None = None  # a refused return: why (out_of_window, opened_not_returnable, ...)


# The cases made in [since, until) (epoch seconds), for the shop's analytics.
CaseFacts = Callable[[float, float], Awaitable[list[CaseFact]]]


async def no_case_facts(since: float, until: float) -> list[CaseFact]:
    return []


# Turn a conversation into an evaluation test: (conversation key, right outcome, handed off?,
# test name) -> the files written. Raises ValueError with a message for the agent or designer.
TestSaver = Callable[[str, str, bool, str], Awaitable[list[str]]]


async def no_test_saver(key: str, outcome: str, handoff: bool, name: str) -> list[str]:
    raise ValueError("saving conversations as tests is not available here")


class Conversations(Protocol):
    """The part of the conversation service a plugin that is not a channel (the handoff
    module) works through: who is on which channel, what was said, replies to send, and
    the bot paused or answering. `ConversationService` is the implementation."""

    @property
    def channels(self) -> frozenset[str]: ...

    def language_of(self, conversation_key: str) -> str: ...

    def history(self, key: str) -> list[TranscriptEntry]: ...

    async def recent(self, limit: int) -> list[tuple[str, TranscriptEntry]]: ...

    async def deliver(self, channel: str, conversation_id: str, replies: Sequence[OutboundReply]) -> None: ...

    async def set_bot_paused(self, key: str, paused: bool, at: float) -> None: ...

    async def bot_paused(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Availability:
    """Whether a person can answer now, for what channels tell shoppers (the web chat's header)."""

    people: str  # "online" (an agent is signed in), "offline" (working hours, nobody signed in), "closed"
    back: str | None = None  # closed: when the team starts again, as the shopper reads it (with its zone)


class AvailabilityBoard:
    """The handoff module provides it; channels read it. Nothing provided: None (no claim made)."""

    def __init__(self) -> None:
        self._source: Callable[[str], Availability] | None = None

    def provide(self, source: Callable[[str], Availability]) -> None:
        self._source = source

    def now(self, language: str) -> Availability | None:
        return self._source(language) if self._source is not None else None


@dataclass(frozen=True)
class PluginContext:
    """What the wiring hands every plugin at setup."""

    service: ConversationService
    settings: Settings
    env: Mapping[str, str]
    secret: str  # signs web chat sessions, file links and console cookies
    keys: DataKeys  # seals what a plugin keeps at rest
    deduper: Deduper
    inbox: Inbox
    redis: Any = None  # the gateway's shared redis.asyncio client when REDIS_URL is set
    cases: CaseReader = no_cases
    case_facts: CaseFacts = no_case_facts  # the flows' cases as counts for the analytics
    save_test: TestSaver = no_test_saver  # "save as test" (gateway/saved_tests.py)
    fanout: Fanout = field(default_factory=Fanout)  # frames for sockets on any gateway
    liveness: Liveness | None = None  # this gateway's heartbeat (with Redis): which gateways are alive
    staff: StaffRooms = field(default_factory=StaffRooms)  # the team's chat rooms and the desk (bot/staff.py)
    continuations: Continuations = field(default_factory=Continuations)  # one case, any channel (bot/continuation.py)
    availability: AvailabilityBoard = field(default_factory=AvailabilityBoard)  # is a person there now?
    # Lines for whoever started the gateway (the CLI prints them once it listens); a plugin
    # never prints. `{base}` stands for the gateway's base URL.
    notices: list[str] = field(default_factory=list)

    def tell_operator(self, line: str) -> None:
        self.notices.append(line)


class Plugin(Protocol):
    def __call__(self, app: web.Application, ctx: PluginContext) -> bool: ...
