"""The Telegram input role: updates arrive by webhook or long polling, are kept, then answered.

An update is acknowledged to Telegram (webhook: HTTP 200; polling: the next getUpdates
offset) only after it was (1) marked in the deduper under `telegram:<bot id>:<update_id>`,
so a redelivery is handled once, and (2) put in the inbox, durable with Redis. It leaves
the inbox when its turn is answered; kept updates are replayed at start-up. If it cannot
be kept, the webhook answers 503 (Telegram redelivers later) and polling does not advance.

Updates of one chat are submitted to the conversation service in the order they were
accepted; different chats, and Telegram being slow or down, never hold up anyone else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from bot.conversation import ConversationService
from bot.dedupe import Deduper
from bot.inbox import Inbox
from bot.intake import DurableIntake, NotKept
from bot.ordering import KeyedLocks, backoff
from bot.security import parse_json, same_secret
from channels.telegram.config import TelegramConfig
from channels.telegram.convert import ALLOWED_UPDATES, Intake, UpdateConverter, chat_of
from channels.telegram.output import CHANNEL, TelegramOutput

log = logging.getLogger("gateway.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BACKOFF_SECONDS = 30.0
RECENT_PRESSES = 10_000
CONVERT_ATTEMPTS = 5
STORE_TIMEOUT_SECONDS = 10.0  # a hung Redis must not hang the webhook or the start-up



class TelegramInput:
    """Receives updates (webhook handler and polling loop) and feeds the conversation service."""

    def __init__(self, bot: Bot, config: TelegramConfig, service: ConversationService, deduper: Deduper,
                 inbox: Inbox, output: TelegramOutput, converter: UpdateConverter) -> None:
        self.bot = bot
        self.config = config
        self.service = service
        self.intake = DurableIntake(CHANNEL, deduper, inbox, service.metrics, STORE_TIMEOUT_SECONDS)
        self.output = output
        self.converter = converter
        self._intake_lanes = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pressed: dict[tuple[str, int], None] = {}
        self._closing = False

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Register the webhook or start polling (kept updates are taken over by
        `replay_pending`, at start and then periodically)."""
        if self.config.mode == "webhook":
            self._spawn(self._register_webhook(), "telegram-set-webhook")
        else:
            self._spawn(self.poll_forever(), "telegram-polling")

    async def stop(self) -> None:
        """Stop polling and intake; what is not answered yet stays in the inbox."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Telegram task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    # -- keeping (before the acknowledgement) --------------------------------------------

    def event_id(self, update_id: int) -> str:
        return f"{self.config.bot_id}:{update_id}"

    async def keep(self, update: dict[str, Any]) -> bool:
        """Mark and store an update (bot/intake.py). False for a duplicate; raises `NotKept`."""
        return await self.intake.keep(self.event_id(int(update["update_id"])), update)

    # -- webhook -------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        """POST from Telegram: checked, kept, acknowledged; answered in the background."""
        given = request.headers.get(SECRET_HEADER, "")
        if not same_secret(given, self.config.webhook_secret):
            self.service.metrics.inc("frames_rejected_total", reason="telegram_secret")
            log.warning("Telegram webhook call without the right secret token refused",
                        extra={"remote": request.remote})
            return web.json_response({"error": "unauthorized", "message": "missing or wrong secret token"},
                                     status=401)
        try:
            body: Any = parse_json(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid_json", "message": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("update_id"), int):
            return web.json_response({"error": "invalid_update", "message": "not a Telegram update"}, status=400)
        try:
            kept = await self.keep(body)
        except NotKept:
            return web.json_response({"error": "unavailable", "message": "could not keep the update; retry"},
                                     status=503)
        if kept:
            self._spawn(self.process(self.event_id(body["update_id"]), body), f"telegram-update:{body['update_id']}")
        return web.json_response({"ok": True})

    async def _register_webhook(self) -> None:
        await self._until_done("setWebhook", lambda: self.bot.set_webhook(
            url=self.config.webhook_url, secret_token=self.config.webhook_secret,
            allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False))
        log.info("Telegram webhook registered", extra={"url": self.config.webhook_url})

    async def _until_done(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Retry a start-up call with backoff until Telegram accepts it (never blocks the gateway)."""
        attempt = 0
        while True:
            try:
                await call()
                return
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, self.config.retry_backoff_seconds, MAX_BACKOFF_SECONDS)
                log.error(f"Telegram {what} failed; retrying",
                          extra={"error": str(exc) if isinstance(exc, TelegramAPIError) else repr(exc),
                                 "retry_in": round(delay, 2)})
                await asyncio.sleep(delay)

    # -- long polling --------------------------------------------------------------------

    async def poll_forever(self) -> None:
        """deleteWebhook, then getUpdates in a loop; the offset moves only past kept updates."""
        await self._until_done("deleteWebhook", lambda: self.bot.delete_webhook(drop_pending_updates=False))
        log.info("Telegram long polling started")
        offset: int | None = None
        failures = 0
        while not self._closing:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=self.config.poll_timeout_seconds, allowed_updates=ALLOWED_UPDATES,
                    request_timeout=self.config.poll_timeout_seconds + 10)
                failures = 0
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
                continue
            except Exception as exc:  # whatever happens, polling goes on (Telegram errors, bad answers)
                failures += 1
                delay = backoff(failures, self.config.retry_backoff_seconds, MAX_BACKOFF_SECONDS)
                level = logging.WARNING if isinstance(exc, (TelegramNetworkError, TelegramServerError)) \
                    else logging.ERROR
                log.log(level, "Telegram getUpdates failed; retrying",
                        extra={"error": str(exc) if isinstance(exc, TelegramAPIError) else repr(exc),
                               "retry_in": round(delay, 2)})
                await asyncio.sleep(delay)
                continue
            for update in updates:
                raw = update.model_dump(mode="json", exclude_none=True, by_alias=True)
                if await self._keep_patiently(raw):
                    self._spawn(self.process(self.event_id(update.update_id), raw),
                                f"telegram-update:{update.update_id}")
                offset = update.update_id + 1

    async def _keep_patiently(self, raw: dict[str, Any]) -> bool:
        """Polling cannot refuse an update: retry keeping it until it is kept (or a duplicate)."""
        attempt = 0
        while True:
            try:
                return await self.keep(raw)
            except NotKept:
                attempt += 1
                await asyncio.sleep(backoff(attempt, self.config.retry_backoff_seconds, MAX_BACKOFF_SECONDS))

    # -- processing (after the acknowledgement) ------------------------------------------

    async def replay_pending(self) -> None:
        """This bot's updates kept and not answered by any live gateway (an earlier run's, a
        dead gateway's): answered now, oldest first."""
        prefix = f"{self.config.bot_id}:"
        mine = await self.intake.take_over(lambda event_id: event_id.startswith(prefix))
        if mine:
            log.info("answering Telegram updates left unanswered", extra={"count": len(mine)})
        for event_id, raw in mine:
            self._spawn(self.process(event_id, raw, replayed=True), f"telegram-replay:{event_id}")

    async def process(self, event_id: str, raw: dict[str, Any], replayed: bool = False) -> None:
        """Convert and submit in the chat's order, settle a button press, wait for the answer."""
        try:
            update = Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as exc:
            log.error("Telegram update not understood; dropped", extra={"event_id": event_id, "error": str(exc)})
            await self._done(event_id)
            return
        chat = chat_of(update) or "-"
        async with self._intake_lanes.hold(chat):
            intake = await self._convert(update, event_id)
            if intake is not None and self._already_pressed(intake):
                intake = None
            turn = await self.intake.submit(self.service, intake.message, replayed) if intake is not None else None
        if update.callback_query is not None:
            await self.output.answer_callback(update.callback_query.id)
        if intake is not None and intake.keyboard_message_id is not None:
            await self.output.remove_keyboard(intake.message.conversation_id, intake.keyboard_message_id)
        if turn is not None:
            await asyncio.wait([turn.replies])
            if turn.replies.cancelled():
                return  # shutting down: stays in the inbox, answered after the restart
        await self._done(event_id)

    async def _convert(self, update: Update, event_id: str) -> Intake | None:
        """Convert, retrying a few times if the state store fails (the update stays kept if it never works)."""
        for attempt in range(1, CONVERT_ATTEMPTS + 1):
            try:
                return await self.converter.convert(update)
            except Exception as exc:
                if attempt == CONVERT_ATTEMPTS:
                    raise
                log.warning("cannot prepare a Telegram update; retrying",
                            extra={"event_id": event_id, "error": repr(exc)})
                await asyncio.sleep(backoff(attempt, self.config.retry_backoff_seconds, MAX_BACKOFF_SECONDS))
        return None

    def _already_pressed(self, intake: Intake) -> bool:
        """A second press on the same keyboard (before it disappeared) is not a new answer."""
        if intake.keyboard_message_id is None:
            return False
        key = (intake.message.conversation_id, intake.keyboard_message_id)
        if key in self._pressed:
            log.info("second press on a keyboard ignored", extra={"chat": key[0]})
            return True
        self._pressed[key] = None
        while len(self._pressed) > RECENT_PRESSES:
            del self._pressed[next(iter(self._pressed))]
        return False

    async def _done(self, event_id: str) -> None:
        await self.intake.done(event_id)
