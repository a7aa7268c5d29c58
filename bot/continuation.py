"""One case, any channel: a shopper carries a conversation over to another channel with a
short code (single use, CONTINUE_CODE_MINUTES), or a link that carries it (a Telegram deep
link `t.me/<bot>?start=<code>`, a web chat link `/?continue=<code>`; in Slack, or anywhere,
typing `continue <code>`).

The code is offered when the shopper asks for it (the flows' "Continue on another app"
button after a case is made, payload `/continue_elsewhere`; or typed, e.g. "continue on
telegram"). Each channel plugin says how to reach it with the code
(`Continuations.add_way`); the reply lists the ways, in the conversation's language.

Following it, in the new conversation: the language, the history (with a line saying where it
came from), the flows' memory of the case and order (Rasa slots) and the cases themselves
(`Continuations.on_continued` listeners: the flows re-point them, so the shop's updates reach
the channel the shopper uses now) are carried over; then the shopper is welcomed back. The
new conversation is the one the shopper and agents go on with.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from typing import Any, Awaitable, Callable, Sequence

from bot.i18n import pick
from bot.messages import ConversationRef, InboundMessage, OutboundReply

log = logging.getLogger("gateway.continuation")

OFFER_PAYLOAD = "/continue_elsewhere"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off one screen, typed on another
CODE_LENGTH = 8
CODE_SECONDS = 15 * 60
TRAIL_SECONDS = 30 * 24 * 3600  # which conversations one continues: as long as a finished handoff is kept
# What the new conversation takes over from Rasa's memory of the old one (flows' slots).
# The code came from that conversation, so whoever follows it proved there what they proved there.
CARRIED_SLOTS = ("language", "order_number", "item_sku", "last_case_id", "last_outcome", "customer_id",
                 "verified_orders")
_TYPED_CODE = re.compile(rf"^\s*(?:/start\s+|continue\s*[:：]?\s*|继续\s*[:：]?\s*)([{CODE_ALPHABET}]{{{CODE_LENGTH}}})\s*$",
                         re.IGNORECASE)
# Typed requests name the channel ("continue on telegram", "换到telegram继续"): a bare "switch to
# the other size" is an exchange, not this.
_ASKED = re.compile(r"\b(continue|carry on|switch|move)\b.{0,20}\b(telegram|slack|web ?chat)\b"
                    r"|(换到|转到|去|到|在)\s*(telegram|电报|slack|网页)\s*(上)?\s*(继续|聊)",
                    re.IGNORECASE)

TEXTS = {
    "offer": {"en": "To carry on this conversation somewhere else, use the code {code} within {minutes} minutes "
                    "(once):\n{ways}",
              "zh": "要在其他渠道继续本次对话，请在 {minutes} 分钟内使用验证码 {code}（仅限一次）：\n{ways}"},
    "no_way": {"en": "This shop's assistant is only on this channel for now, so there is nowhere else to carry on.",
               "zh": "目前本店的智能助手只在这个渠道提供服务，暂时无法转到其他渠道。"},
    "welcome": {"en": "Welcome back: I've carried over your conversation from {channel}{case}. What would you like "
                      "to do next?",
                "zh": "欢迎回来：已为您接续在{channel}上的对话{case}。接下来需要我做什么？"},
    "welcome_case": {"en": " (case {case_id})", "zh": "（案件 {case_id}）"},
    "bad_code": {"en": "That code has expired or was already used. Ask for a new one in the conversation you "
                       "started.",
                 "zh": "该验证码已过期或已被使用。请在原来的对话中重新获取。"},
    "same_place": {"en": "You are already in that conversation.", "zh": "您已经在这个对话中了。"},
    "carried": {"en": "Carried over from {channel}", "zh": "接续自{channel}"},
}
CHANNEL_NAMES = {"webchat": {"en": "the web chat", "zh": "网页客服"}, "telegram": {"en": "Telegram", "zh": "Telegram"},
                 "slack": {"en": "Slack", "zh": "Slack"}, "rest": {"en": "the shop's app", "zh": "商城 App"},
                 "socketio": {"en": "the web chat", "zh": "网页客服"}}


def text(key: str, lang: str | None, **values: Any) -> str:
    return pick(TEXTS[key], lang).format(**values)


def channel_name(channel: str, lang: str) -> str:
    return pick(CHANNEL_NAMES.get(channel, {"en": channel, "zh": channel}), lang)


class CodeStore(ABC):
    @abstractmethod
    async def put(self, code: str, conversation_key: str, seconds: int) -> bool:
        """Keep a new code; False if it exists already."""

    @abstractmethod
    async def take(self, code: str) -> str | None:
        """The conversation a code was made in, once: the code is gone after."""

    @abstractmethod
    async def set_trail(self, conversation_key: str, earlier: list[str]) -> None:
        """The conversations this one continues, oldest first."""

    @abstractmethod
    async def trail(self, conversation_key: str) -> list[str]: ...


class MemoryCodeStore(CodeStore):
    def __init__(self, max_codes: int = 10_000) -> None:
        self._codes: dict[str, tuple[str, float]] = {}
        self._trails: dict[str, list[str]] = {}
        self._max = max_codes

    async def put(self, code: str, conversation_key: str, seconds: int) -> bool:
        now = time.monotonic()
        self._codes = {c: v for c, v in self._codes.items() if v[1] > now} if len(self._codes) >= self._max else self._codes
        if code in self._codes or len(self._codes) >= self._max:
            return False
        self._codes[code] = (conversation_key, now + seconds)
        return True

    async def take(self, code: str) -> str | None:
        found = self._codes.pop(code, None)
        return found[0] if found and found[1] > time.monotonic() else None

    async def set_trail(self, conversation_key: str, earlier: list[str]) -> None:
        self._trails[conversation_key] = list(earlier)
        while len(self._trails) > self._max:
            self._trails.pop(next(iter(self._trails)))

    async def trail(self, conversation_key: str) -> list[str]:
        return list(self._trails.get(conversation_key, []))


class RedisCodeStore(CodeStore):
    def __init__(self, redis: Any, prefix: str = "gateway:continue:") -> None:
        self.redis = redis
        self.prefix = prefix

    async def put(self, code: str, conversation_key: str, seconds: int) -> bool:
        return bool(await self.redis.set(self.prefix + code, conversation_key, ex=seconds, nx=True))

    async def take(self, code: str) -> str | None:
        raw = await self.redis.getdel(self.prefix + code)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set_trail(self, conversation_key: str, earlier: list[str]) -> None:
        await self.redis.set(f"{self.prefix}trail:{conversation_key}", json.dumps(earlier), ex=TRAIL_SECONDS)

    async def trail(self, conversation_key: str) -> list[str]:
        raw = await self.redis.get(f"{self.prefix}trail:{conversation_key}")
        found = json.loads(raw) if raw else []
        return [str(k) for k in found] if isinstance(found, list) else []


Way = Callable[[str, str], str | None]  # (code, language) -> how to reach this channel with it
Listener = Callable[[str, str], Awaitable[None]]  # (old conversation key, new conversation key)


class Continuations:
    """The registry plugins use (`PluginContext.continuations`) and the code store."""

    def __init__(self, codes: CodeStore | None = None) -> None:
        self.codes = codes or MemoryCodeStore()
        self.ways: dict[str, Way] = {}
        self.listeners: list[Listener] = []

    def add_way(self, channel: str, way: Way) -> None:
        self.ways[channel] = way

    def on_continued(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def trail(self, conversation_key: str) -> list[str]:
        """The conversations this one continues (another channel's), oldest first."""
        return await self.codes.trail(conversation_key)

    async def issue(self, conversation_key: str) -> str:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if await self.codes.put(code, conversation_key, CODE_SECONDS):
                return code


class ContinuationHook:
    """A conversation-service hook (bot/conversation.py `TurnHook`)."""

    def __init__(self, service: Any, continuations: Continuations) -> None:
        self.service = service  # the ConversationService (its deliver, transcripts, language, Rasa client)
        self.continuations = continuations

    @staticmethod
    def code_in(message: InboundMessage) -> str | None:
        started = (message.context or {}).get("start_parameter")  # Telegram's /start <code> (deep link)
        found = _TYPED_CODE.match(f"continue {started}" if started else (message.text or ""))
        return found.group(1).upper() if found else None

    async def before_rasa(self, message: InboundMessage) -> bool:
        if message.payload == OFFER_PAYLOAD or (message.payload is None and message.text
                                                and len(message.text) < 80 and _ASKED.search(message.text)):
            await self._offer(message)
            return True
        code = self.code_in(message)
        if code is None:
            return False
        await self._follow(message, code)
        return True

    async def after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        return None

    async def silent(self, message: InboundMessage) -> bool:
        return False

    async def _say(self, message: InboundMessage, said: str) -> None:
        await self.service.deliver(message.channel, message.conversation_id, [OutboundReply(text=said)])

    async def _offer(self, message: InboundMessage) -> None:
        lang = message.language or self.service.language_of(message.conversation_key)
        code = await self.continuations.issue(message.conversation_key)
        ways = [line for channel, way in self.continuations.ways.items()
                if channel != message.channel and (line := way(code, lang))]
        if not ways:
            await self._say(message, text("no_way", lang))
            return
        await self._say(message, text("offer", lang, code=code, minutes=CODE_SECONDS // 60,
                                      ways="\n".join(f"• {w}" for w in ways)))
        log.info("continuation code offered", extra={"conversation": message.conversation_key})

    async def _follow(self, message: InboundMessage, code: str) -> None:
        new_key = message.conversation_key
        old_key = await self.continuations.codes.take(code)
        lang = message.language or self.service.language_of(new_key)
        if old_key is None:
            await self._say(message, text("bad_code", lang))
            return
        if old_key == new_key:
            await self._say(message, text("same_place", lang))
            return
        old = ConversationRef.parse(old_key)
        lang = self.service.language_of(old_key)
        self.service.declare_locale(new_key, "zh-CN" if lang == "zh" else "en")
        came_from = channel_name(old.channel if old else "webchat", lang)
        self.service.transcripts.carry_over(old_key, new_key, text("carried", lang, channel=came_from))
        await self.continuations.codes.set_trail(new_key, [*await self.continuations.trail(old_key), old_key])
        tracker = await self.service.rasa.tracker(old_key)
        slots = tracker.get("slots") or {}
        events = [{"event": "slot", "name": name, "value": slots[name], "timestamp": time.time()}
                  for name in CARRIED_SLOTS if slots.get(name) not in (None, "", [])]
        if events:
            await self.service.rasa.append_events(new_key, events)
        for listener in self.continuations.listeners:
            try:
                await listener(old_key, new_key)
            except Exception:
                log.exception("a continuation listener failed", extra={"conversation": new_key})
        case = slots.get("last_case_id")
        await self._say(message, text("welcome", lang, channel=came_from,
                                      case=text("welcome_case", lang, case_id=case) if case else ""))
        log.info("conversation continued on another channel", extra={"conversation": new_key, "from": old_key})
