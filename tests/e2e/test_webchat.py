"""A shopper on the web chat websocket, talking to the real Rasa through the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway

pytestmark = pytest.mark.e2e


async def test_greeting_gets_an_answer_with_buttons_after_ack_and_typing(chat: ChatClient) -> None:
    message_id = await chat.say("hello")
    ack = await chat.next_frame("ack")
    assert ack["id"] == message_id
    replies = await chat.replies_until_quiet()
    assert "after-sales assistant" in replies[0]["text"]
    # the opening offers what the bot can do, in the page's language
    assert [b["payload"] for b in replies[0]["buttons"]] == ["/request_return", "/request_exchange", "/file_complaint", "/check_progress", "/request_human"]
    kinds = [f["type"] for f in chat.frames]
    assert kinds.index("ack") < kinds.index("typing") < kinds.index("reply")
    assert {"type": "typing", "on": True} in chat.frames and {"type": "typing", "on": False} in chat.frames


async def test_chinese_shopper_is_answered_in_chinese(gateway: RunningGateway) -> None:
    chat = await ChatClient.connect(gateway.ws_url, locale="zh-CN")
    try:
        await chat.say("你好")
        replies = await chat.replies_until_quiet()
        assert "售后助手" in replies[0]["text"]
        assert [b["title"] for b in replies[0]["buttons"]] == ["退货退款", "换货", "投诉", "查询进度", "转人工客服"]
    finally:
        await chat.close()


async def test_button_press_runs_the_custom_action_with_policy_from_flows(chat: ChatClient) -> None:
    await chat.say("Return policy", payload="/ask_return_policy")
    replies = await chat.replies_until_quiet()
    text = replies[0]["text"]
    assert text.startswith("Our return policy:")
    assert "leather shoes: unopened, 30 days no-reason return" in text  # from flows/policies.yml


async def test_messages_sent_back_to_back_are_answered_in_order(chat: ChatClient) -> None:
    for text in ["hello", "are you a bot?", "thanks", "bye"]:
        await chat.say(text)
    texts: list[str] = []
    while len(texts) < 4:
        texts.append((await chat.next_frame("reply"))["text"])
    assert "after-sales assistant" in texts[0]
    assert "a bot" in texts[1]
    assert texts[2].startswith("You're welcome")
    assert texts[3].startswith("Goodbye")


async def test_reload_resumes_the_same_conversation_with_its_history(gateway: RunningGateway) -> None:
    first = await ChatClient.connect(gateway.ws_url)
    await first.say("hello")
    await first.replies_until_quiet()
    await first.close()

    again = await ChatClient.connect(gateway.ws_url, token=first.token)
    try:
        session = next(f for f in again.frames if f["type"] == "session")
        assert session["resumed"] is True and again.conversation_id == first.conversation_id
        history = await again.next_frame("history")
        roles = [(m["role"], m["text"]) for m in history["messages"]]
        assert roles[0] == ("shopper", "hello")
        assert roles[1][0] == "bot" and "after-sales assistant" in roles[1][1]
        await again.say("thanks")
        assert (await again.next_frame("reply"))["text"].startswith("You're welcome")
    finally:
        await again.close()


async def test_a_forged_or_guessed_token_opens_a_new_empty_conversation(gateway: RunningGateway) -> None:
    victim = await ChatClient.connect(gateway.ws_url)
    await victim.say("hello")
    await victim.replies_until_quiet()
    assert victim.conversation_id is not None
    try:
        for forged in [victim.conversation_id, f"{victim.conversation_id}.AAAA", "x.y", None]:
            intruder = await ChatClient.connect(gateway.ws_url, token=forged)
            try:
                session = intruder.frames[0]
                assert session["resumed"] is False
                assert intruder.conversation_id != victim.conversation_id
                await intruder.ws.send_json({"type": "ping"})
                assert (await intruder.next_frame())["type"] == "pong"  # no history frame came first
            finally:
                await intruder.close()
    finally:
        await victim.close()


async def test_handshake_from_a_foreign_origin_is_refused(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(gateway.ws_url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        own = f"http://127.0.0.1:{gateway.settings.port}"
        ws = await session.ws_connect(gateway.ws_url, headers={"Origin": own})
        await ws.close()


async def test_configured_shop_origin_is_allowed(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_allowed_origins=("https://shop.example",))
    running, runner = await start_gateway(settings)
    try:
        chat = await ChatClient.connect(running.ws_url, headers={"Origin": "https://shop.example"})
        await chat.close()
    finally:
        await runner.cleanup()


async def test_bad_frames_get_clear_errors_and_the_socket_survives(chat: ChatClient) -> None:
    await chat.ws.send_str("{not json")
    assert (await chat.next_frame("error"))["code"] == "invalid_json"
    await chat.ws.send_bytes(b"\x00\x01")
    assert (await chat.next_frame("error"))["code"] == "binary_not_supported"
    await chat.ws.send_json(["a", "list"])
    assert (await chat.next_frame("error"))["code"] == "invalid_frame"
    await chat.ws.send_json({"type": "message", "text": "hi"})  # no id
    assert (await chat.next_frame("error"))["code"] == "invalid_frame"
    await chat.say("   ", message_id="empty-1")
    error = await chat.next_frame("error")
    assert (error["code"], error["id"]) == ("empty_text", "empty-1")
    await chat.say("x" * 4001, message_id="long-1")
    error = await chat.next_frame("error")
    assert (error["code"], error["id"]) == ("text_too_long", "long-1")
    assert "4000" in error["message"]
    await chat.say("x" * 4000, message_id="long-ok")  # exactly at the limit is accepted
    assert (await chat.next_frame("ack", "error")) == {"type": "ack", "id": "long-ok"}
    await chat.next_frame("reply")  # the 4000-character message is answered (by the fallback)
    await chat.say("hello")
    assert "after-sales assistant" in (await chat.next_frame("reply"))["text"]


async def test_message_before_hello_is_refused(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(gateway.ws_url)
        await ws.send_json({"type": "message", "id": "m1", "text": "hello"})
        frame = await ws.receive_json(timeout=5)
        assert (frame["type"], frame["code"], frame["id"]) == ("error", "hello_required", "m1")
        await ws.close()


async def test_oversized_frame_closes_the_socket_without_hurting_the_gateway(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(gateway.ws_url)
        await ws.send_str("x" * (70 * 1024))
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1009
    chat = await ChatClient.connect(gateway.ws_url)
    await chat.say("hello")
    assert (await chat.next_frame("reply"))["text"]
    await chat.close()


async def test_resending_a_message_id_does_not_run_the_turn_twice(chat: ChatClient, gateway: RunningGateway) -> None:
    await chat.say("thanks", message_id="same-id")
    await chat.next_frame("reply")
    await chat.say("thanks", message_id="same-id")
    assert (await chat.next_frame("ack"))["id"] == "same-id"  # acknowledged, so the client stops resending
    with pytest.raises(TimeoutError):
        await chat.next_frame("reply", timeout=2.0)
    assert gateway.service.metrics.value("messages_duplicate_total") == 1
    assert gateway.service.metrics.value("messages_received_total") == 1


async def test_flood_is_rate_limited_then_closed(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_rate_burst=5, webchat_rate_per_second=0.5)
    running, runner = await start_gateway(settings)
    chat = await ChatClient.connect(running.ws_url)
    try:
        for i in range(8):
            await chat.say("thanks", message_id=f"m{i}")
        outcomes = [await chat.next_frame("ack", "error") for _ in range(8)]
        assert [o["type"] for o in outcomes] == ["ack"] * 5 + ["error"] * 3
        assert {o["code"] for o in outcomes[5:]} == {"rate_limited"}
        await chat.ws.send_json({"type": "ping"})
        await chat.next_frame("pong")  # still open
        for i in range(60):
            await chat.say("spam", message_id=f"s{i}")
        while True:
            msg = await chat.ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert chat.ws.close_code == 1008
        assert running.service.metrics.value("messages_received_total") == 5
    finally:
        await chat.close()
        await runner.cleanup()


async def test_dead_socket_is_closed_by_heartbeat(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_heartbeat_seconds=0.5)
    running, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(running.ws_url, autoping=False)  # never answers pings
            await ws.send_json({"type": "hello", "token": None})
            closed_after = None
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() - started < 10:
                msg = await ws.receive(timeout=10)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    closed_after = loop.time() - started
                    break
            assert closed_after is not None and closed_after < 5
    finally:
        await runner.cleanup()


async def test_two_shoppers_do_not_see_each_others_replies(gateway: RunningGateway) -> None:
    alice = await ChatClient.connect(gateway.ws_url)
    bob = await ChatClient.connect(gateway.ws_url, locale="zh-CN")
    try:
        await alice.say("hello")
        await bob.say("谢谢")
        assert "after-sales assistant" in (await alice.next_frame("reply"))["text"]
        assert "不客气" in (await bob.next_frame("reply"))["text"]
        with pytest.raises(TimeoutError):
            await alice.next_frame("reply", timeout=1.0)
    finally:
        await alice.close()
        await bob.close()


async def test_page_and_static_files_are_served(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "/webchat/static/chat.js" in page
        async with session.get(gateway.url + "/webchat/static/chat.js") as resp:
            assert resp.status == 200
            assert "/webchat/ws" in await resp.text()
        async with session.get(gateway.url + "/healthz") as resp:
            assert (await resp.json())["rasa"] == "up"



async def test_customer_token_signed_by_the_shop_reaches_rasa(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    import time

    from channels.webchat.session import CustomerTokenVerifier

    secret = "shop-backend-secret-" + "s" * 20
    settings = make_settings(tmp_path, rasa_stack.rasa_url, shop_customer_secret=secret)
    running, runner = await start_gateway(settings)
    try:
        signed = CustomerTokenVerifier(secret).sign("C1001", int(time.time()) + 600)
        forged = CustomerTokenVerifier("another-secret-" + "x" * 20).sign("C1002", int(time.time()) + 600)
        expired = CustomerTokenVerifier(secret).sign("C1003", int(time.time()) - 1)
        for token, customer in [(signed, "C1001"), (forged, None), (expired, None)]:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(running.ws_url)
                await ws.send_json({"type": "hello", "token": None, "customer": token})
                first = await ws.receive_json()
                if customer is None:
                    assert (first["type"], first["code"]) == ("error", "invalid_customer")
                    first = await ws.receive_json()
                assert first["type"] == "session"
                await ws.send_json({"type": "message", "id": "m1", "text": "hello"})
                while (await ws.receive_json())["type"] != "reply":
                    pass
                async with session.get(f"{rasa_stack.rasa_url}/conversations/webchat:{first['conversation_id']}"
                                       "/tracker") as resp:
                    tracker = await resp.json()
                metadata = next(e for e in tracker["events"] if e["event"] == "user")["metadata"]
                assert metadata.get("context", {}).get("customer_id") == customer
                await ws.close()
    finally:
        await runner.cleanup()
