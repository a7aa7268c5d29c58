"""Fixtures for the after-sales flow tests: a shopper on the web chat who can also send
photos and a verified customer id (what channels put in the message's metadata)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import pytest

from bot.messages import Attachment, InboundMessage
from flows.knowledge import load_knowledge
from flows.policies import load_policies
from flows.reading import Reader
from flows.texts import load_texts
from tests.conftest import ChatClient, RunningGateway
from tests.ownership_proof import proof_answer


@functools.cache
def shipped_files() -> dict[str, Any]:
    """The shipped policies, knowledge base, texts and reader (`AfterSales`' defaults), loaded
    once per run: they are only read, and loading them costs a fifth of a second per test."""
    policies = load_policies()
    return {"policies": policies, "kb": load_knowledge(policies=policies), "texts": load_texts(),
            "reader": Reader(policies)}


class Replies(list):  # type: ignore[type-arg]
    """The reply frames the shopper's socket got for one message, plus `signals`: the
    custom payloads of Rasa's replies (e.g. {"handoff": {...}}), which the web chat does
    not show the shopper but the gateway's handoff module acts on."""

    signals: list[dict[str, Any]]


class RasaRepliesRecorder:
    """A gateway turn hook that remembers what Rasa answered, by message id."""

    def __init__(self) -> None:
        self.by_message: dict[str, list[Any]] = {}

    async def before_rasa(self, message: InboundMessage) -> bool:
        return False

    async def after_rasa(self, message: InboundMessage, replies: Sequence[Any]) -> None:
        self.by_message[message.message_id] = list(replies)

    async def silent(self, message: InboundMessage) -> bool:
        return False


class Shopper:
    """A web chat shopper. `say` types (or presses a button); `send` goes through the
    gateway's conversation service with attachments or a verified customer id, the way a
    channel that supports them delivers a message. Replies always arrive on the socket."""

    def __init__(self, gateway: RunningGateway, chat: ChatClient, locale: str, customer_id: str | None = None,
                 recorder: RasaRepliesRecorder | None = None, proves: bool = True) -> None:
        self.proves = proves  # answers "is this order yours?" with the demo order's phone ending
        self.gateway = gateway
        self.recorder = recorder
        self.chat = chat
        self.locale = locale
        self.customer_id = customer_id
        self.transcript: list[tuple[str, list[dict[str, Any]]]] = []

    async def _collect(self, message_id: str, first_timeout: float = 60.0, quiet: float = 0.6) -> Replies:
        frames = [await self.chat.next_frame("reply", timeout=first_timeout)]
        while all(f.get("holding") for f in frames):  # "one moment": the answer is still to come
            frames.append(await self.chat.next_frame("reply", timeout=first_timeout))
        while True:
            try:
                frames.append(await self.chat.next_frame("reply", timeout=quiet))
            except TimeoutError:
                break
        replies = Replies(r for r in frames if not r.get("holding"))
        replies.signals = []
        if self.recorder is not None:
            for _ in range(100):
                if message_id in self.recorder.by_message:
                    break
                await asyncio.sleep(0.05)
            replies.signals = [{"handoff": r.handoff_request.payload()} for r in self.recorder.by_message.get(message_id, [])
                               if r.handoff_request]
        return replies

    async def say(self, text: str, payload: str | None = None) -> Replies:
        if self.customer_id is not None:
            return await self.send(text, payload=payload)
        message_id = uuid.uuid4().hex
        await self.chat.say(text, payload=payload, message_id=message_id)
        replies = await self._collect(message_id)
        self.transcript.append((text, replies))
        shown = "\n".join(r.get("text") or "" for r in replies)
        answer = proof_answer(shown, "zh" if self.locale.startswith("zh") else "en")
        if self.proves and answer is not None:
            return await self.say(answer)
        return replies

    async def press(self, replies: Sequence[dict[str, Any]], payload_part: str) -> list[dict[str, Any]]:
        """Press the first button whose payload contains `payload_part`."""
        for reply in reversed(replies):
            for button in reply.get("buttons") or []:
                if payload_part in button["payload"]:
                    return await self.say(button["title"], payload=button["payload"])
        raise AssertionError(f"no button with {payload_part!r} in {buttons(replies)}")

    async def send(self, text: str, payload: str | None = None, photos: Sequence[str] = ()) -> Replies:
        assert self.chat.conversation_id is not None
        context = {"customer_id": self.customer_id} if self.customer_id else {}
        message = InboundMessage(channel="webchat", conversation_id=self.chat.conversation_id,
                                 sender_id=self.chat.conversation_id, text=text, payload=payload,
                                 message_id=uuid.uuid4().hex, locale=self.locale, context=context,
                                 attachments=tuple(Attachment(kind="image", url=u) for u in photos))
        self.gateway.service.submit(message)
        replies = await self._collect(message.message_id)
        self.transcript.append((text, replies))
        return replies


def text(replies: Sequence[dict[str, Any]]) -> str:
    return "\n".join(r.get("text") or "" for r in replies)


def buttons(replies: Sequence[dict[str, Any]]) -> list[str]:
    return [b["payload"] for r in replies for b in (r.get("buttons") or [])]


def handoff(replies: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The handoff signal of a turn: in Rasa's replies (`signals`) or in a reply frame."""
    customs = list(getattr(replies, "signals", [])) + [r.get("custom") or {} for r in replies]
    for custom in customs:
        if isinstance(custom.get("handoff"), dict):
            return custom["handoff"]
    return None


@pytest.fixture
async def shopper_factory(gateway: RunningGateway) -> AsyncIterator[Any]:
    opened: list[ChatClient] = []
    recorder = RasaRepliesRecorder()
    gateway.service.add_hook(recorder)

    async def make(lang: str = "en", customer_id: str | None = None, proves: bool = True) -> Shopper:
        locale = "zh-CN" if lang == "zh" else "en-GB"
        chat = await ChatClient.connect(gateway.ws_url, locale=locale)
        opened.append(chat)
        return Shopper(gateway, chat, locale, customer_id, recorder, proves)

    yield make
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


@pytest.fixture
async def shop_gateway(fake_rasa: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway that takes the shop's signed case events (flows/updates.py), on the fake Rasa."""
    from tests.conftest import make_settings, start_gateway
    from tests.flows.test_case_updates import SECRET

    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url,
                                                        environ={"SHOP_EVENTS_SECRET": SECRET}))
    try:
        yield gateway
    finally:
        await runner.cleanup()

