"""channels/webchat/corking.py: the frames a socket is sent in one pass of the loop leave in
one write, in order; a close frame at once. It reaches into aiohttp's websocket writer, so
this also fails when an aiohttp upgrade moves what it relies on."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.webchat.corking import CorkedTransport, cork, send_text_now

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A real aiohttp server with `handler` at /ws; its websocket URL."""
    app = web.Application()
    app.router.add_get("/ws", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/ws"))
    finally:
        await server.close()


async def test_frames_of_one_pass_leave_in_one_write_in_order() -> None:
    writes: list[bytes] = []
    corked: list[bool] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        corked.append(cork(ws))
        transport: Any = ws._writer.transport  # type: ignore[union-attr]
        assert isinstance(transport, CorkedTransport)
        real = transport._transport
        real_write = real.write

        def counting(data: bytes) -> None:
            writes.append(bytes(data))
            real_write(data)

        real.write = counting
        await ws.receive()
        for n in range(3):  # one pass: no await that yields between them
            await ws.send_str(f"frame {n}")
        await asyncio.sleep(0.05)
        await ws.send_str("later")
        await ws.close()
        return ws

    async with serving(handler) as url, aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str("go")
        got = [(await ws.receive()).data for _ in range(4)]
        assert got == ["frame 0", "frame 1", "frame 2", "later"]
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    assert corked == [True], "aiohttp's websocket writer changed: channels/webchat/corking.py no longer applies"
    # The three frames in one write; "later" and the close frame (the same pass) in another.
    assert writes == [b"\x81\x07frame 0\x81\x07frame 1\x81\x07frame 2", b"\x81\x05later\x88\x02\x03\xe8"]


async def test_a_close_frame_and_close_send_what_waits_first() -> None:
    class Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_write_buffer_size(self) -> int:
            return 0

    real = Transport()
    corked = CorkedTransport(real)
    corked.write(b"\x81\x01a")
    assert real.written == [] and corked.get_write_buffer_size() == 3
    corked.write(b"\x88\x00")  # a close frame
    assert real.written == [b"\x81\x01a\x88\x00"]
    corked.write(b"\x81\x01b")
    corked.close()
    assert real.written[-1] == b"\x81\x01b" and real.closed


def test_inbox_keys_of_web_chat_messages_are_the_same_whatever_the_ids_hold() -> None:
    """A resend is recognised by its inbox key on every gateway, also one running an earlier
    version: the key stays `json.dumps([conversation id, message id])` for any id."""
    import json
    import random
    import string

    from bot.messages import InboundMessage
    from channels.webchat.websocket import WebchatInput

    alphabet = string.printable + "é中\u2028\x00\x1f\"\\/"
    ids = ["m-1", "a b", 'say "hi"', "back\\slash", "中文", "\x00"] + [
        "".join(random.choice(alphabet) for _ in range(random.randint(1, 12))) for _ in range(2000)]
    for message_id in ids:
        message = InboundMessage(channel="webchat", conversation_id="c0ffee", sender_id="c0ffee", text="t",
                                 message_id=message_id)
        assert WebchatInput.event_id(message) == json.dumps(["c0ffee", message_id]), repr(message_id)


async def test_frames_written_directly_reach_a_real_client_whole_and_in_order() -> None:
    """`send_text_now` writes the frame itself: a client reads every length form (7, 16 and
    64 bits) and non-ASCII text as sent, in order with frames aiohttp's writer sent; once the
    socket is closing it sends nothing and says so."""
    texts = ["ack", "x" * 125, "y" * 126, "中文" * 20_000, "z" * 70_000]
    direct: list[bool] = []
    after_close: list[bool] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cork(ws)
        await ws.receive()
        await ws.send_str("through aiohttp")
        for text in texts:
            direct.append(send_text_now(ws, text))
            await asyncio.sleep(0)
        await ws.close()
        after_close.append(send_text_now(ws, "too late"))
        return ws

    async with serving(handler) as url, aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str("go")
        got = [(await ws.receive()).data for _ in range(len(texts) + 1)]
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    assert got == ["through aiohttp", *texts]
    for _ in range(100):  # the handler goes on once the close handshake is over
        if after_close:
            break
        await asyncio.sleep(0.01)
    assert direct == [True] * len(texts) and after_close == [False]
