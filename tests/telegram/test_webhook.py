"""A shopper on Telegram (webhook mode): updates as Telegram posts them, through the real webhook
endpoint, answered by the real Rasa; what the shopper sees is what reached the fake Bot API."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from bot.messages import Button, OutboundReply
from tests.conftest import make_settings, start_gateway, tasks_finished
from tests.fake_rasa import FakeRasa
from tests.telegram.conftest import WEBHOOK_SECRET, TelegramGateway
from tests.telegram.fake_bot_api import SECRET_HEADER, FakeBotAPI


def keyboard(call_params: dict[str, object]) -> list[tuple[str, str]]:
    markup = call_params.get("reply_markup") or {}
    assert isinstance(markup, dict)
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


async def test_webhook_is_registered_with_the_public_url_and_secret(tg: TelegramGateway) -> None:
    [call] = tg.fake.calls_of("setWebhook")
    assert call.params["url"] == f"{tg.url}/telegram/webhook"
    assert call.params["secret_token"] == WEBHOOK_SECRET
    assert set(call.params["allowed_updates"]) >= {"message", "callback_query"}


async def test_hello_gets_the_assistants_answer_with_inline_buttons_after_typing(
        tg: TelegramGateway, chat_id: int) -> None:
    assert await tg.fake.deliver(tg.fake.text_update(chat_id, "hello")) == 200
    [reply] = await tg.fake.wait_sent(chat_id)
    assert "after-sales assistant" in reply.params["text"]
    assert keyboard(reply.params) == [("Return / refund", "/request_return"), ("Exchange", "/request_exchange"),
                                      ("Make a complaint", "/file_complaint"), ("Track a case", "/check_progress"),
                                      ("Talk to a person", "/request_human")]
    typing = [c for c in tg.fake.calls_of("sendChatAction") if c.params["chat_id"] == str(chat_id)]
    assert typing and typing[0].params["action"] == "typing" and typing[0].at < reply.at


async def test_missing_or_wrong_secret_is_refused_and_nothing_is_processed(tg: TelegramGateway, chat_id: int) -> None:
    update = tg.fake.text_update(chat_id, "hello")
    assert await tg.post_webhook(update) == 401
    assert await tg.post_webhook(update, headers={SECRET_HEADER: "not-the-secret-at-all"}) == 401
    assert await tg.post_webhook(update, headers={SECRET_HEADER: WEBHOOK_SECRET[:-1]}) == 401
    await tg.settled()
    assert tg.fake.sent(chat_id, ok_only=False) == []
    assert not [c for c in tg.fake.calls_of("sendChatAction") if c.params["chat_id"] == str(chat_id)]
    # The refused deliveries were not even remembered: Telegram's own delivery is answered.
    assert await tg.fake.deliver(update) == 200
    await tg.fake.wait_sent(chat_id)


async def test_the_same_update_delivered_twice_is_answered_once(tg: TelegramGateway, chat_id: int) -> None:
    update = tg.fake.text_update(chat_id, "hello")
    assert await tg.fake.deliver(update) == 200
    assert await tg.fake.deliver(update) == 200
    await tg.fake.wait_sent(chat_id)
    await tg.settled()
    assert len(tg.fake.sent(chat_id)) == 1


async def test_pressing_a_button_runs_its_payload_answers_the_press_and_removes_the_keyboard(
        tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    [greeting] = await tg.fake.wait_sent(chat_id)
    press = tg.fake.press_update(chat_id, "Return / refund")
    assert await tg.fake.deliver(press) == 200
    replies = await tg.fake.wait_sent(chat_id, 2)
    assert replies[1].params["text"].startswith("I can sort this out for you")
    assert [c.params["callback_query_id"] for c in tg.fake.calls_of("answerCallbackQuery")] == \
        [press["callback_query"]["id"]]
    # The keyboard goes while the turn runs: it may go just after the answer came.
    await tg.fake.wait_until(lambda: bool(tg.fake.calls_of("editMessageReplyMarkup")), 10)
    [edit] = tg.fake.calls_of("editMessageReplyMarkup")
    assert int(edit.params["message_id"]) == greeting.result["message_id"]
    assert "reply_markup" not in tg.fake.message(chat_id, greeting.result["message_id"])


async def test_asking_for_a_person_shows_the_text_never_the_handoff_signal(tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    await tg.fake.wait_sent(chat_id)
    await tg.fake.deliver(tg.fake.press_update(chat_id, "Talk to a person"))
    replies = await tg.fake.wait_sent(chat_id, 2)
    assert "passing you to a person" in replies[1].params["text"]
    await tg.settled()
    assert not any("handoff" in text or "{" in text for text in tg.fake.texts(chat_id))


async def test_chinese_shopper_is_answered_in_chinese(tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "你好", language_code="zh-hans"))
    [reply] = await tg.fake.wait_sent(chat_id)
    assert "售后助手" in reply.params["text"]
    assert [title for title, _ in keyboard(reply.params)] == ["退货退款", "换货", "投诉", "查询进度", "转人工客服"]


async def test_language_code_alone_sets_the_language(tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hi", language_code="zh-hans"))
    [reply] = await tg.fake.wait_sent(chat_id)
    assert "售后助手" in reply.params["text"]


async def test_start_command_greets_the_shopper(tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "/start"))
    [reply] = await tg.fake.wait_sent(chat_id)
    assert "after-sales assistant" in reply.params["text"]


async def test_a_long_reply_is_split_under_telegrams_limit_with_the_buttons_on_the_last_part(
        tg: TelegramGateway, chat_id: int) -> None:
    paragraphs = [f"Paragraph {i}: " + "returns are free within thirty days " * 20 for i in range(20)]
    text = "\n".join(paragraphs)
    assert len(text) > 3 * 4096
    async with aiohttp.ClientSession() as http:  # Telegram (and the fake) refuse it whole
        async with http.post(f"{tg.fake.base_url}/bot{tg.fake.token}/sendMessage",
                             json={"chat_id": chat_id, "text": text}) as resp:
            assert resp.status == 400
    tg.fake.calls.clear()
    reply = OutboundReply(text=text, buttons=(Button("Return policy", "/ask_return_policy"),))
    await tg.channel.output.send_reply(str(chat_id), reply)
    sent = tg.fake.sent(chat_id, ok_only=False)
    assert len(sent) >= 4 and all(c.ok for c in sent)  # the fake refuses anything over 4096
    assert all(len(c.params["text"]) <= 4096 for c in sent)
    assert "".join(c.params["text"] for c in sent).replace("\n", "").replace(" ", "") == \
        text.replace("\n", "").replace(" ", "")
    assert all(c.params["text"].rstrip().endswith("days") for c in sent)  # cut between words/lines
    assert [bool(keyboard(c.params)) for c in sent] == [False] * (len(sent) - 1) + [True]


async def test_a_payload_too_long_for_telegram_still_reaches_the_assistant_whole(
        tg: TelegramGateway, chat_id: int) -> None:
    payload = '/ask_return_policy{"order_note": "' + "leather shoes, size 42, box damaged " * 3 + '"}'
    assert len(payload.encode()) > 64
    await tg.channel.output.send_reply(str(chat_id), OutboundReply(
        text="About your order:", buttons=(Button("Return policy", payload),)))
    [offer] = tg.fake.sent(chat_id, ok_only=False)
    assert offer.ok  # Telegram refuses callback_data over 64 bytes
    assert len(keyboard(offer.params)[0][1].encode()) <= 64
    await tg.fake.deliver(tg.fake.press_update(chat_id, "Return policy"))
    replies = await tg.fake.wait_sent(chat_id, 2)
    assert replies[1].params["text"].startswith("Our return policy:")
    tracker_url = f"{tg.gateway.settings.rasa_url}/conversations/telegram:{chat_id}/tracker"
    async with aiohttp.ClientSession() as http, http.get(tracker_url) as resp:
        tracker = await resp.json()
    user_texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert user_texts[-1] == payload


async def test_images_are_sent_as_photos_and_a_link_when_telegram_cannot_fetch_them(
        tg: TelegramGateway, chat_id: int) -> None:
    await tg.channel.output.send_reply(str(chat_id), OutboundReply(image="https://shop.example/return-label.png"))
    await tg.channel.output.send_reply(str(chat_id), OutboundReply(image="ftp://shop.example/label.png"))
    sent = tg.fake.sent(chat_id, ok_only=False)
    assert [(c.method, c.status) for c in sent] == [("sendPhoto", 200), ("sendPhoto", 400), ("sendMessage", 200)]
    assert sent[0].params["photo"] == "https://shop.example/return-label.png"
    assert sent[2].params["text"] == "ftp://shop.example/label.png"


async def test_a_text_longer_than_the_gateways_limit_is_cut_like_every_channel_cuts(
        tg: TelegramGateway, chat_id: int) -> None:
    await tg.fake.deliver(tg.fake.text_update(chat_id, "I want to return my shoes " + "x" * 5000))
    await tg.fake.wait_sent(chat_id)
    tracker = await tg.gateway.service.rasa.tracker(f"telegram:{chat_id}")
    said = [e for e in tracker["events"] if e["event"] == "user"][-1]["text"]
    assert len(said) == tg.gateway.settings.max_text_length  # not 5026 characters into Rasa


async def test_a_gateway_that_cannot_bind_never_points_the_webhook_at_itself(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI) -> None:
    """Port taken: the start fails with a clear error and Telegram's webhook is left alone
    (before, setWebhook ran first and pointed the bot at a gateway that was not there)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(tmp_path, fake_rasa.url, port=port, public_url=f"http://127.0.0.1:{port}",
                                 environ={"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE": fake.base_url,
                                          "TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET})
        before = asyncio.all_tasks()
        with pytest.raises(OSError):
            await start_gateway(settings)
        await tasks_finished(before)  # the failed start left nothing running that could still call Telegram
        assert fake.calls_of("setWebhook") == [] and fake.calls_of("deleteWebhook") == []
