"""The Slack channel assembled: Bolt app, HTTP endpoint or Socket Mode, and its life cycle.

HTTP mode: Slack posts to `POST /slack/events` (events and interactivity alike). The aiohttp
request is handed to Bolt (`slack_bolt.adapter.aiohttp`), whose built-in middleware verifies
the signature (bad or stale: 401), answers URL verification and skips the app's own events;
then the gateway's gate and listeners run (channels/slack/intake.py).
Socket Mode: Bolt's aiohttp Socket Mode handler connects out to Slack; same pipeline.

Start-up: one shared HTTP session for the Web API and file relay; once the port is bound
(bot/serving.py): auth.test (who the app is), replay of deliveries kept before the last
stop, then the Socket Mode connection.
Shutdown: the socket is closed first (no new events), then the session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationService
from channels.slack.config import SlackConfig
from channels.slack.intake import SlackIntake, identity_from_auth_test
from channels.slack.logtext import LogText, log
from channels.slack.session import SharedSession

AUTH_TEST_TIMEOUT = 10.0


def bolt_logger() -> logging.Logger:
    """The base logger Bolt copies its level from: quiet unless the gateway logs at DEBUG, because
    some of Bolt's INFO messages carry request bodies (shopper text)."""
    logger = logging.getLogger("gateway.slack.bolt")
    logger.setLevel(logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG) else logging.WARNING)
    return logger


def build_bolt_app(config: SlackConfig, client: AsyncWebClient, intake: SlackIntake) -> AsyncApp:
    """A Bolt app around the gateway's client; listeners finish before the ack (they only hand over)."""
    bolt = AsyncApp(
        name="aftersales-gateway",
        client=client,
        signing_secret=config.signing_secret or None,
        request_verification_enabled=config.mode == "http",
        process_before_response=True,
        logger=bolt_logger(),
    )
    intake.install(bolt)
    return bolt


def _timestamp_is_numeric(request: web.Request) -> bool:
    return request.headers.get("X-Slack-Request-Timestamp", "").strip().isdigit()


class SlackRuntime:
    """Owns the Slack channel's connections and hooks them into the gateway's aiohttp app."""

    def __init__(self, config: SlackConfig, client: AsyncWebClient, bolt: AsyncApp, intake: SlackIntake,
                 service: ConversationService, session: SharedSession) -> None:
        self.config = config
        self.client = client
        self.bolt = bolt
        self.intake = intake
        self.service = service
        self.session = session
        self.socket: AsyncSocketModeHandler | None = None
        self._socket_task: asyncio.Task[None] | None = None

    # -- HTTP endpoint ------------------------------------------------------------------------

    async def handle_events(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: Events API deliveries and interactivity payloads, verified by Bolt."""
        if not _timestamp_is_numeric(request):
            return self._rejected()
        response = await to_aiohttp_response(await self.bolt.async_dispatch(await to_bolt_request(request)))
        if response.status == 401:
            return self._rejected()
        return response

    def _rejected(self) -> web.Response:
        self.service.metrics.inc("frames_rejected_total", reason="slack_signature")
        log.warning(LogText.SIGNATURE_REJECTED)
        return web.json_response({"error": "invalid_signature"}, status=401)

    # -- life cycle -----------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        await self.session.open()

    async def on_listening(self, app: web.Application) -> None:
        """Once the port is bound: who the app is, then Socket Mode (kept deliveries are
        taken over by `intake.replay`, registered in `setup` to run periodically)."""
        await self.identify()
        if self.config.mode == "socket":
            self.socket = AsyncSocketModeHandler(self.bolt, app_token=self.config.app_token,
                                                 logger=logging.getLogger("gateway.slack.socket"),
                                                 web_client=self.client)
            self._socket_task = asyncio.create_task(self._connect_socket(self.socket))

    async def identify(self) -> None:
        """auth.test: learn the app's user and bot ids (its own messages and mentions)."""
        try:
            result = await asyncio.wait_for(self.client.auth_test(), AUTH_TEST_TIMEOUT)
        except Exception as exc:
            log.error(LogText.IDENTITY_FAILED, extra={"error": repr(exc)})
            return
        self.intake.identity = identity_from_auth_test(result.data if isinstance(result.data, dict) else {})
        log.info(LogText.IDENTITY, extra={"bot_user_id": self.intake.identity.user_id,
                                          "team_id": self.intake.identity.team_id})

    async def _connect_socket(self, handler: AsyncSocketModeHandler) -> None:
        log.info(LogText.SOCKET_CONNECTING)
        await handler.connect_async()  # type: ignore[no-untyped-call]  # retries until connected or closed
        if not handler.client.closed:
            log.info(LogText.SOCKET_CONNECTED)

    async def on_shutdown(self, app: web.Application) -> None:
        """Stop taking events: close the Socket Mode connection."""
        if self._socket_task is not None:
            self._socket_task.cancel()
            await asyncio.gather(self._socket_task, return_exceptions=True)
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
            self.socket = None
            log.info(LogText.SOCKET_CLOSED)

    async def on_cleanup(self, app: web.Application) -> None:
        await self.on_shutdown(app)
        await self.intake.close()
        await self.session.close()

    def describe(self) -> dict[str, Any]:
        """What to log when the channel is enabled."""
        return {"mode": self.config.mode, "api_base": self.config.api_base}
