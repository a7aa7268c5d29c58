"""Long polling, for shops without a public URL: the gateway asks the (fake) Bot API for updates."""

from __future__ import annotations

from pathlib import Path

from tests.fake_rasa import FakeRasa
from tests.telegram.conftest import new_chat_id, telegram_gateway
from tests.telegram.fake_bot_api import FakeBotAPI


async def test_polling_end_to_end_survives_telegram_errors_and_confirms_updates(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI) -> None:
    chat_id = new_chat_id()
    fake.webhook_url = "https://old.example/telegram/webhook"  # left over from an earlier set-up
    fake.fail_next("getUpdates", 2, status=500)
    async with telegram_gateway(tmp_path, fake_rasa.url, fake, mode="polling"):
        hello = fake.queue_update(fake.text_update(chat_id, "hello"))
        [greeting] = await fake.wait_sent(chat_id)
        assert "after-sales assistant" in greeting.params["text"]
        assert fake.calls_of("deleteWebhook") and not fake.webhook_url
        fake.queue_update(fake.press_update(chat_id, "Return / refund"))
        replies = await fake.wait_sent(chat_id, 2)
        assert replies[1].params["text"].startswith("I can sort this out for you")
        assert len(fake.calls_of("answerCallbackQuery")) == 1
        # The keyboard goes while the turn runs: it may go just after the answer came.
        await fake.wait_until(lambda: "reply_markup" not in fake.message(chat_id, greeting.result["message_id"]), 10)
        # Updates are confirmed: later getUpdates calls ask past them.
        await fake.wait_until(lambda: any(int(c.params.get("offset", 0) or 0) > hello["update_id"] + 1
                                          for c in fake.calls_of("getUpdates")))
        assert [c.status for c in fake.calls_of("getUpdates")][:2] == [500, 500]


async def test_polling_answers_an_update_served_twice_once(
        fake_rasa: FakeRasa, tmp_path: Path, fake: FakeBotAPI) -> None:
    chat_id = new_chat_id()
    update = fake.text_update(chat_id, "hello")
    async with telegram_gateway(tmp_path, fake_rasa.url, fake, mode="polling") as tg:
        fake.queue_update(update)
        await fake.wait_sent(chat_id)
        fake.queue_update(dict(update))  # Telegram serves it again (e.g. the offset was not confirmed)
        await fake.wait_until(lambda: not fake.pending_updates())  # fetched and confirmed again
        await tg.settled()
        assert len(fake.sent(chat_id)) == 1
