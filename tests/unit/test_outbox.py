"""Replies kept for REST and socket.io clients that are away: bounded per key, by keys and by age."""

from __future__ import annotations

from bot.outbox import Outbox


def test_a_client_gone_for_good_costs_nothing_for_ever() -> None:
    now = [0.0]
    box: Outbox[str] = Outbox(per_key=3, max_keys=100, max_age=60, clock=lambda: now[0])
    for n in range(5):
        box.put("a", f"reply {n}")
    assert box.take("a") == ["reply 2", "reply 3", "reply 4"]  # the newest, at most per_key
    assert box.take("a") == []  # taken once
    for n in range(1000):
        box.put(f"sender-{n}", "hello")
    assert len(box) == 100  # the least recently used senders went first
    box.put("late", "old news")
    now[0] += 61
    box.put("fresh", "new")
    assert box.take("late") == [] and len(box) == 1  # an hour-old reply is not delivered, nor kept
    assert box.take("fresh") == ["new"]
