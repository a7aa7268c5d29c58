"""One case, any channel, on the real engine: a shopper makes a return on the web chat (the
real return flow), taps "Continue on another app", opens the Telegram deep link (the fake Bot
API delivers `/start <code>`), asks there where the return is (the real progress flow knows
the case), asks for a person (the agent sees one conversation: both channels, the web chat's
words), and is told on Telegram when the shop issues the refund (the signed status endpoint);
the same event again, or unsigned, changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient
from tests.flows.conftest import Shopper, buttons, text
from tests.flows.test_case_updates import SECRET, cases, event, post
from tests.handoff.conftest import ConsoleClient, team_environ
from tests.telegram.conftest import new_chat_id, telegram_gateway
from tests.telegram.fake_bot_api import FakeBotAPI

pytestmark = pytest.mark.e2e


async def test_a_return_made_on_the_web_chat_goes_on_in_telegram(
        rasa_stack: RasaProcesses, fake: FakeBotAPI, tmp_path: Path) -> None:
    environ = {**team_environ(tmp_path), "SHOP_EVENTS_SECRET": SECRET}
    async with telegram_gateway(tmp_path, rasa_stack.rasa_url, fake, **environ) as tg:
        gateway = tg.gateway
        chat = await ChatClient.connect(gateway.ws_url, locale="en-GB")
        shopper = Shopper(gateway, chat, "en-GB")
        alice: ConsoleClient | None = None
        try:
            # The real return flow on the web chat.
            await shopper.say("I want to return my order")
            await shopper.say("AS10001")
            await shopper.say("I just changed my mind")
            r = await shopper.say("yes, still unworn")
            r = await shopper.press(r, "pickup")
            assert "Return accepted" in text(r), text(r)
            web_key = f"webchat:{chat.conversation_id}"
            [case] = [c for c in cases(gateway).for_conversation_sync(web_key) if c.kind == "return"]
            assert "/continue_elsewhere" in buttons(r)

            # "Continue on another app": a code and the Telegram deep link.
            offer = text(await shopper.press(r, "/continue_elsewhere"))
            code = re.search(r"https://t\.me/shop_test_bot\?start=([A-Z2-9]{8})", offer)
            assert code, offer
            chat_id = new_chat_id()
            assert await fake.deliver(fake.text_update(chat_id, f"/start {code.group(1)}")) == 200
            await fake.wait_until(lambda: any("Welcome back" in t for t in fake.texts(chat_id)), timeout=30)
            assert any(case.id in t for t in fake.texts(chat_id))

            # On Telegram the bot knows the case: the real progress flow answers with it.
            seen = len(fake.texts(chat_id))
            assert await fake.deliver(fake.text_update(chat_id, "where is my return?")) == 200
            await fake.wait_until(lambda: any(case.id in t and "pick-up booked" in t
                                              for t in fake.texts(chat_id)[seen:]), timeout=30)

            # A person: one conversation, both channels, the web chat's words in it.
            alice = await ConsoleClient.sign_in(gateway.url, "alice")
            assert await fake.deliver(fake.text_update(chat_id, "I want to talk to a human")) == 200
            tg_key = f"telegram:{chat_id}"
            state = await alice.state_where(lambda s: any(i["key"] == tg_key for i in s["queue"]), timeout=30)
            item = next(i for i in state["queue"] if i["key"] == tg_key)
            assert item["channels"] == ["webchat", "telegram"]
            await alice.send(type="open", key=tg_key)
            said = [(e["role"], e["text"]) for e in (await alice.next("conversation"))["transcript"]]
            assert ("shopper", "I just changed my mind") in said
            assert ("system", "Carried over from the web chat") in said

            # The shop issues the refund: told on Telegram, once; unsigned or replayed, nothing.
            refund = event(case, "refund_issued")
            assert (await post(gateway, refund, signed=False))[0] == 401
            assert await post(gateway, refund) == (200, {"told": True})
            assert await post(gateway, refund) == (200, {"duplicate": True, "told": False})
            await fake.wait_until(lambda: any("your refund of" in t for t in fake.texts(chat_id)), timeout=30)
            await tg.settled()
            assert len([t for t in fake.texts(chat_id) if "your refund of" in t]) == 1
            assert await chat.unread_replies(gateway) == []  # not on the web chat any more
        finally:
            await chat.close()
            if alice is not None:
                await alice.close()
