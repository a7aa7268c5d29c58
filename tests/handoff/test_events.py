"""Handoff events (handoff/events.py): an observer of the handoff service hears each step of a
handoff, in order, with who acted and what was said; an observer that fails changes nothing
for the agent or the shopper."""

from __future__ import annotations

import pytest

from handoff import HANDOFF_KEY
from handoff.events import HandoffEvent, HandoffEventKind
from tests.conftest import ChatClient, RunningGateway, settled
from tests.handoff.conftest import ConsoleClient
from tests.handoff.test_handoff import ask_for_a_person, claim_when_queued


class Recorder:
    def __init__(self) -> None:
        self.events: list[HandoffEvent] = []

    async def handoff_event(self, event: HandoffEvent) -> None:
        self.events.append(event)


class Broken:
    async def handoff_event(self, event: HandoffEvent) -> None:
        raise RuntimeError("this observer always fails")


@pytest.mark.parametrize("first_observer", [Broken, Recorder])
async def test_every_step_of_a_handoff_is_told_in_order(team_gateway: RunningGateway, first_observer: type) -> None:
    service = team_gateway.app[HANDOFF_KEY]
    service.observe(first_observer())  # a broken one first: the next still hears everything
    recorder = Recorder()
    service.observe(recorder)
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        await ask_for_a_person(chat, team_gateway)
        await claim_when_queued(alice, chat, key)
        await chat.say("it arrived broken")
        await alice.next("entry")
        await alice.send(type="reply", key=key, text="Sorry! A replacement is on its way.")
        assert "replacement" in (await chat.next_frame("reply"))["text"]
        await alice.send(type="note", key=key, text="sent SKU again")
        await alice.send(type="resolve", key=key, outcome="replacement_sent")
        assert "How satisfied" in (await chat.next_frame("reply"))["text"]
        await chat.say("5", payload="/csat_5")
        assert "Thank you" in (await chat.next_frame("reply"))["text"]
        await settled(team_gateway.service)  # the survey answer's turn, its observers included, is over
    finally:
        await chat.close()
        await alice.close()
    kinds = [e.kind for e in recorder.events]
    assert kinds == [HandoffEventKind.QUEUED, HandoffEventKind.CLAIMED, HandoffEventKind.SHOPPER_MESSAGE,
                     HandoffEventKind.AGENT_REPLY, HandoffEventKind.NOTE, HandoffEventKind.RESOLVED,
                     HandoffEventKind.CSAT]
    by_kind = {e.kind: e for e in recorder.events}
    assert by_kind[HandoffEventKind.QUEUED].handoff.reason == "shopper_request"
    assert by_kind[HandoffEventKind.CLAIMED].agent == "alice"
    assert by_kind[HandoffEventKind.SHOPPER_MESSAGE].text == "it arrived broken"
    assert by_kind[HandoffEventKind.AGENT_REPLY].handoff.first_response_at is not None
    assert by_kind[HandoffEventKind.NOTE].text == "sent SKU again"
    assert by_kind[HandoffEventKind.RESOLVED].handoff.outcome == "replacement_sent"
    assert by_kind[HandoffEventKind.CSAT].score == 5 and by_kind[HandoffEventKind.CSAT].handoff.csat == 5
    assert all(e.handoff.key == key for e in recorder.events)
    assert [e.at for e in recorder.events] == sorted(e.at for e in recorder.events)
