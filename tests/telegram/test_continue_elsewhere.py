"""One case, any channel (bot/continuation.py): a Chinese shopper whose return was made on the
web chat asks to carry on elsewhere, gets a single-use code with a Telegram deep link, opens it
in Telegram (the fake Bot API delivers `/start <code>` as Telegram does), and the Telegram chat
goes on with the web chat's history, language and case: the agent-facing history shows both
channels, Rasa knows the case and order there, and when the shop says the refund was issued
(the signed status endpoint) the shopper is told on Telegram, in Chinese. The code works once.

The return itself is the flows' own case store and the slots the return flow sets (the fake
Rasa stands in for the engine; tests/flows covers the real return flow)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from tests.conftest import ChatClient
from tests.fake_rasa import FakeRasa
from tests.flows.test_case_updates import SECRET, cases, event, new_return, post
from tests.telegram.conftest import telegram_gateway
from tests.telegram.fake_bot_api import FakeBotAPI


async def rasa_slots(fake_rasa: FakeRasa, key: str) -> dict:
    async with aiohttp.ClientSession() as http, \
            http.get(f"{fake_rasa.url}/conversations/{key}/tracker") as resp:
        return (await resp.json())["slots"]


async def test_a_web_chat_return_continues_on_telegram_by_the_deep_link(
        fake_rasa: FakeRasa, fake: FakeBotAPI, tmp_path: Path, chat_id: int) -> None:
    async with telegram_gateway(tmp_path, fake_rasa.url, fake, SHOP_EVENTS_SECRET=SECRET) as tg:
        gateway = tg.gateway
        shopper = await ChatClient.connect(gateway.ws_url, locale="zh-CN")
        web_key = f"webchat:{shopper.conversation_id}"
        try:
            await shopper.say("你好")
            await shopper.next_frame("reply")
            case = new_return(gateway, web_key, "zh")  # what the return flow made ...
            await gateway.service.rasa.append_events(web_key, [  # ... and what it remembers
                {"event": "slot", "name": "last_case_id", "value": case.id},
                {"event": "slot", "name": "order_number", "value": "AS10001"}])

            await shopper.say("换个渠道继续", payload="/continue_elsewhere")
            offer = (await shopper.next_frame("reply"))["text"]
            link = re.search(r"https://t\.me/shop_test_bot\?start=([A-Z2-9]{8})", offer)
            assert link, offer
            code = link.group(1)
            assert "分钟内使用验证码" in offer and code in offer.split("\n", 1)[0]
            assert "Slack" not in offer  # only the channels this shop has

            counted = gateway.service.metrics.value("conversations_total")
            # Telegram opens the deep link: the app sends "/start <code>".
            assert await fake.deliver(fake.text_update(chat_id, f"/start {code}", language_code="en")) == 200
            await fake.wait_until(lambda: any("欢迎回来" in t for t in fake.texts(chat_id)), timeout=10)
            [welcome] = [t for t in fake.texts(chat_id) if "欢迎回来" in t]
            assert "网页客服" in welcome and case.id in welcome  # in Chinese, the web chat's language
            # The shop's figures count the Telegram chat as the day's conversation it is.
            assert gateway.service.metrics.value("conversations_total") == counted + 1

            tg_key = f"telegram:{chat_id}"
            history = [(e.role, e.text) for e in gateway.service.history(tg_key)]
            assert ("shopper", "你好") in history and ("system", "接续自网页客服") in history
            assert history.index(("shopper", "你好")) < history.index(("system", "接续自网页客服"))
            slots = await rasa_slots(fake_rasa, tg_key)
            assert (slots["last_case_id"], slots["order_number"]) == (case.id, "AS10001")
            assert cases(gateway).get_sync(case.id).conversation_id == tg_key  # the case follows the shopper

            # The shop issues the refund: the shopper hears it on Telegram, in Chinese.
            assert await post(gateway, event(case, "refund_issued")) == (200, {"told": True})
            await fake.wait_until(lambda: any("退款已于" in t for t in fake.texts(chat_id)), timeout=10)
            assert await shopper.unread_replies(gateway) == []  # not on the web chat any more

            # The code was single-use.
            other_chat = chat_id + 1
            assert await fake.deliver(fake.text_update(other_chat, f"/start {code}", language_code="zh-hans")) == 200
            await fake.wait_until(lambda: any("已过期或已被使用" in t for t in fake.texts(other_chat)), timeout=10)
            # Typed codes work too, and a wrong one is refused the same way.
            await shopper.say("continue ABCDEFGH")
            assert "已过期或已被使用" in (await shopper.next_frame("reply"))["text"]
        finally:
            await shopper.close()


async def test_asking_in_words_and_a_channel_less_shop(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    from tests.conftest import make_settings, start_gateway

    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url))
    shopper = await ChatClient.connect(gateway.ws_url)
    try:
        await shopper.say("can I continue this on telegram?")
        said = (await shopper.next_frame("reply"))["text"]
        assert "only on this channel" in said  # no Telegram here: no code that leads nowhere
        await shopper.say("I'd like to switch to the other size")  # an exchange, not a channel switch
        reply = (await shopper.next_frame("reply"))["text"]
        assert "only on this channel" not in reply
    finally:
        await shopper.close()
        await runner.cleanup()
