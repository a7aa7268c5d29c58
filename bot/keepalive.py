"""The request every turn makes, POST /webhooks/rest/webhook to a Rasa server, on HTTP/1.1
keep-alive connections held for it.

aiohttp's client costs about 250 us of CPU per request here (measured against the same
server: bench/cluster.py part 2), for what a general client needs: cookies, redirects,
proxies, tracing, URL and header objects for every request. A turn needs none of them: the
request line and headers are the same bytes every time but for the length, and Rasa's
answer is a JSON body with a Content-Length. `KeepAlivePool` writes the request as one
`bytes` and reads the answer with a small HTTP/1.1 parser (Content-Length, chunked, or
until close), on connections kept open between turns; about a third of the CPU. Everything
else the gateway asks Rasa (trackers, status, events) still goes through aiohttp.

Errors are the caller's to translate: `NotConnected` (the connection could not be made: the
request never left), `ConnectionLost` (it was sent, the answer did not come: it may have
run), `asyncio.TimeoutError`, `BadResponse`. Only plain `http://` servers use it (a shop's
Rasa behind TLS goes through aiohttp).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
# A connection unused this long is closed rather than reused: Rasa's web server (Sanic) closes
# idle keep-alive connections after 5 s, and a request written into one it is closing is lost.
IDLE_SECONDS = 3.0


class KeepAliveError(Exception):
    """The request got no usable answer."""


class NotConnected(KeepAliveError):
    """No connection could be made: the request was never sent."""


class ConnectionLost(KeepAliveError):
    """The connection closed before the whole answer came: the request may have run."""


class BadResponse(KeepAliveError):
    """What came back is not an HTTP/1.x answer this parser reads."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection: at most one request at a time; the answer is parsed as it arrives."""

    __slots__ = ("transport", "buffer", "waiter", "closed", "idle_since", "_until_close")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self.closed = False
        self.idle_since = 0.0
        # The status of an answer with neither a length nor chunks: it ends with the connection.
        self._until_close: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done() and self._until_close is None:
            self._parse()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self._until_close is not None:
            head_end = self.buffer.find(b"\r\n\r\n")
            waiter.set_result((Answer(self._until_close, bytes(self.buffer[head_end + 4:])), False))
        else:
            waiter.set_exception(ConnectionLost(f"Rasa closed the connection before answering ({exc or 'end of stream'})"))

    def send(self, request: bytes) -> asyncio.Future[tuple[Answer, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self._until_close = None
        self.transport.write(request)
        return self.waiter

    def _fail(self, problem: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(problem))
        if self.transport is not None:
            self.transport.abort()

    def _parse(self) -> None:
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if head_end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail("the answer's headers are too long")
            return
        lines = bytes(buffer[:head_end]).split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            self._fail(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
            return
        status = int(status_line[1])
        if 100 <= status < 200:  # an interim answer (never asked for): skip it
            del buffer[:head_end + 4]
            if buffer:
                self._parse()
            return
        length: int | None = None
        chunked = False
        keep_alive = status_line[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit():
                    self._fail("a Content-Length that is not a number")
                    return
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep_alive = b"close" not in value.lower() and (keep_alive or b"keep-alive" in value.lower())
        start = head_end + 4
        if chunked:
            body = self._chunks(start)
            if body is None:
                return
        elif length is not None:
            if length > MAX_BODY_BYTES:
                self._fail("the answer is too large")
                return
            if len(buffer) - start < length:
                return  # more to come
            body = bytes(buffer[start:start + length])
        elif status in (204, 304):
            body = b""
        else:
            self._until_close = status  # read until Rasa closes the connection
            return
        assert self.waiter is not None
        self.waiter.set_result((Answer(status, body), keep_alive))

    def _chunks(self, at: int) -> bytes | None:
        """The body of a chunked answer once all of it is here, else None (more to come)."""
        buffer, parts = self.buffer, list[bytes]()
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size_text = bytes(buffer[at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._fail("a chunk size that is not a number")
                return None
            if size == 0:
                if buffer.find(b"\r\n", line_end + 2) < 0:
                    return None  # the trailer's end is still to come
                return b"".join(parts)
            if len(buffer) < line_end + 2 + size + 2:
                return None
            parts.append(bytes(buffer[line_end + 2:line_end + 2 + size]))
            at = line_end + 2 + size + 2
            if sum(map(len, parts)) > MAX_BODY_BYTES:
                self._fail("the answer is too large")
                return None


class KeepAlivePool:
    """POSTs of JSON to one path of one server, on at most `limit` connections at once, each
    answered within `timeout` seconds (checked every `timeout / 10`, at most every second: a
    timer per request would cost more than the rest of the request)."""

    def __init__(self, host: str, port: int, path_and_query: str, *, timeout: float, limit: int = 200,
                 connect_timeout: float = 5.0) -> None:
        self.host, self.port = host, port
        host_header = host if port == 80 else f"{host}:{port}"
        self._head = (f"POST {path_and_query} HTTP/1.1\r\nHost: {host_header}\r\n"
                      "Content-Type: application/json\r\nAccept: application/json\r\n"
                      "Connection: keep-alive\r\nContent-Length: ").encode("latin-1")
        self._idle: deque[_Connection] = deque()
        self._busy: dict[_Connection, float] = {}  # connections waiting for an answer -> their deadline
        self._limit, self._in_use = limit, 0
        self._queued: deque[asyncio.Future[None]] = deque()  # requests waiting for a free connection
        self._timeout = timeout
        self._check_every = min(1.0, max(0.02, timeout / 10))
        self._watcher: asyncio.Task[None] | None = None
        self._connect_timeout = connect_timeout
        self._closing = False

    async def post(self, body: bytes) -> Answer:
        """Send `body` and return the answer; `asyncio.TimeoutError` after `timeout` seconds."""
        await self._acquire()
        try:
            connection = self._reusable() or await self._connect()
            answering = connection.send(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
            self._busy[connection] = time.monotonic() + self._timeout
            if self._watcher is None:
                self._watcher = asyncio.create_task(self._time_out_late_answers(), name="rasa-turn-timeouts")
            try:
                answer, keep_alive = await answering
            except BaseException:
                if connection.transport is not None:
                    connection.transport.abort()  # an answer may still come: never reuse it
                raise
            finally:
                self._busy.pop(connection, None)
            if keep_alive and not connection.closed and not self._closing:
                connection.idle_since = time.monotonic()
                connection.waiter = None
                self._idle.append(connection)
            elif connection.transport is not None:
                connection.transport.close()
            return answer
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self._in_use < self._limit and not self._queued:
            self._in_use += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._queued.append(turn)
        try:
            await turn  # `_release` passes its connection slot on
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # given the slot just as it was cancelled: pass it on
            else:
                self._queued.remove(turn)
            raise

    def _release(self) -> None:
        while self._queued:
            turn = self._queued.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes to the oldest waiting request
                return
        self._in_use -= 1

    async def _time_out_late_answers(self) -> None:
        try:
            while self._busy:
                await asyncio.sleep(self._check_every)
                now = time.monotonic()
                for connection in [c for c, deadline in self._busy.items() if deadline <= now]:
                    waiter = connection.waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(asyncio.TimeoutError(f"no answer within {self._timeout:g} s"))
        finally:
            self._watcher = None

    def _reusable(self) -> _Connection | None:
        stale_before = time.monotonic() - IDLE_SECONDS
        idle = self._idle
        while idle and (idle[0].closed or idle[0].idle_since < stale_before):
            old = idle.popleft()  # the oldest first: closed by Rasa, or about to be
            if old.transport is not None:
                old.transport.close()
        while idle:
            connection = idle.pop()  # the most recently used: the surest to be open
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(_Connection, self.host, self.port)
        except (OSError, asyncio.TimeoutError) as exc:
            raise NotConnected(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        return connection

    def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        while self._idle:
            connection = self._idle.pop()
            if connection.transport is not None:
                connection.transport.close()
