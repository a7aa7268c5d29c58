"""The gateway attacked as an outsider would, on real sockets against the real Rasa: each
test is an attack that worked before it was closed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.log import JsonFormatter, TextFormatter
from gateway.app import NOTICES_KEY
from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway

pytestmark = pytest.mark.e2e


async def rest(gateway: RunningGateway, http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(f"{gateway.url}/webhooks/rest/webhook", json=body) as resp:
        return resp.status, await resp.json()


async def paused(gateway: RunningGateway, key: str) -> bool:
    tracker = await gateway.service.rasa.tracker(key)
    return bool(tracker.get("paused"))


async def test_a_rest_sender_cannot_climb_into_another_conversation(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http:
        status, _ = await rest(gateway, http, {"sender": "victim-1", "message": "hello"})
        assert status == 200
        for sender in ("x/../../conversations/rest:victim-1", "../rest:victim-1", "a/b", "a?b=c", "a#b", "..",
                       "a b", "ü", "x" * 129, "", "-dash-first"):
            status, body = await rest(gateway, http, {"sender": sender, "message": "I want to talk to a human"})
            assert status == 400 and body["error"] == "invalid_sender", sender
        assert not await paused(gateway, "rest:victim-1")  # the victim's conversation was not touched
        status, replies = await rest(gateway, http, {"sender": "victim-1", "message": "thanks"})
        assert status == 200 and replies and "welcome" in replies[0]["text"].lower()


async def test_senders_with_dots_at_signs_and_plus_reach_their_own_tracker(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http:
        status, _ = await rest(gateway, http, {"sender": "ana.li+shop@example.com", "message": "I want a human"})
        assert status == 200
        assert await paused(gateway, "rest:ana.li+shop@example.com")  # the handoff paused exactly this one


DEEP = "[" * 5000 + "]" * 5000


async def test_a_deeply_nested_frame_gets_an_error_frame_and_the_socket_lives(chat: ChatClient) -> None:
    await chat.ws.send_str(DEEP)
    frame = await chat.next_frame("error")
    assert frame["code"] == "invalid_json"
    await chat.ws.send_str('{"type": "message", "id": "x' + '", "text": "hello"}')
    assert (await chat.next_frame("ack"))["id"] == "x"  # still serving this shopper


async def test_deep_json_and_non_ascii_secrets_get_clear_4xx_not_500(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, rest_auth_token="s3cret-token")
    gateway, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{gateway.url}/webhooks/rest/webhook"
            async with http.post(url, data=DEEP, headers={"Authorization": "Bearer s3cret-token",
                                                          "Content-Type": "application/json"}) as resp:
                assert resp.status == 400 and (await resp.json())["error"] == "invalid_json"
            async with http.post(url, json={"sender": "a", "message": "hi"},
                                 headers={"Authorization": "Bearer s3cr\u00e9t"}) as resp:
                assert resp.status == 401
            async with http.get(f"{gateway.url}/webchat/files/{'0' * 32}", params={"sig": "\u00e9\u00e9"}) as resp:
                assert resp.status == 404
            async with http.get(f"{gateway.url}/console", headers={"Cookie": "console_session=\u00e9|1|2|3"}) as resp:
                assert resp.status < 500
            # Rasa's own REST auth form, for clients written against Rasa
            async with http.post(url, params={"token": "s3cret-token"}, json={"sender": "a", "message": "hi"}) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_rasa_compatible_clients_find_the_version_endpoint(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/version") as resp:
        assert resp.status == 200 and (await resp.json())["version"].startswith("3.6")


async def test_the_console_socket_does_not_accept_the_web_chats_shop_sites(rasa_stack: RasaProcesses,
                                                                          tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_allowed_origins=("https://shop.example",))
    gateway, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            # a page on the shop's site may open the web chat ...
            async with http.ws_connect(f"{gateway.url.replace('http', 'ws')}/webchat/ws",
                                       headers={"Origin": "https://shop.example"}) as ws:
                await ws.send_json({"type": "hello"})
                assert (await ws.receive_json())["type"] == "session"
            # ... but not drive an agent's console from there
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{gateway.url.replace('http', 'ws')}/console/ws",
                                      headers={"Origin": "https://shop.example"})
            assert refused.value.status in (401, 403)
    finally:
        await runner.cleanup()


async def test_the_gateways_own_signals_never_reach_a_client(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http:
        status, replies = await rest(gateway, http, {"sender": "sig-1", "message": "I want to talk to a human"})
        assert status == 200 and replies and all("custom" not in r for r in replies)
    chat = await ChatClient.connect(gateway.ws_url)
    try:
        await chat.say("I want to talk to a human")
        frames = await chat.replies_until_quiet()
        assert frames and not any("handoff" in str(f) for f in frames)
    finally:
        await chat.close()


async def test_pages_carry_security_headers_and_the_demo_password_is_not_printed(
        rasa_stack: RasaProcesses, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_allowed_origins=("https://shop.example",))
    gateway, runner = await start_gateway(settings)
    try:
        printed = "\n".join(gateway.app[NOTICES_KEY])  # what the CLI prints to the operator
        secret_file = settings.data_dir / "agents.yml"
        password_file = secret_file.with_name("demo-agent-password.txt")
        password = password_file.read_text().strip()
        assert password and password not in printed and str(password_file) in printed
        assert password_file.stat().st_mode & 0o077 == 0  # the owner's only
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/") as resp:
                csp = resp.headers["Content-Security-Policy"]
                assert "frame-ancestors 'self' https://shop.example" in csp and "script-src 'self'" in csp
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Referrer-Policy"] == "no-referrer"
            async with http.get(f"{gateway.url}/console") as resp:
                assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
                assert resp.headers["X-Frame-Options"] == "DENY"
    finally:
        await runner.cleanup()


async def test_logs_mask_e_mails_phones_and_failed_usernames(gateway: RunningGateway,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the turns' own lines are DEBUG
    async with aiohttp.ClientSession() as http:
        for sender in ("jane.doe@example.com", "8613800138000", "13911112222"):
            status, _ = await rest(gateway, http, {"sender": sender, "message": "hello"})
            assert status == 200
        async with http.post(f"{gateway.url}/console/login",
                             json={"username": "Tr0ub4dor&3-typed-in-the-wrong-box", "password": "x"}) as resp:
            assert resp.status == 401
    formatter, plain = JsonFormatter(), TextFormatter()
    written = "\n".join(f.format(r) for r in caplog.records for f in (formatter, plain))
    assert "message accepted" in written  # the turns were logged ...
    for secret in ("jane.doe", "example.com", "13800138000", "1111222", "Tr0ub4dor"):
        assert secret not in written, secret  # ... without who sent them
    assert "ja***@ex***.com" in written and "861****00" in written and "139****22" in written


async def _hello(http: aiohttp.ClientSession, ws_url: str, token: str | None = None) -> dict[str, Any]:
    ws = await http.ws_connect(ws_url)
    await ws.send_json({"type": "hello", "token": token, "locale": "en"})
    frame: dict[str, Any] = await ws.receive_json(timeout=10)
    await ws.close()
    return frame


async def test_floods_of_invalid_frames_close_the_socket_without_a_log_line_each(
        gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    chat = await ChatClient.connect(gateway.ws_url)
    try:
        for _ in range(60):
            await chat.ws.send_str("{not json")
        while (await chat.ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert chat.ws.close_code == 1008  # before, invalid frames never counted toward the close
        assert not [r for r in caplog.records if r.levelno >= logging.INFO and "frame refused" in r.getMessage()]
    finally:
        await chat.close()


async def test_twenty_tabs_of_one_conversation_share_its_rate(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_rate_burst=5, webchat_rate_per_second=0.2)
    running, runner = await start_gateway(settings)
    first = await ChatClient.connect(running.ws_url)
    tabs = [first] + [await ChatClient.connect(running.ws_url, token=first.token) for _ in range(19)]
    try:
        for n, tab in enumerate(tabs):
            await tab.say("thanks", message_id=f"tab-{n}")
        outcomes = [(await tab.next_frame("ack", "error"))["type"] for tab in tabs]
        assert outcomes.count("ack") <= 6 and outcomes.count("error") >= 14, outcomes
    finally:
        for tab in tabs:
            await tab.close()
        await runner.cleanup()


async def test_one_address_cannot_open_conversations_without_end_but_can_resume(rasa_stack: RasaProcesses,
                                                                               tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_new_sessions_per_minute=30)  # the default
    running, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            frames = [await _hello(http, running.ws_url) for _ in range(40)]
            sessions = [f for f in frames if f["type"] == "session"]
            refused = [f for f in frames if f["type"] == "error"]
            assert len(sessions) in (30, 31) and {f["code"] for f in refused} == {"rate_limited"}
            assert "wait a moment" in refused[0]["message"]  # shopper text, in the page's language
            again = await _hello(http, running.ws_url, token=sessions[0]["token"])
            assert again["type"] == "session" and again["resumed"]  # a returning shopper is not limited
            # One socket cannot dodge the limit with many hellos either (each resends the history).
            ws = await http.ws_connect(running.ws_url)
            for _ in range(6):
                await ws.send_json({"type": "hello", "token": sessions[1]["token"]})
            kinds = []
            for _ in range(6):
                frame = await ws.receive_json(timeout=10)
                while frame["type"] == "history":
                    frame = await ws.receive_json(timeout=10)
                kinds.append(frame["type"])
            assert kinds.count("session") == 3 and kinds.count("error") == 3, kinds
            await ws.close()
    finally:
        await runner.cleanup()


async def test_a_rest_sender_is_rate_limited_and_the_gateway_caps_what_it_holds(rasa_stack: RasaProcesses,
                                                                                tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rasa_stack.rasa_url, webchat_rate_burst=3, webchat_rate_per_second=0.2,
                             max_pending_total=4)
    running, runner = await start_gateway(settings)
    url = f"{running.url}/webhooks/rest/webhook"
    try:
        async with aiohttp.ClientSession() as http:
            async def send(sender: str, n: int) -> tuple[int, Any]:
                async with http.post(url, json={"sender": sender, "message": "thanks", "message_id": f"{sender}-{n}"}
                                     ) as resp:
                    return resp.status, await resp.json()

            one = await asyncio.gather(*(send("flooder", n) for n in range(8)))
            limited = [b for s, b in one if s == 429]
            assert len(limited) >= 4 and any(b["error"] == "rate_limited" for b in limited)
            many = await asyncio.gather(*(send(f"crowd-{n}", 0) for n in range(30)))
            statuses = [s for s, _ in many]
            assert statuses.count(429) > 0 and all(b["error"] == "queue_full" for s, b in many if s == 429)
            assert all(b and b[0]["text"] for s, b in many if s == 200)  # what was taken was answered
            assert running.service.total_pending == 0  # nothing left counted once all are answered
            status, body = await send("afterwards", 0)
            assert status == 200 and body
    finally:
        await runner.cleanup()


async def _open_raw(port: int, first_bytes: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if first_bytes:
        writer.write(first_bytes)
        await writer.drain()
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Did the gateway close (or reset) the connection within `timeout` without answering?"""
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def test_idle_and_half_sent_connections_cannot_lock_everyone_out(rasa_stack: RasaProcesses,
                                                                        tmp_path: Path) -> None:
    """300 connections that send nothing, or half a request, from one address: past the cap
    they are refused at once, the rest are closed when their headers do not come, and the
    gateway answers again. Before, they stayed open for an hour (aiohttp's keep-alive)."""
    settings = make_settings(tmp_path, rasa_stack.rasa_url, max_connections_per_address=100,
                             header_timeout_seconds=1.5)
    running, runner = await start_gateway(settings)
    port = settings.port
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for n in range(300):
            opened.append(await _open_raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if n % 2 else b""))
        over_cap = await asyncio.gather(*(_closed_by_server(r, 0.5) for r, _ in opened[100:]))
        assert all(over_cap)  # refused straight away
        held = await asyncio.gather(*(_closed_by_server(r, 5) for r, _ in opened[:100]))
        assert all(held)  # no headers in time: closed
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{running.url}/healthz") as resp:
                assert resp.status == 200
        # A web chat socket that never says hello is closed too.
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(running.ws_url)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
    finally:
        for _, writer in opened:
            writer.close()
        await runner.cleanup()
