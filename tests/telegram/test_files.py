"""Photos and documents a shopper sends (damage evidence) reach the conversation as attachments
that flows and agents can fetch through the gateway — and only those files can be fetched."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.telegram.conftest import TelegramGateway

PHOTO = b"\xff\xd8\xff\xe0 fake jpeg of a crushed shoe box " * 50
RECEIPT = b"%PDF-1.4 fake receipt"


async def last_user_event(tg: TelegramGateway, chat_id: int) -> dict[str, Any]:
    """What Rasa received as the shopper's latest message (text and metadata)."""
    url = f"{tg.gateway.settings.rasa_url}/conversations/telegram:{chat_id}/tracker"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        tracker = await resp.json()
    return [e for e in tracker["events"] if e["event"] == "user"][-1]  # type: ignore[no-any-return]


async def test_a_photo_reaches_the_conversation_and_can_be_fetched_through_the_gateway(
        tg: TelegramGateway, chat_id: int) -> None:
    tg.fake.add_file("AgACAgPhotoOfDamage", PHOTO, "photos/file_7.jpg")
    tg.fake.add_file("AgACAgSomeoneElsesFile", b"private", "photos/file_8.jpg")
    await tg.fake.deliver(tg.fake.photo_update(chat_id, "AgACAgPhotoOfDamage"))
    await tg.fake.wait_sent(chat_id)  # the assistant answered the photo
    event = await last_user_event(tg, chat_id)
    assert event["text"] == "/share_attachment"  # files only: never read as words
    [attachment] = event["metadata"]["attachments"]
    assert attachment["kind"] == "image"
    assert attachment["url"] == f"{tg.url}/telegram/files/AgACAgPhotoOfDamage"  # the largest size
    async with aiohttp.ClientSession() as http:
        async with http.get(attachment["url"]) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/jpeg"
            assert await resp.read() == PHOTO
        # No open proxy: ids no shopper sent here (even if Telegram has them) are not served.
        for file_id in ("AgACAgSomeoneElsesFile", "nope"):
            async with http.get(f"{tg.url}/telegram/files/{file_id}") as resp:
                assert resp.status == 404


async def test_a_document_with_a_caption_keeps_the_caption_as_text(tg: TelegramGateway, chat_id: int) -> None:
    tg.fake.add_file("BQACAgReceipt", RECEIPT, "documents/file_3.pdf")
    await tg.fake.deliver(tg.fake.document_update(chat_id, "BQACAgReceipt", "receipt.pdf", "application/pdf",
                                                  caption="the box arrived crushed"))
    await tg.fake.wait_sent(chat_id)
    event = await last_user_event(tg, chat_id)
    assert event["text"] == "the box arrived crushed"
    [attachment] = event["metadata"]["attachments"]
    assert (attachment["kind"], attachment["name"], attachment["mime_type"]) == ("file", "receipt.pdf",
                                                                                 "application/pdf")
    async with aiohttp.ClientSession() as http, http.get(attachment["url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="receipt.pdf"')
        assert await resp.read() == RECEIPT


async def test_an_album_of_three_photos_is_one_turn_with_one_answer(tg: TelegramGateway, chat_id: int) -> None:
    for n in range(3):
        tg.fake.add_file(f"AgACAgAlbum{n}", PHOTO, f"photos/album_{n}.jpg")
    await tg.fake.deliver(tg.fake.text_update(chat_id, "I want to return the boots from AS10002"))
    await tg.fake.wait_sent(chat_id)
    before = len(tg.fake.sent(chat_id))
    for n in range(3):  # Telegram sends an album as one update per photo, sharing media_group_id
        await tg.fake.deliver(tg.fake.photo_update(chat_id, f"AgACAgAlbum{n}", media_group_id="13579"))
    await tg.fake.wait_sent(chat_id, before + 1)
    await tg.settled()
    answers = tg.fake.sent(chat_id)[before:]
    assert len(answers) == 1, [a.params.get("text") for a in answers]  # one reply, not three confused ones
    assert "Goodbye" not in answers[0].params.get("text", "")
    event = await last_user_event(tg, chat_id)
    assert event["text"] == "/share_attachment"
    assert [a["url"].rsplit("/", 1)[-1] for a in event["metadata"]["attachments"]] == \
        ["AgACAgAlbum0", "AgACAgAlbum1", "AgACAgAlbum2"]
