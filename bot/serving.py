"""Starting the gateway's HTTP server, in the order the outside world needs.

aiohttp runs `on_startup` before the port is bound. Anything that tells a platform where
the gateway is (Telegram `setWebhook`), or that starts taking its traffic (Slack
`auth.test` and Socket Mode, replays of kept deliveries), must wait until the port is
really listening: otherwise a failed bind leaves a webhook pointing at nothing. Such
work registers with `on_listening` and runs after `serve` has bound the port.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

ListeningHook = Callable[[web.Application], Awaitable[None]]
LISTENING_KEY = web.AppKey("on_listening", list)


def on_listening(app: web.Application, hook: ListeningHook) -> None:
    """Run `hook(app)` once the gateway's port is bound (in registration order)."""
    app.setdefault(LISTENING_KEY, []).append(hook)


async def serve(app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5) -> web.AppRunner:
    """Start-up hooks, bind `host:port`, then the `on_listening` hooks. A failed bind
    (OSError) cleans up and is raised before any listening hook has run."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    for hook in app.get(LISTENING_KEY, []):
        await hook(app)
    return runner
