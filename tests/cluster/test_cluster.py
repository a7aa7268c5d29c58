"""The production topology, started by `python -m gateway cluster` exactly as a shop starts it:
Redis (AOF), an action server, two Rasa servers, three gateways and HAProxy in front. Shoppers
talk to HAProxy only, as they would in production.

- One gateway is killed with -9 while 50 web chat shoppers, 5 Telegram chats and 5 Slack DMs
  are in the middle of a return: every client reconnects (or Telegram and Slack redeliver)
  through the load balancer, and every acknowledged message is answered exactly once, in
  order; Rasa ran each once, and the return form went on where it was.
- Redis is killed (-9) mid-conversation and comes back from its AOF: nothing acknowledged is
  lost, the gateways and Rasa reconnect, and the forms go on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import free_port
from tests.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, SlackClient, dm, new_id
from tests.slack.fake_web_api import FakeSlackApi
from tests.telegram.conftest import WEBHOOK_SECRET, new_token
from tests.telegram.fake_bot_api import FakeBotAPI

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
RASA_TOKEN = "cluster-test-" + uuid.uuid4().hex

# A return, as a shopper types it: each step's answer must say what it says here.
RETURN = [("hello", "after-sales assistant"),
          ("I want to return my order AS10001", "last 4 digits"),
          ("5821", "reason")]


@dataclass
class RunningCluster:
    url: str
    directory: Path
    proc: asyncio.subprocess.Process
    telegram: FakeBotAPI
    slack: FakeSlackApi

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/webchat/ws"

    def parts(self) -> dict[str, dict[str, Any]]:
        described = json.loads((self.directory / "cluster.json").read_text())
        return {p["name"]: p for p in described["parts"]}

    async def tracker_user_texts(self, key: str) -> list[str]:
        """What Rasa itself recorded the shopper saying (from one of the Rasa servers: they share Redis)."""
        port = self.parts()["rasa-1"]["port"]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/conversations/{key}/tracker",
                                   params={"token": RASA_TOKEN}) as resp:
                assert resp.status == 200, await resp.text()
                tracker = await resp.json()
        return [e.get("text") for e in tracker["events"] if e.get("event") == "user"]

    async def metric(self, gateway: str, name: str) -> float:
        port = self.parts()[gateway]["port"]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    body = await resp.text()
        except aiohttp.ClientError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith((name + " ", name + "{")))

    def kill(self, part: str) -> None:
        os.killpg(self.parts()[part]["pid"], signal.SIGKILL)

    async def wait_restarted(self, part: str, old_pid: int, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while self.parts()[part]["pid"] == old_pid:
                await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(rasa_install: tuple[Path, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningCluster]:
    telegram = FakeBotAPI(token=new_token())
    await telegram.start()
    slack = await FakeSlackApi(BOT_TOKEN, APP_TOKEN).start()
    directory = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {**os.environ, "RASA_TOKEN": RASA_TOKEN, "LOG_LEVEL": "warning",
           # 50 shoppers open their conversations from this one address within a second
           "WEBCHAT_NEW_SESSIONS_PER_MINUTE": "100000", "MAX_CONNECTIONS_PER_ADDRESS": "1000",
           "TELEGRAM_BOT_TOKEN": telegram.token, "TELEGRAM_API_BASE": telegram.base_url,
           "TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "TELEGRAM_RETRY_BACKOFF_SECONDS": "0.1",
           "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_BASE": slack.api_base, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    env.pop("REDIS_URL", None)
    env.pop("DATA_KEYS", None)  # the cluster makes its own, shared by all its parts
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "cluster", "--gateways", "3", "--rasa", "2", "--port", str(port),
        "--dir", str(directory), cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    said: list[str] = []
    try:
        async with asyncio.timeout(360):
            while not any(line.startswith("Cluster ready") for line in said):
                line = (await proc.stdout.readline()).decode()
                assert line, f"the cluster command ended: {said}"
                said.append(line)

        async def drain_output() -> None:
            assert proc.stdout is not None
            while await proc.stdout.readline():
                pass

        reader = asyncio.create_task(drain_output())
        running = RunningCluster(f"http://127.0.0.1:{port}", directory, proc, telegram, slack)
        await telegram.wait_until(lambda: telegram.webhook_url.startswith(running.url), timeout=30)
        yield running
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(90):
            assert await proc.wait() == 0
        reader.cancel()
        assert not [p for p in running.parts().values() if _alive(p["pid"])]  # every part stopped
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await telegram.close()
        await slack.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class WebShopper:
    """A web chat client as docs/webchat-protocol.md asks: keeps its token, reconnects when the
    socket drops (through the load balancer: any gateway), resends what was not acknowledged
    with the same id, and reads what it missed in the `history` of its next `hello`."""

    ws_url: str
    token: str | None = None
    conversation_id: str = ""
    live: list[str] = field(default_factory=list)  # reply texts received as they were sent
    acked: set[str] = field(default_factory=set)  # ids the gateway acknowledged: kept, never resent
    reconnects: int = 0
    session: aiohttp.ClientSession | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> list[dict[str, Any]]:
        """Open a socket and say hello; the history the gateway sends back."""
        if self.session is None:
            self.session = aiohttp.ClientSession()
        async with asyncio.timeout(90):
            while True:
                try:
                    self.ws = await self.session.ws_connect(self.ws_url, heartbeat=None)
                    await self.ws.send_json({"type": "hello", "token": self.token, "locale": "en"})
                    session = await self._frame("session")
                    self.token, self.conversation_id = session["token"], session["conversation_id"]
                    if not session["resumed"]:
                        return []
                    history = await self._frame("history")
                    messages: list[dict[str, Any]] = history["messages"]
                    return messages
                except (aiohttp.ClientError, ConnectionError, TimeoutError):
                    await asyncio.sleep(0.3)  # the load balancer has not noticed the dead gateway yet

    async def _frame(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed ({msg.type})")
                frame: dict[str, Any] = json.loads(msg.data)
                if frame["type"] == "reply" and not frame.get("holding"):
                    self.live.append(frame.get("text") or "")
                if frame["type"] == "ack":
                    self.acked.add(str(frame.get("id")))
                if frame["type"] == kind:
                    return frame

    @staticmethod
    def answered_in(history: list[dict[str, Any]], message_id: str, expected: str) -> bool:
        ids = [m.get("id") for m in history]
        if message_id not in ids:
            return False
        return any(m["role"] == "bot" and expected in (m.get("text") or "") for m in history[ids.index(message_id) + 1:])

    async def turn(self, text: str, expected: str) -> None:
        """Say `text` until the answer saying `expected` came, however often the socket drops meanwhile."""
        message_id = uuid.uuid4().hex
        seen = len(self.live)
        resend = True
        while True:
            try:
                if resend:
                    assert self.ws is not None
                    await self.ws.send_json({"type": "message", "id": message_id, "text": text})
                    resend = False
                while not any(expected in t for t in self.live[seen:]):
                    await self._frame("reply", timeout=120)
                return
            except (ConnectionError, aiohttp.ClientError, TimeoutError, RuntimeError):
                self.reconnects += 1
                seen = len(self.live)
                history = await self.connect()
                if self.answered_in(history, message_id, expected):
                    return
                # As the protocol asks: resend (same id) only what was not acknowledged; an
                # acknowledged message is kept and answered, on whichever gateway.
                resend = message_id not in self.acked

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


def bot_texts_after_each(history: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The history as (shopper text, [bot texts that followed it])."""
    turns: list[tuple[str, list[str]]] = []
    for m in history:
        if m["role"] == "shopper":
            turns.append((m["text"], []))
        elif turns:
            turns[-1][1].append(m.get("text") or "")
    return turns


async def check_web_shopper(cluster: RunningCluster, shopper: WebShopper) -> None:
    again = WebShopper(cluster.ws_url, token=shopper.token)
    try:
        history = await again.connect()
        turns = bot_texts_after_each(history)
    finally:
        await again.close()
    shown = [(m["role"], m.get("id"), m.get("ts"), (m.get("text") or "")[:30]) for m in history]
    assert [t for t, _ in turns] == [t for t, _ in RETURN], (shopper.conversation_id, shown)  # each once, in order
    for (_, answers), (_, expected) in zip(turns, RETURN, strict=True):
        assert len([a for a in answers if expected in a]) == 1, (expected, turns)  # answered once
    for _, expected in RETURN:
        assert len([t for t in shopper.live if expected in t]) <= 1, shopper.live  # never pushed twice
    key = f"webchat:{shopper.conversation_id}"
    assert await cluster.tracker_user_texts(key) == [t for t, _ in RETURN]  # Rasa ran each once


async def redeliver_until_acknowledged(deliver: Callable[[int], Awaitable[int]]) -> None:
    """What Telegram and Slack do: send a delivery again (attempt 0, 1, ...) until the gateway
    answers 200, whatever gateway HAProxy hands it to and whether one is being killed."""
    attempt = 0
    async with asyncio.timeout(90):
        while True:
            try:
                if await deliver(attempt) == 200:
                    return
            except aiohttp.ClientError:
                pass
            attempt += 1
            await asyncio.sleep(0.5)


async def answered(found: Callable[[], bool]) -> None:
    async with asyncio.timeout(90):
        while not found():
            await asyncio.sleep(0.1)


async def telegram_chat(cluster: RunningCluster, chat_id: int) -> None:
    """A Telegram chat: one update after the other, each redelivered until the webhook answers 200."""
    fake = cluster.telegram
    for text, expected in RETURN:
        update = fake.text_update(chat_id, text)
        await redeliver_until_acknowledged(lambda attempt, update=update: fake.deliver(update))
        await answered(lambda expected=expected: any(expected in t for t in fake.texts(chat_id)))


async def slack_chat(cluster: RunningCluster, channel: str, user: str) -> None:
    """A Slack DM: one event after the other, each retried (with Slack's retry number) until acknowledged."""
    client_session = aiohttp.ClientSession()
    client = SlackClient(cluster.url, client_session)
    try:
        for text, expected in RETURN:
            event, event_id = dm(text, channel, user=user), new_id("Ev")

            async def deliver(attempt: int, event: dict[str, Any] = event, event_id: str = event_id) -> int:
                return (await client.event(event, event_id=event_id, retry_num=attempt or None)).status

            await redeliver_until_acknowledged(deliver)
            await answered(lambda expected=expected: any(expected in p.text for p in cluster.slack.posts(channel)))
    finally:
        await client_session.close()


def check_answers(texts: list[str]) -> None:
    answers = [t for t in texts if "saved" not in t]  # holding notices aside
    for _, expected in RETURN:
        assert len([t for t in answers if expected in t]) == 1, answers  # once each
    positions = [next(i for i, t in enumerate(answers) if expected in t) for _, expected in RETURN]
    assert positions == sorted(positions), answers  # in order


async def test_kill_9_one_gateway_while_50_shoppers_talk(cluster: RunningCluster) -> None:
    shoppers = [WebShopper(cluster.ws_url) for _ in range(50)]
    await asyncio.gather(*(s.connect() for s in shoppers))
    chats = [1_000_000 + n for n in range(5)]
    dms = [(new_id("D"), new_id("U")) for _ in range(5)]

    async def web(shopper: WebShopper) -> None:
        for text, expected in RETURN:
            await shopper.turn(text, expected)

    talking = asyncio.gather(*(web(s) for s in shoppers), *(telegram_chat(cluster, c) for c in chats),
                             *(slack_chat(cluster, c, u) for c, u in dms))
    victim = "gateway-1"
    old_pid = cluster.parts()[victim]["pid"]
    try:
        async with asyncio.timeout(60):  # in the middle: the victim holds messages not answered yet
            while await cluster.metric(victim, "gateway_pending_messages") < 3:
                await asyncio.sleep(0.02)
        cluster.kill(victim)
        async with asyncio.timeout(240):
            await talking
    finally:
        talking.cancel()
        await asyncio.gather(talking, return_exceptions=True)
        for s in shoppers:
            await s.close()
    assert sum(s.reconnects for s in shoppers) > 0  # the kill did cut shoppers off
    for shopper in shoppers:
        await check_web_shopper(cluster, shopper)
    for chat_id in chats:
        check_answers(cluster.telegram.texts(chat_id))
    for channel, _ in dms:
        check_answers([p.text for p in cluster.slack.posts(channel)])
    await cluster.wait_restarted(victim, old_pid)  # the cluster started the killed gateway again


async def test_redis_killed_and_back_from_its_aof_loses_nothing(cluster: RunningCluster) -> None:
    shoppers = [WebShopper(cluster.ws_url) for _ in range(10)]
    await asyncio.gather(*(s.connect() for s in shoppers))
    for s in shoppers:  # the return form is open: Rasa keeps it in Redis
        await s.turn(*RETURN[0])
        await s.turn(*RETURN[1])
    old_pid = cluster.parts()["redis"]["pid"]
    started = time.monotonic()
    cluster.kill("redis")
    last = asyncio.gather(*(s.turn(*RETURN[2]) for s in shoppers))  # sent while Redis is away
    await cluster.wait_restarted("redis", old_pid)
    try:
        async with asyncio.timeout(120):
            await last
    finally:
        last.cancel()
        await asyncio.gather(last, return_exceptions=True)
        for s in shoppers:
            await s.close()
    assert time.monotonic() - started < 120
    for shopper in shoppers:  # the forms went on where they were: "reason" came, not a fresh start
        await check_web_shopper(cluster, shopper)
