"""Starting the gateway's HTTP server, in the order the outside world needs, with its
connections guarded.

aiohttp runs `on_startup` before the port is bound. Anything that tells a platform where
the gateway is (Telegram `setWebhook`), or that starts taking its traffic (Slack
`auth.test` and Socket Mode, replays of kept deliveries), must wait until the port is
really listening: otherwise a failed bind leaves a webhook pointing at nothing. Such
work registers with `on_listening` and runs after `serve` has bound the port.

Every TCP connection is guarded (`ConnectionGuard`): one client address may hold at most
`MAX_CONNECTIONS_PER_ADDRESS` at once (a trusted proxy is exempt: its clients are many), a
connection must deliver a request's headers within `HEADER_TIMEOUT_SECONDS`, and an idle
keep-alive connection is closed after `KEEPALIVE_SECONDS`. So a few hundred idle or
half-sent connections cannot make accepts fail for everyone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from bot.security import Network, is_trusted

log = logging.getLogger("gateway.serving")

KEEPALIVE_SECONDS = 15.0

ListeningHook = Callable[[web.Application], Awaitable[None]]
LISTENING_KEY = web.AppKey("on_listening", list)


DRAINED_KEY = web.AppKey("on_drained", list)


def on_drained(app: web.Application, hook: ListeningHook) -> None:
    """Run `hook(app)` when a graceful stop has answered what it could (SIGTERM, before the
    port is closed): e.g. close sockets with a reconnect hint while the server still runs."""
    app.setdefault(DRAINED_KEY, []).append(hook)


async def drained(app: web.Application) -> None:
    for hook in app.get(DRAINED_KEY, []):
        try:
            await hook(app)
        except Exception:
            log.exception("a drain hook failed")


def on_listening(app: web.Application, hook: ListeningHook) -> None:
    """Run `hook(app)` once the gateway's port is bound (in registration order)."""
    app.setdefault(LISTENING_KEY, []).append(hook)


async def _repeat(name: str, every_seconds: float, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await job()
        except Exception:
            log.exception("periodic job failed", extra={"job": name})
        await asyncio.sleep(every_seconds)


def periodically(app: web.Application, name: str, every_seconds: float,
                 job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` at start, then every `every_seconds`, in a task cancelled at shutdown; a
    failure is logged and the next run comes as planned (housekeeping: expiry, retention)."""
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_repeat(name, every_seconds, job), name=name)
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(context)


def every_while_listening(app: web.Application, name: str, every_seconds: float,
                          job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` once the port is bound, then every `every_seconds` until shutdown begins
    (taking over deliveries a dead gateway left: they are answered only by a gateway that
    takes traffic). A failure is logged; the next run comes as planned."""
    tasks: list[asyncio.Task[None]] = []

    async def begin(app: web.Application) -> None:
        tasks.append(asyncio.create_task(_repeat(name, every_seconds, job), name=name))

    async def end(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    on_listening(app, begin)
    app.on_shutdown.append(end)


class ConnectionGuard:
    """Per-address connection counts and the header deadline, shared by every connection."""

    def __init__(self, max_per_address: int, header_timeout: float, trusted: Sequence[Network] = ()) -> None:
        self.max_per_address = max_per_address
        self.header_timeout = header_timeout
        self.trusted = tuple(trusted)
        self.open: Counter[str] = Counter()
        self.answered: weakref.WeakSet[Any] = weakref.WeakSet()  # transports that delivered a request

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.transport is not None:
            self.answered.add(request.transport)  # its headers arrived in time
        return await handler(request)


class _GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, refuses it over the address's
    cap, and closes it when no request headers arrived in time."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.address: str | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        guard = self.guard
        if not is_trusted(address, guard.trusted) and guard.open[address] >= guard.max_per_address:
            log.warning("connection refused: too many from one address", extra={"remote": address})
            transport.abort() if isinstance(transport, asyncio.Transport) else transport.close()
            return
        self.address = address
        guard.open[address] += 1
        self.deadline = asyncio.get_running_loop().call_later(guard.header_timeout, self._check, transport)
        self.inner.connection_made(transport)

    def _check(self, transport: asyncio.BaseTransport) -> None:
        if transport not in self.guard.answered and not transport.is_closing():
            log.info("connection closed: no request headers in time", extra={"remote": self.address})
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is None:
            return  # refused before aiohttp saw it
        if self.deadline is not None:
            self.deadline.cancel()
        self.guard.open[self.address] -= 1
        if self.guard.open[self.address] <= 0:
            del self.guard.open[self.address]
        self.inner.connection_lost(exc)


class GuardedTCPSite(web.BaseSite):
    """aiohttp's TCP site, each connection wrapped in `_GuardedConnection`."""

    __slots__ = ("_host", "_port", "_guard")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedConnection(server(), self._guard), self._host, self._port, reuse_address=True)


GUARD_KEY = web.AppKey("connection_guard", ConnectionGuard)


async def serve(app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5) -> web.AppRunner:
    """Start-up hooks, bind `host:port` (connections guarded by `app[GUARD_KEY]`), then the
    `on_listening` hooks. A failed bind (OSError) cleans up and is raised before any
    listening hook has run."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    try:
        await GuardedTCPSite(runner, host, port, app[GUARD_KEY]).start()
    except OSError:
        await runner.cleanup()
        raise
    for hook in app.get(LISTENING_KEY, []):
        await hook(app)
    return runner
