"""A web chat shopper attaches a photo: it is stored, reaches the flows as an attachment,
and can be opened through its signed link only."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from channels.webchat import WEBCHAT_KEY
from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway

pytestmark = pytest.mark.e2e

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")


async def upload(gateway: RunningGateway, token: str | None, data: bytes = PNG,
                 content_type: str = "image/png") -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="parcel.png", content_type=content_type)
    headers = {"X-Webchat-Token": token} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway.url}/webchat/upload", data=form, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_photo_reaches_rasa_and_opens_only_with_its_signed_link(
        chat: ChatClient, gateway: RunningGateway, rasa_stack: RasaProcesses) -> None:
    status, stored = await upload(gateway, chat.token)
    assert status == 200 and stored["kind"] == "image"
    await chat.ws.send_json({"type": "message", "id": "photo-1", "text": "", "attachments": [stored["id"]]})
    assert (await chat.next_frame("ack", "error")) == {"type": "ack", "id": "photo-1"}
    await chat.next_frame("reply")

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_stack.rasa_url}/conversations/webchat:{chat.conversation_id}/tracker") as resp:
            tracker = await resp.json()
        user = next(e for e in tracker["events"] if e["event"] == "user")
        (attachment,) = user["metadata"]["attachments"]
        assert attachment["kind"] == "image" and attachment["name"] == "parcel.png"
        async with session.get(attachment["url"]) as resp:
            assert resp.status == 200 and await resp.read() == PNG
            assert resp.headers["Content-Type"] == "image/png"
        forged = attachment["url"].split("?sig=")[0] + "?sig=AAAAAAAAAAAAAAAAAAAAAAAA"
        async with session.get(forged) as resp:
            assert resp.status == 404


async def test_upload_refusals(chat: ChatClient, gateway: RunningGateway) -> None:
    assert (await upload(gateway, None))[0] == 401
    assert (await upload(gateway, chat.token.split(".")[0] + ".forged"))[0] == 401
    status, body = await upload(gateway, chat.token, b"<script>", "text/html")
    assert status == 415 and body["error"] == "unsupported_type"
    status, body = await upload(gateway, chat.token, b"x" * (5 * 1024 * 1024 + 1), "image/png")
    assert status == 413


async def test_a_file_of_another_conversation_cannot_be_attached(chat: ChatClient, gateway: RunningGateway) -> None:
    other = await ChatClient.connect(gateway.ws_url)
    try:
        _, stored = await upload(gateway, other.token)
        await chat.ws.send_json({"type": "message", "id": "steal-1", "text": "look", "attachments": [stored["id"]]})
        error = await chat.next_frame("ack", "error")
        assert (error["type"], error["code"]) == ("error", "invalid_attachment")
    finally:
        await other.close()


async def test_one_session_cannot_fill_the_disk(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, upload_max_files=8, upload_rate_per_minute=5)
    gateway, runner = await start_gateway(settings)
    chat = await ChatClient.connect(gateway.ws_url, locale="zh-CN")
    try:
        results = [await upload(gateway, chat.token) for _ in range(12)]  # as fast as it can
        stored = [body for status, body in results if status == 200]
        refused = [body for status, body in results if status == 429]
        assert len(stored) == 5 and len(refused) == 7  # a burst, then the rate
        assert refused[0]["error"] == "upload_rate" and "稍等" in refused[0]["message"]  # in the shopper's language
        files = list((settings.data_dir / "uploads").glob("*.json"))
        assert len(files) == 5
    finally:
        await chat.close()
        await runner.cleanup()
    # The quota holds across a restart: it is counted from what is on disk.
    gateway, runner = await start_gateway(replace(settings, upload_rate_per_minute=600))
    try:
        results = [await upload(gateway, chat.token) for _ in range(6)]
        assert [s for s, _ in results].count(200) == 3 and results[-1][1]["error"] == "upload_quota"
    finally:
        await runner.cleanup()


async def test_old_uploads_expire(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, upload_retention_days=1.0)
    gateway, runner = await start_gateway(settings)
    chat = await ChatClient.connect(gateway.ws_url)
    try:
        _, stored = await upload(gateway, chat.token)
        uploads = gateway.app[WEBCHAT_KEY].uploads
        assert await uploads.expire(now=time.time() + 3600) == 0  # an hour old: kept
        assert await uploads.expire(now=time.time() + 2 * 86400) == 1  # two days old: deleted
        async with aiohttp.ClientSession() as http, http.get(stored["url"]) as resp:
            assert resp.status == 404
        assert not list((settings.data_dir / "uploads").iterdir())
    finally:
        await chat.close()
        await runner.cleanup()
