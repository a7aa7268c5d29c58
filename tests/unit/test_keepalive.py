"""The turn's own HTTP connections to Rasa (bot/keepalive.py), against real local servers: a real
aiohttp server where Rasa's behaviour is ordinary, a raw socket server where the test needs
to say exactly which bytes come back (chunks, a close instead of an answer, garbage)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from bot.keepalive import BadResponse, KeepAlivePool, NotConnected
from bot.messages import InboundMessage
from bot.rasa_client import RasaClient, RasaNotReached, RasaRejected, RasaUnavailable
from tests.conftest import free_port

Answerer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Reads one request at a time (headers and Content-Length body) and lets `answer` write
    whatever bytes it likes; counts the connections it accepted."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                self.requests.append(body)
                await self.answer(body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def json_answer(value: object, extra: bytes = b"") -> bytes:
    body = json.dumps(value).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


async def echo_text(body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(json_answer([{"text": json.loads(body)["message"]}]))


@pytest.fixture
async def rasa_like() -> AsyncIterator[tuple[str, list[str]]]:
    """A real aiohttp server answering the webhook as Rasa does; records the peers it saw."""
    peers: list[str] = []

    async def webhook(request: web.Request) -> web.Response:
        peers.append(f"{request.transport.get_extra_info('peername')}")  # type: ignore[union-attr]
        body = await request.json()
        return web.json_response([{"recipient_id": body["sender"], "text": f"you said {body['message']}"}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", peers
    await runner.cleanup()


def message(text: str, number: int = 1) -> InboundMessage:
    return InboundMessage(channel="webchat", conversation_id="c1", sender_id="c1", text=text, message_id=f"m{number}")


async def test_turns_share_one_kept_connection_and_get_rasas_replies(rasa_like: tuple[str, list[str]]) -> None:
    url, peers = rasa_like
    client = RasaClient(url)
    await client.start()
    try:
        for number in range(5):
            [reply] = await client.send_message(message(f"hello {number}", number))
            assert reply.text == f"you said hello {number}"
    finally:
        await client.close()
    assert len(peers) == 5 and len(set(peers)) == 1  # five turns, one connection


async def test_a_connection_rasa_closed_while_idle_is_not_used_again() -> None:
    async def answer_then_close(body: bytes, writer: asyncio.StreamWriter) -> None:
        await echo_text(body, writer)
        await writer.drain()
        writer.close()  # as Sanic does after its keep-alive timeout

    async with RawServer(answer_then_close) as server:
        pool = KeepAlivePool("127.0.0.1", server.port, "/webhooks/rest/webhook", timeout=5)
        for text in ("one", "two", "three"):
            answer = await pool.post(json.dumps({"message": text}).encode())
            await asyncio.sleep(0.05)  # the close reaches us
            assert json.loads(answer.body) == [{"text": text}]
        pool.close()
    assert server.connections == 3


async def test_connection_close_chunked_and_until_close_answers_are_read_whole() -> None:
    answers = iter([
        json_answer([{"text": "closing"}], b"Connection: close\r\n"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"te\r\n9;x=1\r\nxt\": \"ch\"\r\n4\r\n}]  \r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"text\": \"until close\"}]",
    ])

    async def answer(body: bytes, writer: asyncio.StreamWriter) -> None:
        data = next(answers)
        for i in range(0, len(data), 7):  # in small pieces, as a slow network delivers them
            writer.write(data[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        if b"Content-Length" not in data and b"chunked" not in data:
            writer.close()

    async with RawServer(answer) as server:
        pool = KeepAlivePool("127.0.0.1", server.port, "/webhooks/rest/webhook", timeout=5)
        texts = [json.loads((await pool.post(b"{}")).body)[0]["text"] for _ in range(3)]
        pool.close()
    assert texts == ["closing", "ch", "until close"]


async def test_no_server_means_not_sent_and_the_next_rasa_server_takes_the_turn(
        rasa_like: tuple[str, list[str]]) -> None:
    url, peers = rasa_like
    client = RasaClient([f"http://127.0.0.1:{free_port()}", url])
    await client.start()
    try:
        for number in range(3):
            [reply] = await client.send_message(message("hi", number))
            assert reply.text == "you said hi"
    finally:
        await client.close()
    assert len(peers) == 3
    with pytest.raises(NotConnected):
        await KeepAlivePool("127.0.0.1", free_port(), "/", timeout=5).post(b"{}")


async def test_a_turn_sent_but_not_answered_is_unavailable_not_lost_and_the_connection_is_dropped() -> None:
    calls = 0

    async def hang_up_first(body: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.close()  # read it, answer nothing: it may have run
        else:
            await echo_text(body, writer)

    async with RawServer(hang_up_first) as server:
        client = RasaClient(f"http://127.0.0.1:{server.port}")
        await client.start()
        try:
            with pytest.raises(RasaUnavailable) as raised:
                await client.send_message(message("first"))
            assert not isinstance(raised.value, RasaNotReached)  # sent: the retry reads the tracker first
            [reply] = await client.send_message(message("second", 2))
            assert reply.text == "second"
        finally:
            await client.close()


async def test_a_slow_answer_times_out_and_its_connection_is_never_reused() -> None:
    async def slow_first(body: bytes, writer: asyncio.StreamWriter) -> None:
        if json.loads(body)["message"] == "slow":
            await asyncio.sleep(1.0)
        await echo_text(body, writer)

    async with RawServer(slow_first) as server:
        pool = KeepAlivePool("127.0.0.1", server.port, "/webhooks/rest/webhook", timeout=0.3)
        with pytest.raises(TimeoutError):
            await pool.post(b'{"message": "slow"}')
        answer = await pool.post(b'{"message": "next"}')
        assert json.loads(answer.body) == [{"text": "next"}]  # not the slow one's late answer
        pool.close()
    assert server.connections == 2


@pytest.mark.parametrize("garbage", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 70_000 + b"\r\n\r\n",
])
async def test_an_answer_that_is_not_http_is_refused_clearly(garbage: bytes) -> None:
    async def answer(body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(garbage)

    async with RawServer(answer) as server:
        pool = KeepAlivePool("127.0.0.1", server.port, "/", timeout=5)
        with pytest.raises(BadResponse):
            await pool.post(b"{}")
        pool.close()


async def test_requests_over_the_connection_limit_wait_their_turn_and_all_get_answered() -> None:
    async def slowly(body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await echo_text(body, writer)

    async with RawServer(slowly) as server:
        pool = KeepAlivePool("127.0.0.1", server.port, "/webhooks/rest/webhook", timeout=5, limit=3)
        bodies = [json.dumps({"message": f"m{i}"}).encode() for i in range(12)]
        answers = await asyncio.gather(*(pool.post(b) for b in bodies))
        pool.close()
    assert [json.loads(a.body)[0]["text"] for a in answers] == [f"m{i}" for i in range(12)]
    assert server.connections == 3


async def test_rasas_errors_keep_their_meaning() -> None:
    answers = iter([b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nbad request",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot json"])

    async def answer(body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(next(answers))

    async with RawServer(answer) as server:
        client = RasaClient(f"http://127.0.0.1:{server.port}")
        await client.start()
        try:
            with pytest.raises(RasaUnavailable, match="HTTP 500"):
                await client.send_message(message("a"))
            with pytest.raises(RasaRejected, match="bad request"):
                await client.send_message(message("b", 2))
            with pytest.raises(RasaRejected, match="invalid JSON"):
                await client.send_message(message("c", 3))
        finally:
            await client.close()
    assert server.connections == 1  # error answers with a length keep the connection

