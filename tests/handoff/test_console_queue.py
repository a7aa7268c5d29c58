"""The console under a real queue: what it is sent to sort, search and answer with (the
browser side is tests/handoff_browser/test_console_queue_browser.py)."""

from __future__ import annotations

from handoff.service import queue_order
from handoff.store import Handoff
from tests.conftest import ChatClient, RunningGateway
from tests.handoff.conftest import ConsoleClient

ALLERGY_EN = "my face got a rash from the serum and it really hurts, order AS10005"


def queued(key: str, reason: str, created_at: float, due_in: float = 1800, **detail: str) -> Handoff:
    return Handoff(key=key, channel="webchat", conversation_id=key, reason=reason, language="en",
                   created_at=created_at, first_response_due=created_at + due_in, detail=dict(detail))


def test_the_queue_puts_health_then_severe_then_breached_then_warning_then_the_oldest_first() -> None:
    now = 10_000.0
    handoffs = [
        queued("oldest", "shopper_request", now - 900),
        queued("warning", "fallback", now - 1500, due_in=1800),  # 5 minutes left
        queued("breached", "disputed_refusal", now - 2000, due_in=1800),
        queued("newer", "shopper_request", now - 60),
        queued("severe", "severe_complaint", now - 30, priority="high"),
        queued("allergy", "allergy", now - 10),
        queued("hurt", "allergy", now - 5, priority="high"),
        queued("repeated", "repeated_complaint", now - 600),
    ]
    order = [h.key for h in queue_order(handoffs, now)]
    assert order == ["hurt", "allergy", "severe", "breached", "warning", "oldest", "repeated", "newer"]


async def test_an_allergy_is_first_in_the_queue_with_its_order_and_case(team_gateway: RunningGateway) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chats = [await ChatClient.connect(team_gateway.ws_url) for _ in range(3)]
    hurt = await ChatClient.connect(team_gateway.ws_url)
    try:
        for chat in chats:
            await chat.say("I want to talk to a human")
            await chat.replies_of_the_turn(team_gateway)
        await hurt.say(ALLERGY_EN)
        texts = " ".join(r["text"] or "" for r in await hurt.replies_of_the_turn(team_gateway))
        assert "marked this urgent" in texts
        key = f"webchat:{hurt.conversation_id}"
        state = await alice.state_where(lambda s: len(s["queue"]) == 4)
        first = state["queue"][0]
        assert (first["key"], first["reason"], first["urgency"], first["priority"]) == (key, "allergy", "health", "high")
        assert first["orders"] == ["AS10005"] and first["cases"][0].startswith("RT-")
        assert [i["urgency"] for i in state["queue"][1:]] == [None, None, None]
        assert [i["created_at"] for i in state["queue"][1:]] == sorted(i["created_at"] for i in state["queue"][1:])

        # The case's facts beside the transcript, so the agent does not ask again.
        await alice.send(type="open", key=key)
        view = await alice.next("conversation")
        case = view["cases"][0]
        assert case["id"] == first["cases"][0] and case["order_number"] == "AS10005"
        assert case["facts"]["reason"] == "allergic_reaction" and case["facts"]["item"]["en"] == \
            "Hyaluronic hydrating serum"
        assert view["values"] == {"order": "AS10005", "item": "Hyaluronic hydrating serum", "case": case["id"],
                                  "name": None}
    finally:
        for chat in (*chats, hurt):
            await chat.close()
        await alice.close()
