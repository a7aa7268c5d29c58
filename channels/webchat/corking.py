"""One write for the frames a web chat socket is sent in one pass of the event loop.

A turn sends a socket its ack and typing frame in one pass, then typing-off and the reply in
another. aiohttp writes every frame to the transport at once: two system calls and two
wake-ups of the client per pair. `cork` puts a `CorkedTransport` between aiohttp's
websocket writer and the socket's transport: what is written during one pass leaves in one
`write` when the pass ends, the same bytes in the same order; a close frame leaves at once,
with what waits before it. Measured with bench/cluster.py part 2's load: about 50-65 us of
gateway CPU per turn (the system calls, mostly), about a tenth of a turn.

`send_text_now` writes the gateway's own text frames (acks, typing, replies) straight into
the corked transport: a server's text frame is two to ten bytes of header before the UTF-8
text (RFC 6455 5.2), and aiohttp's writer spends more on its coroutine and checks than on
that. A socket that is closing or has a backlog (a slow client) is written through
aiohttp's writer, which waits for it to drain.

This is the one place that reaches into aiohttp's internals: `WebSocketResponse._writer`,
its `transport` and `_closing` attributes (aiohttp 3.9-3.14), which have no public
equivalent. `cork` checks that they are there and does nothing otherwise (the socket then
writes as aiohttp does, `send_text_now` says it did not send); tests/unit/test_webchat_corking.py
fails when an aiohttp upgrade moves them, so the saving is not lost unnoticed.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from aiohttp import web

CLOSE_OPCODE = 0x8
TEXT_FINAL = 0x81  # FIN + opcode 1 (text): a whole text frame
# Above this much waiting to be sent, frames go through aiohttp's writer, which waits for the
# socket to drain (a shopper's slow network must not make the gateway hold their replies).
DIRECT_UNTIL_BUFFERED = 64 * 1024


def cork(ws: web.WebSocketResponse) -> bool:
    """Cork a prepared socket's writes; False (and nothing changed) where aiohttp's writer is
    not as expected."""
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or isinstance(transport, CorkedTransport) or not callable(getattr(transport, "write", None)):
        return False
    writer.transport = CorkedTransport(transport)  # type: ignore[union-attr]
    return True


def send_text_now(ws: web.WebSocketResponse, text: str) -> bool:
    """Write one text frame to a corked socket without aiohttp's writer: the frame a server
    sends (RFC 6455 5.2: FIN, opcode 1, unmasked, the length in 7, 16 or 64 bits), with the
    frames already waiting. False, with nothing sent, where the socket is not corked, is
    closing, or has a backlog: the caller sends it with `ws.send_str` instead."""
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if not isinstance(transport, CorkedTransport) or ws.closed or getattr(writer, "_closing", True):
        return False
    if transport.is_closing() or transport.backlog() > DIRECT_UNTIL_BUFFERED:
        return False
    data = text.encode("utf-8")
    size = len(data)
    if size < 126:
        header = bytes((TEXT_FINAL, size))
    elif size < 65536:
        header = struct.pack("!BBH", TEXT_FINAL, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT_FINAL, 127, size)
    transport.write(header + data)
    return True


class CorkedTransport:
    """The writer's side of a transport: `write` waits for the end of the loop's pass; the
    rest is the transport's own (`close` sends what waits first)."""

    __slots__ = ("_transport", "_waiting")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._waiting: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        closing = bool(data) and data[0] & 0x0F == CLOSE_OPCODE
        if self._waiting is None:
            if closing:
                self._transport.write(data)
                return
            self._waiting = [data]
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._waiting.append(data)
            if closing:
                self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(bytes(chunk))

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting and not self._transport.is_closing():
            self._transport.write(b"".join(waiting))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def backlog(self) -> int:
        """What the socket has not sent yet (this pass's frames aside: they are few)."""
        return int(self._transport.get_write_buffer_size())

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size()) + sum(len(d) for d in self._waiting or ())

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
