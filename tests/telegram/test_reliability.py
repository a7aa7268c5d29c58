"""What happens when Telegram pushes back: 429 flood control, a shopper who blocked the bot,
Telegram failing (5xx) — replies are not lost or reordered, not retried forever, and the
other channels keep working."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp
import pytest

from tests.fake_rasa import FakeRasa
from tests.telegram.conftest import TelegramGateway, new_chat_id, telegram_gateway
from tests.telegram.fake_bot_api import FakeBotAPI


async def test_rate_limit_delays_replies_without_losing_or_reordering_them(tg: TelegramGateway, chat_id: int) -> None:
    tg.fake.fail_next("sendMessage", 1, status=429, retry_after=1)
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    await tg.fake.deliver(tg.fake.text_update(chat_id, "thanks"))
    await tg.fake.deliver(tg.fake.text_update(chat_id, "bye"))
    replies = await tg.fake.wait_sent(chat_id, 3)
    [limited] = [c for c in tg.fake.sent(chat_id, ok_only=False) if c.status == 429]
    assert "after-sales assistant" in replies[0].params["text"]
    assert replies[0].params["text"] == limited.params["text"]  # the same message, sent again
    assert replies[0].at - limited.at >= 0.95  # retry_after honoured
    assert replies[1].params["text"].startswith("You're welcome")
    assert replies[2].params["text"].startswith("Goodbye")
    await tg.settled()
    assert len(tg.fake.sent(chat_id)) == 3


async def test_one_chat_waiting_out_a_rate_limit_does_not_hold_up_another(tg: TelegramGateway) -> None:
    slow, other = new_chat_id(), new_chat_id()
    tg.fake.fail_next("sendMessage", 1, status=429, retry_after=3)
    await tg.fake.deliver(tg.fake.text_update(slow, "hello"))
    await tg.fake.wait_until(lambda: any(c.status == 429 for c in tg.fake.calls_of("sendMessage")))
    limited_at = time.monotonic()
    await tg.fake.deliver(tg.fake.text_update(other, "hello"))
    [other_reply] = await tg.fake.wait_sent(other)
    assert other_reply.at - limited_at < 2.5
    [slow_reply] = await tg.fake.wait_sent(slow)
    assert slow_reply.at > other_reply.at


async def test_a_shopper_who_blocked_the_bot_is_marked_and_not_retried(
        tg: TelegramGateway, chat_id: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.telegram")
    tg.fake.fail_next("sendMessage", 1, status=403)
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    await tg.fake.wait_until(lambda: len(tg.fake.sent(chat_id, ok_only=False)) == 1)
    # Later replies to that chat (an agent's message, a late answer) are dropped, not sent.
    for _ in range(3):
        await tg.channel.output.send_text(str(chat_id), "Are you still there?")
    await tg.settled()
    assert [c.status for c in tg.fake.sent(chat_id, ok_only=False)] == [403]
    assert await tg.channel.state.is_blocked(str(chat_id))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "blocked the bot" in r.getMessage()]
    assert len(warnings) == 1
    assert any("dropped" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    # The shopper unblocks the bot and writes again: answered as usual.
    await tg.fake.deliver(tg.fake.membership_update(chat_id, "member"))
    await tg.fake.deliver(tg.fake.text_update(chat_id, "thanks"))
    [reply] = await tg.fake.wait_sent(chat_id)
    assert reply.params["text"].startswith("You're welcome")


async def test_blocking_reported_by_telegram_stops_replies_before_any_403(tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.membership_update(chat_id, "kicked"))
    await tg.fake.wait_until(lambda: bool(tg.fake.webhook_statuses))
    await tg.settled()
    await tg.channel.output.send_text(str(chat_id), "An agent will contact you.")
    assert tg.fake.sent(chat_id, ok_only=False) == []


async def test_server_errors_are_retried_and_the_reply_arrives(tg: TelegramGateway, chat_id: int) -> None:
    tg.fake.fail_next("sendMessage", 2, status=500)
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    [reply] = await tg.fake.wait_sent(chat_id)
    assert "after-sales assistant" in reply.params["text"]
    assert [c.status for c in tg.fake.sent(chat_id, ok_only=False)] == [500, 500, 200]


async def test_a_telegram_outage_is_bounded_and_does_not_block_web_chat(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI) -> None:
    chat_id = new_chat_id()
    async with telegram_gateway(tmp_path, fake_rasa.url, fake, TELEGRAM_SEND_RETRIES="2") as tg:
        fake.fail_next("sendMessage", 1000, status=502)
        fake.fail_next("sendChatAction", 1000, status=502)
        assert await fake.deliver(fake.text_update(chat_id, "hello")) == 200
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{tg.url}/webhooks/rest/webhook",
                                 json={"sender": f"shopper-{chat_id}", "message": "hello"}) as resp:
                assert resp.status == 200
                answer = await resp.json()
        assert "after-sales assistant" in answer[0]["text"]
        assert time.monotonic() - started < 5
        await fake.wait_until(lambda: len(fake.sent(chat_id, ok_only=False)) >= 3, timeout=10)
        await tg.settled()
        assert [c.status for c in fake.sent(chat_id, ok_only=False)] == [502, 502, 502]  # 1 try + 2 retries
        assert tg.gateway.service.metrics.value("delivery_failures_total", channel="telegram") == 1
        # Telegram is back: the next message is answered normally.
        fake.recover()
        await fake.deliver(fake.text_update(chat_id, "thanks"))
        [reply] = await fake.wait_sent(chat_id)
        assert reply.params["text"].startswith("You're welcome")
