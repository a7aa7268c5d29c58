"""A Telegram shopper handed to a person and back, exactly as on web chat: the handoff module
relays through the Telegram channel without knowing it is Telegram."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from handoff import HANDOFF_KEY
from handoff.canned import fill
from tests.telegram.conftest import TelegramGateway


async def test_a_telegram_shopper_is_handed_to_an_agent_and_back(tg: TelegramGateway, chat_id: int) -> None:
    handoff = tg.gateway.app[HANDOFF_KEY]
    key = f"telegram:{chat_id}"
    await tg.fake.deliver(tg.fake.text_update(chat_id, "hello"))
    await tg.fake.wait_sent(chat_id)
    await tg.fake.deliver(tg.fake.press_update(chat_id, "Talk to a person"))
    await tg.fake.wait_until(lambda: any("passing you to a person" in t for t in tg.fake.texts(chat_id)))
    await tg.fake.wait_until(lambda: any("ticket" in t for t in tg.fake.texts(chat_id)))  # no agent online yet

    won, _ = await handoff.claim("demo", key)  # the demo agent created on first start
    assert won
    # The shopper's first name, as Telegram gives it, greets them in the agent's canned replies.
    values = (await handoff.conversation_view(key))["values"]
    assert values["name"] == "Ana"
    assert fill("{name}, thanks for waiting!", values, "en") == "Hi Ana, thanks for waiting!"
    await tg.fake.wait_until(lambda: any("Demo Agent" in t for t in tg.fake.texts(chat_id)))

    # With a person on the conversation, the shopper's photo goes to the agent, not to Rasa.
    tg.fake.add_file("AgACAgBrokenHeel", b"jpeg bytes of a broken heel", "photos/file_9.jpg")
    before = len(tg.fake.sent(chat_id))
    await tg.fake.deliver(tg.fake.photo_update(chat_id, "AgACAgBrokenHeel", caption="the heel broke"))
    await tg.settled()
    assert len(tg.fake.sent(chat_id)) == before
    view = await handoff.conversation_view(key)
    [from_shopper] = [e for e in view["transcript"] if e.get("text") == "the heel broke"]
    async with aiohttp.ClientSession() as http, http.get(from_shopper["attachments"][0]["url"]) as resp:
        assert await resp.read() == b"jpeg bytes of a broken heel"

    await handoff.reply("demo", key, "Sorry about that! A replacement is on its way.")
    await tg.fake.wait_until(lambda: "Demo Agent: Sorry about that! A replacement is on its way."
                             in tg.fake.texts(chat_id))

    await handoff.hand_back("demo", key)
    await tg.fake.wait_until(lambda: any("back with the assistant" in t for t in tg.fake.texts(chat_id)))
    await tg.fake.deliver(tg.fake.text_update(chat_id, "thanks"))
    await tg.fake.wait_until(lambda: tg.fake.texts(chat_id)[-1].startswith("You're welcome"))


async def test_the_satisfaction_question_comes_as_telegram_buttons_and_a_tap_answers_it(
        tg: TelegramGateway, chat_id: int) -> None:
    handoff = tg.gateway.app[HANDOFF_KEY]
    key = f"telegram:{chat_id}"
    await tg.fake.deliver(tg.fake.text_update(chat_id, "你好", language_code="zh-hans"))
    await tg.fake.wait_sent(chat_id)
    await tg.fake.deliver(tg.fake.text_update(chat_id, "转人工", language_code="zh-hans"))
    for _ in range(200):  # until the conversation is in the queue
        if await handoff.store.get(key) is not None:
            break
        await asyncio.sleep(0.05)
    won, _ = await handoff.claim("demo", key)
    assert won
    await handoff.resolve("demo", key, "resolved")
    await tg.fake.wait_until(lambda: any("满意" in t for t in tg.fake.texts(chat_id)))
    [survey] = [c for c in tg.fake.sent(chat_id) if "满意" in str(c.params.get("text"))]
    keyboard = survey.params["reply_markup"]
    keyboard = keyboard if isinstance(keyboard, dict) else json.loads(keyboard)
    assert [b["text"] for row in keyboard["inline_keyboard"] for b in row] == ["1", "2", "3", "4", "5"]
    await tg.fake.deliver(tg.fake.press_update(chat_id, "4", language_code="zh-hans"))
    await tg.fake.wait_until(lambda: any("感谢您的评价" in t for t in tg.fake.texts(chat_id)))
    record = await handoff.store.get(key)
    assert record is not None and record.csat == 4
