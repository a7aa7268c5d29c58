"""One write for the frames a web chat socket is sent in one pass of the event loop.

A turn sends a socket its ack and typing frame in one pass, then typing-off and the reply in
another. aiohttp writes every frame to the transport at once: two system calls and two
wake-ups of the client per pair. `cork` puts a `CorkedTransport` between aiohttp's
websocket writer and the socket's transport: what is written during one pass leaves in one
`write` when the pass ends, the same bytes in the same order; a close frame leaves at once,
with what waits before it. Measured with bench/cluster.py part 2's load: about 50-65 us of
gateway CPU per turn (the system calls, mostly), about a tenth of a turn.

This is the one place that reaches into aiohttp's internals: `WebSocketResponse._writer`
and its `transport` attribute (aiohttp 3.9-3.14), which have no public equivalent. `cork`
checks that they are there and does nothing otherwise (the socket then writes as aiohttp
does); tests/unit/test_webchat_corking.py fails when an aiohttp upgrade moves them, so the
saving is not lost unnoticed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

CLOSE_OPCODE = 0x8


def cork(ws: web.WebSocketResponse) -> bool:
    """Cork a prepared socket's writes; False (and nothing changed) where aiohttp's writer is
    not as expected."""
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or isinstance(transport, CorkedTransport) or not callable(getattr(transport, "write", None)):
        return False
    writer.transport = CorkedTransport(transport)  # type: ignore[union-attr]
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

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size()) + sum(len(d) for d in self._waiting or ())

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
