"""The conversation service on its own: a recording output channel in front, the fake Rasa
(or a port where nothing listens, for outages; the real Rasa without its action server for
a crashed action) behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.channels import OutputChannel
from bot.conversation import ConversationService, QueueFull
from bot.messages import InboundMessage, OutboundReply
from bot.rasa_client import RasaClient
from gateway.rasa_runtime import RasaProcesses
from tests.conftest import free_port, settled
from tests.fake_rasa import FakeRasa


class RecordingOutput(OutputChannel):
    """An output channel that remembers what it was asked to send, per conversation."""

    name = "test"

    def __init__(self) -> None:
        self.sent: dict[str, list[OutboundReply]] = {}
        self.typing: list[tuple[str, bool]] = []
        self.arrived = asyncio.Event()

    async def send_text(self, conversation_id: str, text: str) -> None:
        await self.send_reply(conversation_id, OutboundReply(text=text))

    async def send_reply(self, conversation_id: str, reply: OutboundReply) -> None:
        self.sent.setdefault(conversation_id, []).append(reply)
        self.arrived.set()

    async def send_typing(self, conversation_id: str, on: bool) -> None:
        self.typing.append((conversation_id, on))

    async def wait_for(self, conversation_id: str, count: int, timeout: float = 30) -> list[OutboundReply]:
        async with asyncio.timeout(timeout):
            while len(self.sent.get(conversation_id, [])) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent[conversation_id]


def msg(conversation: str, text: str, message_id: str | None = None) -> InboundMessage:
    kwargs = {"message_id": message_id} if message_id else {}
    return InboundMessage(channel="test", conversation_id=conversation, sender_id=conversation, text=text,
                          locale="en", **kwargs)


async def make_service(rasa_url: str, **kwargs: float) -> tuple[ConversationService, RecordingOutput]:
    client = RasaClient(rasa_url, timeout_seconds=10)
    await client.start()
    service = ConversationService(client, retry_initial_seconds=0.1, retry_max_seconds=0.5,
                                  holding_after_seconds=0.3, **kwargs)  # type: ignore[arg-type]
    output = RecordingOutput()
    service.register_output("test", output)
    return service, output


@pytest.fixture
async def live(fake_rasa: FakeRasa) -> AsyncIterator[tuple[ConversationService, RecordingOutput]]:
    service, output = await make_service(fake_rasa.url)
    yield service, output
    await service.close()
    await service.rasa.close()


@pytest.fixture
async def unreachable() -> AsyncIterator[tuple[ConversationService, RecordingOutput]]:
    service, output = await make_service(f"http://127.0.0.1:{free_port()}", max_pending=3)
    yield service, output
    await service.close()
    await service.rasa.close()


async def test_one_conversation_is_answered_in_order_others_run_alongside(
        live: tuple[ConversationService, RecordingOutput]) -> None:
    service, output = live
    script = ["hello", "are you a bot?", "thanks", "bye"] * 3
    for text in script:
        service.submit(msg("alice", text))
        service.submit(msg("bob", "thanks"))
    replies = await output.wait_for("alice", len(script))
    expected_start = {"hello": "Hi!", "are you a bot?": "I'm the shop's", "thanks": "You're welcome", "bye": "Goodbye"}
    assert [r.text and r.text.startswith(expected_start[t]) for r, t in zip(replies, script, strict=True)] == [True] * len(script)
    assert len(await output.wait_for("bob", len(script))) == len(script)
    assert ("alice", True) in output.typing and ("alice", False) in output.typing


async def test_the_same_message_id_is_sent_to_rasa_once(live: tuple[ConversationService, RecordingOutput]) -> None:
    service, output = live
    first = service.submit(msg("carol", "thanks", message_id="m-1"))
    again = service.submit(msg("carol", "thanks", message_id="m-1"))
    assert again.duplicate and not first.duplicate
    assert await again.replies == await first.replies
    await settled(service)  # nothing else is waiting for or in a turn
    assert len(output.sent["carol"]) == 1
    assert [e.role for e in service.transcripts.history("test:carol")] == ["shopper", "bot"]


async def test_unreachable_rasa_gets_one_holding_reply_and_keeps_messages(
        unreachable: tuple[ConversationService, RecordingOutput]) -> None:
    service, output = unreachable
    turns = [service.submit(msg("dave", text)) for text in ["hello", "thanks", "bye"]]
    holding = await output.wait_for("dave", 1)
    assert holding[0].holding and "saved" in (holding[0].text or "")
    await asyncio.wait_for(turns[2].held.wait(), 5)
    await asyncio.sleep(1.0)
    assert len(output.sent["dave"]) == 1  # one notice per outage, not one per retry or message
    assert service.pending("test:dave") == 3
    assert service.metrics.value("rasa_failures_total") >= 2
    with pytest.raises(QueueFull):
        service.submit(msg("dave", "one too many"))
    assert all(not t.replies.done() for t in turns)


async def test_empty_reply_from_a_crashed_action_is_counted_and_apologised_for(
        rasa_install: tuple[Path, Path], tmp_path: Path) -> None:
    venv, model = rasa_install
    # A Rasa whose action server is gone: custom actions fail and the REST channel answers [].
    broken = RasaProcesses(venv=venv, model=model, rasa_port=free_port(), actions_port=free_port(),
                           log_dir=tmp_path)
    broken.start_server()
    try:
        await asyncio.to_thread(lambda: _wait(broken))
        service, output = await make_service(broken.rasa_url)
        try:
            turn = service.submit(msg("erin", "what is your return policy?"))
            replies = await asyncio.wait_for(turn.replies, 30)
            assert len(replies) == 1 and "something went wrong on our side" in (replies[0].text or "")
            assert service.metrics.value("rasa_empty_replies_total") == 1
        finally:
            await service.close()
            await service.rasa.close()
    finally:
        broken.stop()


def _wait(procs: RasaProcesses) -> None:
    import time

    deadline = time.monotonic() + 180
    while not procs.server_ready():
        if time.monotonic() > deadline:
            raise AssertionError("Rasa did not start")
        time.sleep(0.5)
