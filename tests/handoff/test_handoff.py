"""A web chat shopper handed to a person and back, as the shopper and the agents see it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from yarl import URL

from gateway.rasa_runtime import RasaProcesses
from handoff import HANDOFF_KEY
from tests.conftest import ChatClient, RunningGateway, free_port, make_settings, start_gateway
from tests.e2e.test_rasa_contracts import SocketIOShopper
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ


async def rasa_events(rasa_url: str, conversation_key: str) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_url}/conversations/{conversation_key}/tracker") as resp:
            tracker = await resp.json()
    return [e["event"] for e in tracker["events"]]


async def claim_when_queued(agent: ConsoleClient, chat: ChatClient, key: str) -> None:
    """The agent claims the conversation once it is queued; the shopper's "chatting with" line is consumed."""
    await agent.state_where(lambda s: any(i["key"] == key for i in s["queue"]))
    await agent.send(type="claim", key=key)
    await agent.next("claimed")
    await chat.next_frame("reply")


async def ask_for_a_person(chat: ChatClient, gateway: RunningGateway, text: str = "I want to talk to a human") -> list[dict]:
    """The shopper asks for a person: every reply of that turn (on `gateway`, the one the chat is on)."""
    await chat.say(text)
    return await chat.replies_of_the_turn(gateway)


async def test_handoff_to_an_agent_and_back_to_the_bot(team_gateway: RunningGateway,
                                                       fake_rasa: FakeRasa) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        texts = [r["text"] for r in await ask_for_a_person(chat, team_gateway)]
        assert any("passing you to a person" in t for t in texts)
        assert any("number 1 in the queue" in t and "minute" in t for t in texts)

        state = await alice.state_where(lambda s: any(i["key"] == key for i in s["queue"]))
        item = next(i for i in state["queue"] if i["key"] == key)
        assert (item["reason"], item["channel"], item["language"], item["sla"]) == \
            ("shopper_request", "webchat", "en", "ok")
        assert item["first_response_due"] - item["created_at"] == pytest.approx(30 * 60)

        await chat.say("my parcel arrived broken")  # written while waiting: kept for the agent
        await chat.next_frame("ack")
        await alice.state_where(lambda s: any(i["key"] == key and i["waiting_messages"] == 1 for i in s["queue"]))

        await alice.send(type="claim", key=key)
        claimed = await alice.next("claimed")
        assert claimed["ok"] is True
        assert "chatting with Alice Chen" in (await chat.next_frame("reply"))["text"]

        await alice.send(type="open", key=key)
        view = await alice.next("conversation")
        said = [(e["role"], e["text"]) for e in view["transcript"]]
        assert ("shopper", "I want to talk to a human") in said
        assert any(role == "bot" and "passing you to a person" in text for role, text in said)
        assert said.index(("shopper", "I want to talk to a human")) < said.index(("shopper", "my parcel arrived broken"))

        # The bot is paused: the shopper's message goes to the agent, not to Rasa.
        await chat.say("are you a bot?")
        entry = await alice.next("entry")
        assert entry["entry"] == {**entry["entry"], "role": "shopper", "text": "are you a bot?"}
        assert await chat.unread_replies(team_gateway) == []  # the turn is over: no answer came
        assert "pause" in await rasa_events(fake_rasa.url, key)

        await alice.send(type="reply", key=key, text="Sorry about that! A replacement is on its way.")
        reply = await chat.next_frame("reply")
        assert reply["text"] == "Sorry about that! A replacement is on its way."
        assert reply["author"] == "Alice Chen"
        await alice.state_where(lambda s: any(i["key"] == key and i["sla"] == "met" for i in s["mine"]))

        await alice.send(type="hand_back", key=key)
        assert "back with the assistant" in (await chat.next_frame("reply"))["text"]
        assert (await rasa_events(fake_rasa.url, key))[-1] == "resume"
        await chat.say("thanks")
        assert (await chat.next_frame("reply"))["text"].startswith("You're welcome")  # the bot answers again
    finally:
        await chat.close()
        await alice.close()


async def test_chinese_shopper_is_told_in_chinese(team_gateway: RunningGateway) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chat = await ChatClient.connect(team_gateway.ws_url, locale="zh-CN")
    try:
        texts = [r["text"] for r in await ask_for_a_person(chat, team_gateway, "转人工")]
        assert any("排在第 1 位" in t for t in texts)
        state = await alice.state_where(lambda s: bool(s["queue"]))
        assert state["queue"][0]["language"] == "zh"
    finally:
        await chat.close()
        await alice.close()


async def test_no_agent_online_creates_a_ticket_and_says_when(team_gateway: RunningGateway) -> None:
    chat = await ChatClient.connect(team_gateway.ws_url)
    try:
        texts = " ".join(r["text"] for r in await ask_for_a_person(chat, team_gateway))
        assert "No one from our team is online" in texts
        assert "ticket H-" in texts and "will answer here by" in texts
        handoff = team_gateway.app[HANDOFF_KEY]
        record = await handoff.store.get(f"webchat:{chat.conversation_id}")
        assert record is not None and record.ticket and record.ticket in texts
        # The agent who comes online later finds it waiting.
        alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
        assert any(i["ticket"] == record.ticket for i in alice.state["queue"])
        await alice.close()
    finally:
        await chat.close()


async def test_outside_working_hours_is_said_honestly(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    closed_from = (now + dt.timedelta(hours=2)).strftime("%H:00")
    closed_to = (now + dt.timedelta(hours=3)).strftime("%H:00")
    if closed_to <= closed_from:  # crossing midnight: pick another window that excludes now
        closed_from, closed_to = (now - dt.timedelta(hours=3)).strftime("%H:00"), (now - dt.timedelta(hours=2)).strftime("%H:00")
    environ = team_environ(tmp_path, HANDOFF_HOURS=f"{closed_from}-{closed_to}", HANDOFF_TIMEZONE="Asia/Shanghai")
    running, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ))
    alice = await ConsoleClient.sign_in(running.url, "alice")  # online, but the shop is closed
    chat = await ChatClient.connect(running.ws_url)
    try:
        texts = " ".join(r["text"] for r in await ask_for_a_person(chat, running))
        assert "not working right now" in texts and f"{closed_from}-{closed_to}" in texts and "ticket H-" in texts
    finally:
        await chat.close()
        await alice.close()
        await runner.cleanup()


async def test_resolution_sends_a_survey_and_stores_the_score(team_gateway: RunningGateway) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        await ask_for_a_person(chat, team_gateway)
        await claim_when_queued(alice, chat, key)
        await alice.send(type="resolve", key=key, outcome="made_up")
        assert (await alice.next("error"))["code"] == "invalid_outcome"
        await alice.send(type="resolve", key=key, outcome="refund_issued")
        survey = await chat.next_frame("reply")
        assert "How satisfied" in survey["text"]
        assert [b["payload"] for b in survey["buttons"]] == [f"/csat_{n}" for n in range(1, 6)]
        await chat.say("4", payload="/csat_4")
        assert "Thank you for your feedback" in (await chat.next_frame("reply"))["text"]
        record = await team_gateway.app[HANDOFF_KEY].store.get(key)
        assert record is not None and (record.status, record.outcome, record.csat) == ("resolved", "refund_issued", 4)
        await chat.say("hello")  # after the survey the bot is back
        assert "after-sales assistant" in (await chat.next_frame("reply"))["text"]
    finally:
        await chat.close()
        await alice.close()


async def test_many_agents_claiming_at_once_exactly_one_wins(team_gateway: RunningGateway) -> None:
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    consoles = [await ConsoleClient.sign_in(team_gateway.url, name) for name in ("alice", "bob", "carol")
                for _ in range(4)]  # 12 sockets, three agents with several tabs each
    try:
        await ask_for_a_person(chat, team_gateway)
        for console in consoles:
            await console.state_where(lambda s: any(i["key"] == key for i in s["queue"]))
        await asyncio.gather(*(c.send(type="claim", key=key) for c in consoles))
        results = [await c.next("claimed") for c in consoles]
        winners = [r for r in results if r["ok"]]
        assert len(winners) == 1
        assert {r["agent"] for r in results} == {winners[0]["agent"]}
        greetings = [r for r in [await chat.next_frame("reply")] if "chatting with" in r["text"]]
        assert len(greetings) == 1
        # Every claim was answered, so every claim is done: the shopper was not told twice.
        assert await chat.unread_replies(team_gateway) == []
    finally:
        await chat.close()
        for console in consoles:
            await console.close()


async def test_transfer_and_notes(team_gateway: RunningGateway) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    bob = await ConsoleClient.sign_in(team_gateway.url, "bob")
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        await ask_for_a_person(chat, team_gateway)
        await claim_when_queued(alice, chat, key)
        await alice.send(type="note", key=key, text="VIP customer, second complaint this month")
        await alice.send(type="transfer", key=key, to="bob")
        assert "chatting with Bob Li" in (await chat.next_frame("reply"))["text"]
        await bob.state_where(lambda s: any(i["key"] == key for i in s["mine"]))
        await alice.send(type="reply", key=key, text="still me?")
        assert (await alice.next("error"))["code"] == "not_yours"
        await bob.send(type="open", key=key)
        view = await bob.next("conversation")
        assert {"role": "note", "author": "alice", "text": "VIP customer, second complaint this month"}.items() <= \
            next(e for e in view["transcript"] if e["role"] == "note").items()
        assert await chat.unread_replies(team_gateway) == []  # notes never reach the shopper
    finally:
        await chat.close()
        await alice.close()
        await bob.close()


async def test_console_requires_sign_in(team_gateway: RunningGateway) -> None:
    base = team_gateway.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/console") as resp:
            assert resp.status == 200 and 'name="password"' in await resp.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base.replace('http', 'ws')}/console/ws")
        assert refused.value.status == 401
        async with session.post(f"{base}/console/login", data={"username": "alice", "password": "nope"}) as resp:
            assert resp.status == 401 and "Wrong username or password" in await resp.text()
        async with session.post(f"{base}/console/login", data={"username": "alice", "password": "alice-pw"},
                                allow_redirects=False) as resp:
            assert resp.status == 303
        async with session.get(f"{base}/console") as resp:
            assert "/console/static/console.js" in await resp.text()
        ws = await session.ws_connect(f"{base.replace('http', 'ws')}/console/ws")
        assert (await ws.receive_json())["agent"] == {"username": "alice", "name": "Alice Chen", "role": "agent"}
        await ws.close()
        async with session.post(f"{base}/console/logout", allow_redirects=False) as resp:
            assert resp.status == 303
        async with session.get(f"{base}/console") as resp:
            assert 'name="password"' in await resp.text()


async def test_repeated_wrong_passwords_lock_out(team_gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(6):
            async with session.post(f"{team_gateway.url}/console/login",
                                    json={"username": "bob", "password": "guess"}) as resp:
                statuses.append(resp.status)
        assert statuses == [401] * 5 + [429]
        async with session.post(f"{team_gateway.url}/console/login",
                                json={"username": "bob", "password": "bob-pw"}) as resp:
            assert resp.status == 429  # even the right password waits out the lock


async def test_behind_a_trusted_proxy_a_guessed_account_locks_only_for_its_guesser(
        fake_rasa: FakeRasa, tmp_path: Path) -> None:
    """Behind the shop's proxy every agent arrives from one address: guessing at bob's account
    must not lock alice out, nor bob signing in from his own desk."""
    import ipaddress
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path),
                             trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    running, runner = await start_gateway(settings)
    login = f"{running.url}/console/login"

    async def attempt(session: aiohttp.ClientSession, user: str, password: str, client: str) -> int:
        async with session.post(login, json={"username": user, "password": password},
                                headers={"X-Forwarded-For": client}) as resp:
            return resp.status

    try:
        async with aiohttp.ClientSession() as session:
            guesses = [await attempt(session, "bob", "guess", "203.0.113.66") for _ in range(6)]
            assert guesses == [401] * 5 + [429]
            assert await attempt(session, "alice", "alice-pw", "203.0.113.66") == 200  # same address
            assert await attempt(session, "bob", "bob-pw", "198.51.100.10") == 200  # bob, elsewhere
            assert await attempt(session, "bob", "bob-pw", "203.0.113.66") == 429  # the guesser waits
            async with session.post(login, json={"username": "bob", "password": "bob-pw"},
                                    headers={"X-Forwarded-For": "203.0.113.66",
                                             "X-Forwarded-Proto": "https"}) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
            async with session.post(login, json={"username": "carol", "password": "carol-pw"},
                                    headers={"X-Forwarded-Proto": "https"}) as resp:
                assert "Secure" in resp.headers["Set-Cookie"]  # the proxy spoke TLS to the agent
    finally:
        await runner.cleanup()


async def test_untrusted_forwarded_header_cannot_dodge_the_lock(team_gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        statuses = []
        for n in range(6):  # a fresh made-up address each time: not believed, no proxy is trusted
            async with session.post(f"{team_gateway.url}/console/login",
                                    json={"username": "bob", "password": "guess"},
                                    headers={"X-Forwarded-For": f"198.51.100.{n}"}) as resp:
                statuses.append(resp.status)
        assert statuses == [401] * 5 + [429]
        async with session.post(f"{team_gateway.url}/console/login", json={"username": "carol", "password": "carol-pw"},
                                headers={"X-Forwarded-Proto": "https"}) as resp:
            assert resp.status == 200 and "Secure" not in resp.headers["Set-Cookie"]


async def test_sign_in_attempts_do_not_stall_shoppers_and_hide_who_exists(team_gateway: RunningGateway) -> None:
    """Password hashing runs off the event loop: a health check sent behind twenty sign-ins is
    answered before they are; and a made-up username costs the same hashing as a real one."""
    login = f"{team_gateway.url}/console/login"
    order: list[str] = []

    async def sign_in(session: aiohttp.ClientSession, user: str) -> None:
        async with session.post(login, json={"username": user, "password": "wrong"}) as resp:
            assert resp.status == 401
        order.append("login")

    async def health(session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(0.05)  # after the sign-ins have reached the gateway
        async with session.get(f"{team_gateway.url}/healthz") as resp:
            assert resp.status == 200
        order.append("health")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # Distinct made-up names: each is hashed like a real one, and none reaches its lock.
        await asyncio.gather(*(sign_in(session, f"user{n}") for n in range(20)), health(session))
        assert order.index("health") < len(order) - 1, order

        async def timed(user: str) -> float:
            started = asyncio.get_running_loop().time()
            await sign_in(session, user)
            return asyncio.get_running_loop().time() - started

        known = sorted([await timed("bob") for _ in range(3)])[1]  # three failures: below the lock
        unknown = sorted([await timed("nobody-here") for _ in range(3)])[1]
    # Without the equal-cost check an unknown name answered ~100x faster than a known one.
    assert unknown > known / 3, (known, unknown)


async def test_rest_and_socketio_shoppers_see_which_agent_is_writing(team_gateway: RunningGateway) -> None:
    """Rasa's formats have no author field: the agent's name comes before the text, as on
    Telegram and Slack; the web chat shows it in its own place."""
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    shopper = SocketIOShopper()
    try:
        async with aiohttp.ClientSession() as http:
            rest = f"{team_gateway.url}/webhooks/rest/webhook"
            async with http.post(rest, json={"sender": "named-1", "message": "I want to talk to a human"}) as resp:
                assert resp.status == 200
            session_id = await shopper.start(team_gateway.url)
            await shopper.sio.emit("user_uttered", {"message": "I want to talk to a human", "session_id": session_id})
            keys = ("rest:named-1", f"socketio:{session_id.split('.')[0]}")  # the id, without its signature
            await alice.state_where(lambda s: set(keys) <= {i["key"] for i in s["queue"]})
            for key in keys:
                await alice.send(type="claim", key=key)
                assert (await alice.next("claimed"))["ok"]
                await alice.send(type="reply", key=key, text="Hello, I'm looking at it now.")
            async with http.post(rest, json={"sender": "named-1", "message": "thanks"}) as resp:
                texts = [r.get("text") for r in await resp.json()]
            assert "Alice Chen: Hello, I'm looking at it now." in texts, texts
        async with asyncio.timeout(15):
            while (await shopper.uttered.get()).get("text") != "Alice Chen: Hello, I'm looking at it now.":
                pass
    finally:
        await shopper.sio.disconnect()
        await alice.close()


async def _closed_code(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read until the gateway closes the socket; its close code."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def test_sign_out_ends_the_open_console_at_once_and_for_good(fake_rasa: FakeRasa,
                                                                    tmp_path: Path) -> None:
    """A signed-out cookie must not work again, not on an open socket, not after a restart."""
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path))
    gateway, runner = await start_gateway(settings)
    alice = await ConsoleClient.sign_in(gateway.url, "alice")
    cookie = alice.session.cookie_jar.filter_cookies(URL(gateway.url + "/console"))["console_session"].value
    try:
        async with alice.session.post(f"{gateway.url}/console/logout", allow_redirects=False) as resp:
            assert resp.status == 303
        assert await _closed_code(alice.ws) == 4401  # the open console is closed, and says why
    finally:
        await alice.close()
        await runner.cleanup()
    gateway, runner = await start_gateway(settings)  # the gateway restarts (embedded default, no Redis)
    try:
        async with aiohttp.ClientSession(headers={"Cookie": f"console_session={cookie}"}) as replay:
            async with replay.get(f"{gateway.url}/console") as resp:
                assert 'name="password"' in await resp.text()  # the stolen cookie is still signed out
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await replay.ws_connect(gateway.url.replace("http", "ws") + "/console/ws")
            assert refused.value.status == 401
    finally:
        await runner.cleanup()


async def test_removing_an_agent_or_changing_a_password_ends_their_sessions(team_gateway: RunningGateway,
                                                                             tmp_path: Path) -> None:
    """The shop runs `./aftersales agent remove bob` and `agent add alice --password ...` while the
    gateway runs: both consoles close within seconds; carol keeps working."""
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    bob = await ConsoleClient.sign_in(team_gateway.url, "bob")
    carol = await ConsoleClient.sign_in(team_gateway.url, "carol")
    environ = {**os.environ, "AGENTS_FILE": str(tmp_path / "agents.yml"), "DATA_DIR": str(tmp_path / "data")}
    try:
        for argv in (["agent", "remove", "bob"], ["agent", "add", "alice", "Alice Chen", "--password", "new-pw"]):
            done = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *argv, env=environ,
                                                        cwd=Path(__file__).parents[2],
                                                        stdout=asyncio.subprocess.DEVNULL)
            assert await done.wait() == 0
        assert await _closed_code(bob.ws) == 4401
        assert await _closed_code(alice.ws) == 4401
        await carol.send(type="ping")
        assert (await carol.next("pong"))["type"] == "pong"
        with pytest.raises(AssertionError):  # bob cannot sign in again
            await ConsoleClient.sign_in(team_gateway.url, "bob")
        with pytest.raises(AssertionError):  # alice's old password is gone ...
            await ConsoleClient.sign_in(team_gateway.url, "alice")
        again = await ConsoleClient.sign_in(team_gateway.url, "alice", "new-pw")  # ... the new one works
        await again.close()
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_with_redis_a_sign_out_holds_on_every_gateway(fake_rasa: FakeRasa, tmp_path: Path,
                                                            redis_url: str) -> None:
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path), redis_url=redis_url)
    first, first_runner = await start_gateway(settings)
    second, second_runner = await start_gateway(dataclasses.replace(settings, port=free_port()))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.post(f"{first.url}/console/login",
                                    json={"username": "carol", "password": "carol-pw"}) as resp:
                assert resp.status == 200
            cookie = session.cookie_jar.filter_cookies(URL(first.url + "/console"))["console_session"].value
            async with session.post(f"{first.url}/console/logout", allow_redirects=False) as resp:
                assert resp.status == 303
        async with aiohttp.ClientSession(headers={"Cookie": f"console_session={cookie}"}) as replay:
            async with replay.get(f"{second.url}/console") as resp:
                assert 'name="password"' in await resp.text()
    finally:
        await second_runner.cleanup()
        await first_runner.cleanup()


async def test_redis_restart_keeps_queue_and_assignments(fake_rasa: FakeRasa, tmp_path: Path,
                                                         redis_url: str) -> None:
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path), redis_url=redis_url)
    first, runner = await start_gateway(settings)
    alice = await ConsoleClient.sign_in(first.url, "alice")
    claimed_chat = await ChatClient.connect(first.ws_url)
    waiting_chat = await ChatClient.connect(first.ws_url)
    claimed_key, waiting_key = (f"webchat:{c.conversation_id}" for c in (claimed_chat, waiting_chat))
    await ask_for_a_person(claimed_chat, first)
    await ask_for_a_person(waiting_chat, first)
    await alice.state_where(lambda s: len({i["key"] for i in s["queue"]} & {claimed_key, waiting_key}) == 2)
    await alice.send(type="claim", key=claimed_key)
    assert (await alice.next("claimed"))["ok"]
    await alice.close()
    token = claimed_chat.token
    await claimed_chat.close()
    await waiting_chat.close()
    await runner.cleanup()  # the gateway goes away

    second, runner = await start_gateway(settings)
    try:
        alice = await ConsoleClient.sign_in(second.url, "alice")
        assert claimed_key in [i["key"] for i in alice.state["mine"]]
        assert waiting_key in [i["key"] for i in alice.state["queue"]]
        back = await ChatClient.connect(second.ws_url, token=token)
        await back.say("is anyone still there?")
        entry = await alice.next("entry")
        assert entry["key"] == claimed_key and entry["entry"]["text"] == "is anyone still there?"
        await alice.send(type="reply", key=claimed_key, text="Yes, still here.")
        assert (await back.next_frame("reply"))["text"] == "Yes, still here."
        await alice.send(type="open", key=claimed_key)
        transcript = (await alice.next("conversation"))["transcript"]
        assert any(e["text"] == "I want to talk to a human" for e in transcript)  # history survived too
        await back.close()
        await alice.close()
    finally:
        await runner.cleanup()


async def test_agent_takes_over_a_conversation_from_the_live_list(team_gateway: RunningGateway,
                                                                  fake_rasa: FakeRasa) -> None:
    chat = await ChatClient.connect(team_gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    try:
        await chat.say("are you a bot?")
        await chat.next_frame("reply")
        await alice.send(type="ping")  # any frame; the live list comes with the next state
        bob = await ConsoleClient.sign_in(team_gateway.url, "bob")  # a state push to everyone
        await alice.state_where(lambda s: any(i["key"] == key for i in s["live"]))
        await alice.send(type="take", key=key)
        assert (await alice.next("claimed"))["ok"] is True
        assert "chatting with Alice Chen" in (await chat.next_frame("reply"))["text"]
        assert await chat.unread_replies(team_gateway) == []  # no "you are number 1 in the queue" for a takeover
        record = await team_gateway.app[HANDOFF_KEY].store.get(key)
        assert record is not None and record.reason == "agent_initiated"
        await chat.say("hello?")
        assert (await alice.next("entry"))["entry"]["text"] == "hello?"  # the bot is paused
        await bob.close()
    finally:
        await chat.close()
        await alice.close()


@pytest.mark.parametrize("agent_online", [True, False])
async def test_a_severe_complaint_gets_one_honest_promise_not_two(team_gateway: RunningGateway, agent_online: bool,
                                                                  rasa_stack: RasaProcesses) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice") if agent_online else None
    chat = await ChatClient.connect(team_gateway.ws_url)
    try:
        await chat.say("I want to make a complaint: the courier threw my parcel at me and I hurt my hand, "
                       "I had to see a doctor. Order AS10008")
        texts = " ".join(r["text"] or "" for r in await chat.replies_until_quiet(quiet=1.5))
        assert "Complaint registered" in texts and "within 30 minutes" not in texts  # the ticket promises no time
        if agent_online:
            assert "number 1 in the queue" in texts and "will answer here by" not in texts
        else:  # the ticket's due time, with its time zone
            assert "No one from our team is online" in texts and "(China time)" in texts
            assert "number" not in texts.split("online")[1].split(".")[0]
        record = await team_gateway.app[HANDOFF_KEY].store.get(f"webchat:{chat.conversation_id}")
        assert record is not None and record.reason == "severe_complaint" and record.detail["priority"] == "high"
    finally:
        await chat.close()
        if alice is not None:
            await alice.close()


async def test_a_gateway_restart_mid_handoff_puts_the_shopper_back_in_the_queue(
        fake_rasa: FakeRasa, tmp_path: Path) -> None:
    """Memory store: the restart forgets the handoff, Rasa still has the conversation paused."""
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path))
    first, runner = await start_gateway(settings)
    chat = await ChatClient.connect(first.ws_url)
    token = chat.token
    try:
        await ask_for_a_person(chat, first)
        assert (await first.service.rasa.tracker(f"webchat:{chat.conversation_id}"))["paused"]
    finally:
        await chat.close()
        await runner.cleanup()
    second, runner = await start_gateway(settings)  # same secret, same port: the shopper's page reconnects
    chat = await ChatClient.connect(second.ws_url, token=token)
    try:
        await chat.say("hello? is anyone there?")
        texts = " ".join(r["text"] or "" for r in await chat.replies_of_the_turn(second))
        assert "Sorry, something went wrong" not in texts  # not the apology for a silent Rasa
        assert "ticket H-" in texts or "in the queue" in texts  # told what happens now
        record = await second.app[HANDOFF_KEY].store.get(f"webchat:{chat.conversation_id}")
        assert record is not None and record.status == "queued" and record.last_text == "hello? is anyone there?"
        await chat.say("I want to talk to a human")  # kept for the agent, not answered with an apology
        await chat.next_frame("ack")
        assert not [r for r in await chat.unread_replies(second) if "went wrong" in (r.get("text") or "")]
    finally:
        await chat.close()
        await runner.cleanup()
