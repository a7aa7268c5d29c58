"""The Telegram output role: replies to shoppers through the real aiogram `Bot`.

- Each chat has one FIFO send lane (`KeyedLocks`): a reply is sent only after the one
  before it, so a 429 `retry_after` pauses that chat (sleep, then resend the same message)
  without reordering; other chats and channels keep going.
- 403 (the shopper blocked the bot): logged once, the chat is marked blocked, later replies
  to it are dropped with a log line and not retried.
- 5xx and network errors: a bounded number of retries with exponential backoff, then the
  error goes to the conversation service, which logs and counts the failed delivery.
- Text is split at Telegram's 4096-character limit, buttons become an inline keyboard
  (payloads longer than `callback_data`'s 64 bytes go through a short key), images are
  sent with sendPhoto, typing is sendChatAction refreshed while Rasa works. Custom payloads
  are signals (handoff): only a `text` inside one is shown, never the JSON.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageReplyMarkup,
    SendChatAction,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.channels import OutputChannel, buttons_as_text
from bot.messages import Button
from bot.metrics import Metrics
from bot.ordering import KeyedLocks, backoff
from bot.textsplit import measure, utf16
from bot.textsplit import split_text as split_text_in
from channels.telegram.state import TelegramState, fits_callback_data, payload_key

log = logging.getLogger("gateway.telegram")

T = TypeVar("T")

CHANNEL = "telegram"
TEXT_LIMIT = 4096  # Telegram counts UTF-16 code units
BUTTONS_ONLY_TEXT = "👇"  # sendMessage needs text; a reply with only buttons gets this
TYPING_REFRESH_SECONDS = 4.5  # Telegram shows "typing" for 5 s per sendChatAction
TYPING_MAX_SECONDS = 120.0
MAX_RATE_LIMIT_WAITS = 20
MAX_BACKOFF_SECONDS = 30.0


class TelegramChannelClosed(RuntimeError):
    """The gateway is shutting down; nothing more is sent to Telegram."""


def utf16_length(text: str) -> int:
    """Length as Telegram measures it (UTF-16 code units)."""
    return measure(text, utf16)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut `text` into messages Telegram accepts (`bot/textsplit.py`, in UTF-16 units)."""
    return split_text_in(text, limit, utf16)


def chat_ref(conversation_id: str) -> int | str:
    """Telegram chat ids are integers; `@channel` names stay strings."""
    try:
        return int(conversation_id)
    except ValueError:
        return conversation_id



class TelegramOutput(OutputChannel):
    """Sends replies to Telegram chats (`conversation_id` is the chat id)."""

    name = CHANNEL

    def __init__(self, bot: Bot, state: TelegramState, metrics: Metrics, *, retries: int = 3,
                 backoff_seconds: float = 1.0) -> None:
        self.bot = bot
        self.state = state
        self.metrics = metrics
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._lanes = KeyedLocks()
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # -- OutputChannel -------------------------------------------------------------------

    async def send_text(self, conversation_id: str, text: str) -> None:
        for piece in split_text(text):
            await self.call(conversation_id, SendMessage(chat_id=chat_ref(conversation_id), text=piece))

    async def send_buttons(self, conversation_id: str, text: str | None, buttons: Sequence[Button]) -> None:
        """The text (split if long) with the buttons as an inline keyboard under the last part."""
        try:
            keyboard = await self.keyboard(buttons)
        except TelegramChannelClosed:
            raise
        except Exception as exc:  # the state store is down: the options as text beat no reply
            log.warning("cannot keep button payloads; sending the options as text",
                        extra={"chat": conversation_id, "error": repr(exc)})
            await self.send_text(conversation_id, buttons_as_text(text, buttons))
            return
        pieces = split_text(text or "") or [BUTTONS_ONLY_TEXT]
        for piece in pieces[:-1]:
            await self.call(conversation_id, SendMessage(chat_id=chat_ref(conversation_id), text=piece))
        await self.call(conversation_id, SendMessage(chat_id=chat_ref(conversation_id), text=pieces[-1],
                                                     reply_markup=keyboard))

    async def send_image(self, conversation_id: str, url: str) -> None:
        """sendPhoto with the URL; when Telegram cannot fetch it, the link as text."""
        try:
            await self.call(conversation_id, SendPhoto(chat_id=chat_ref(conversation_id), photo=url))
        except TelegramBadRequest as exc:
            log.warning("Telegram could not send the image; sending its link instead",
                        extra={"chat": conversation_id, "error": exc.message})
            await self.send_text(conversation_id, url)

    async def send_typing(self, conversation_id: str, on: bool) -> None:
        """Start (refreshing every few seconds) or stop the "typing…" indicator."""
        task = self._typing.pop(conversation_id, None)
        if task is not None:
            task.cancel()
        if on and not self._closed and not await self._is_blocked(conversation_id):
            task = asyncio.create_task(self._keep_typing(conversation_id), name=f"telegram-typing:{conversation_id}")
            self._typing[conversation_id] = task
            task.add_done_callback(lambda done: self._forget_typing(conversation_id, done))

    def _forget_typing(self, conversation_id: str, task: asyncio.Task[None]) -> None:
        if self._typing.get(conversation_id) is task:
            del self._typing[conversation_id]

    # -- what the input side needs -------------------------------------------------------

    async def keyboard(self, buttons: Sequence[Button]) -> InlineKeyboardMarkup:
        """One button per row; payloads too long for callback_data are stored under a short key."""
        self._check_open()
        rows: list[list[InlineKeyboardButton]] = []
        for button in buttons:
            data = button.payload
            if not fits_callback_data(data):
                data = payload_key(button.payload)
                await self.state.keep_payload(data, button.payload)
            rows.append([InlineKeyboardButton(text=button.title, callback_data=data)])
        return InlineKeyboardMarkup(inline_keyboard=rows)

    async def answer_callback(self, callback_query_id: str) -> None:
        """Stop the spinner on a pressed button (best effort: an old query cannot be answered)."""
        if self._closed:
            return
        try:
            await self.bot(AnswerCallbackQuery(callback_query_id=callback_query_id))
        except TelegramAPIError as exc:
            log.info("callback query not answered", extra={"error": str(exc)})

    async def remove_keyboard(self, conversation_id: str, message_id: int) -> None:
        """Take the buttons off a message once one was pressed (in the chat's send order)."""
        try:
            await self.call(conversation_id, EditMessageReplyMarkup(chat_id=chat_ref(conversation_id),
                                                                    message_id=message_id))
        except TelegramAPIError as exc:  # e.g. "message is not modified" on a replay
            log.info("keyboard not removed", extra={"chat": conversation_id, "error": str(exc)})

    # -- the send lane -------------------------------------------------------------------

    async def call(self, conversation_id: str, method: TelegramMethod[T]) -> T | None:
        """Run `method` in the chat's lane. None when the chat blocked the bot (nothing sent)."""
        self._check_open()
        async with self._lanes.hold(conversation_id):
            self._check_open()
            if await self._is_blocked(conversation_id):
                self.metrics.inc("telegram_dropped_total", reason="blocked")
                log.info("reply dropped: the shopper blocked the bot",
                         extra={"chat": conversation_id, "method": method.__api_method__})
                return None
            return await self._with_retries(conversation_id, method)

    async def _with_retries(self, conversation_id: str, method: TelegramMethod[T]) -> T | None:
        rate_waits = failures = 0
        while True:
            self._check_open()
            try:
                return await self.bot(method)
            except TelegramRetryAfter as exc:
                rate_waits += 1
                self.metrics.inc("telegram_rate_limited_total")
                if rate_waits > MAX_RATE_LIMIT_WAITS:
                    log.error("Telegram keeps rate limiting this chat; reply not delivered",
                              extra={"chat": conversation_id, "method": method.__api_method__})
                    raise
                log.warning("Telegram rate limit: this chat's replies wait",
                            extra={"chat": conversation_id, "retry_after": exc.retry_after,
                                   "method": method.__api_method__})
                await asyncio.sleep(exc.retry_after)
            except TelegramForbiddenError as exc:
                await self._blocked(conversation_id, exc)
                return None
            except TelegramEntityTooLarge:
                raise
            except (TelegramServerError, TelegramNetworkError) as exc:
                failures += 1
                if failures > self.retries:
                    log.error("Telegram unreachable; reply not delivered",
                              extra={"chat": conversation_id, "method": method.__api_method__,
                                     "attempts": failures, "error": str(exc)})
                    raise
                delay = backoff(failures, self.backoff_seconds, MAX_BACKOFF_SECONDS)
                log.warning("Telegram error; retrying the send",
                            extra={"chat": conversation_id, "method": method.__api_method__,
                                   "attempt": failures, "retry_in": round(delay, 2), "error": str(exc)})
                await asyncio.sleep(delay)

    async def _is_blocked(self, conversation_id: str) -> bool:
        """Whether the chat blocked the bot; when the store cannot say, try sending."""
        try:
            return await self.state.is_blocked(conversation_id)
        except Exception as exc:
            log.warning("cannot read the blocked-chats store; sending anyway", extra={"error": repr(exc)})
            return False

    def _check_open(self) -> None:
        if self._closed:
            raise TelegramChannelClosed("the Telegram channel is closed (the gateway is stopping)")

    async def _blocked(self, conversation_id: str, exc: TelegramForbiddenError) -> None:
        try:
            newly = await self.state.mark_blocked(conversation_id)
        except Exception as store_exc:
            log.error("the shopper blocked the bot (403), but the mark could not be stored",
                      extra={"chat": conversation_id, "error": repr(store_exc)})
            return
        if newly:
            self.metrics.inc("telegram_blocked_chats_total")
            log.warning("the shopper blocked the bot (403); replies to this chat are dropped until they write again",
                        extra={"chat": conversation_id, "error": exc.message})

    async def _keep_typing(self, conversation_id: str) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + TYPING_MAX_SECONDS
        while loop.time() < until and not self._closed:
            try:
                await self.bot(SendChatAction(chat_id=chat_ref(conversation_id), action="typing"))
            except TelegramForbiddenError as exc:
                await self._blocked(conversation_id, exc)
                return
            except TelegramAPIError as exc:  # best effort: a missing indicator is no loss
                log.debug("typing action failed", extra={"chat": conversation_id, "error": str(exc)})
                return
            await asyncio.sleep(TYPING_REFRESH_SECONDS)

    async def close(self) -> None:
        """Refuse further sends and stop typing indicators (the bot session is closed after)."""
        self._closed = True
        tasks = list(self._typing.values())
        self._typing.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
