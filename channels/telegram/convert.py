"""Telegram updates (as the Bot API documents them) into the gateway's `InboundMessage`.

- conversation id = chat id, sender id = the user's id, locale = `from.language_code`;
- message id derived from `update_id` (a redelivery is the same message, even after a restart);
- a button press (callback query) becomes text = button title, payload = the button's payload;
- photos (largest size) and documents become attachments whose URL is the gateway's
  `/telegram/files/<file_id>`; without a caption the text is empty (the conversation
  service tells Rasa it is files only); an album's photos share a `group_id`
  (`media_group_id`) and are answered as one turn;
- `/start` (the first thing every Telegram shopper sends) becomes TELEGRAM_START_PAYLOAD.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiogram.types import CallbackQuery, Message, Update

from bot.messages import Attachment, InboundMessage
from channels.telegram.config import FILES_PATH, TelegramConfig
from channels.telegram.output import CHANNEL
from channels.telegram.state import PAYLOAD_KEY_PREFIX, TelegramState

log = logging.getLogger("gateway.telegram")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


@dataclass(frozen=True)
class Intake:
    """What one update asks of the gateway: a message to answer (and a keyboard to take away)."""

    message: InboundMessage
    keyboard_message_id: int | None = None  # the message whose button was pressed


def message_id_for(bot_id: str, update_id: int) -> str:
    """The InboundMessage id of an update: stable across redeliveries and restarts."""
    return f"tg:{bot_id}:{update_id}"


def chat_of(update: Update) -> str | None:
    """The chat an update belongs to (its conversation id), if any."""
    if update.message is not None:
        return str(update.message.chat.id)
    query = update.callback_query
    if query is not None:
        return str(query.message.chat.id) if query.message is not None else str(query.from_user.id)
    if update.my_chat_member is not None:
        return str(update.my_chat_member.chat.id)
    return None


class UpdateConverter:
    """Turns updates into `Intake`s, remembering file ids and resolving long button payloads."""

    def __init__(self, config: TelegramConfig, state: TelegramState, max_text_length: int = 4000) -> None:
        self.config = config
        self.state = state
        self.max_text_length = max_text_length  # as every channel cuts (Telegram allows 4096, captions 1024)

    def file_url(self, file_id: str) -> str:
        return f"{self.config.files_base_url}{FILES_PATH}/{quote(file_id, safe='')}"

    async def convert(self, update: Update) -> Intake | None:
        """The intake for an update, or None when there is nothing to answer."""
        if update.message is not None:
            return await self._message(update.update_id, update.message)
        if update.callback_query is not None:
            return await self._callback(update.update_id, update.callback_query)
        if update.my_chat_member is not None:
            await self._membership(str(update.my_chat_member.chat.id), update.my_chat_member.new_chat_member.status)
        return None

    async def _membership(self, chat_id: str, status: str) -> None:
        """The shopper blocked (`kicked`) or unblocked (`member`) the bot."""
        if status == "kicked":
            if await self.state.mark_blocked(chat_id):
                log.warning("the shopper blocked the bot; replies to this chat are dropped", extra={"chat": chat_id})
        elif status == "member" and await self.state.clear_blocked(chat_id):
            log.info("the shopper unblocked the bot", extra={"chat": chat_id})

    async def _message(self, update_id: int, message: Message) -> Intake | None:
        user = message.from_user
        if user is None or user.is_bot:
            return None
        chat_id = str(message.chat.id)
        if await self.state.clear_blocked(chat_id):
            log.info("the shopper wrote again after blocking the bot", extra={"chat": chat_id})
        attachments = await self._attachments(chat_id, message)
        text = message.text or message.caption or ("" if attachments else _placeholder(message))
        if text is not None:
            text = text[: self.max_text_length]
        if text is None:
            log.debug("Telegram message without text or files ignored", extra={"chat": chat_id})
            return None
        payload = None
        context: dict[str, str] = {"telegram_message_id": str(message.message_id)}
        command, _, argument = text.partition(" ")
        if command.split("@", 1)[0] == "/start" and self.config.start_payload:
            payload = self.config.start_payload
            if argument.strip():
                context["start_parameter"] = argument.strip()[:64]
        return Intake(message=InboundMessage(
            channel=CHANNEL, conversation_id=chat_id, sender_id=str(user.id), text=text, payload=payload,
            message_id=message_id_for(self.config.bot_id, update_id), attachments=attachments,
            locale=user.language_code, timestamp=message.date.timestamp(), context=context,
            sender_name=(user.first_name or "")[:64] or None,
            group_id=f"album:{message.media_group_id}" if message.media_group_id else None,
        ))

    async def _attachments(self, chat_id: str, message: Message) -> tuple[Attachment, ...]:
        found: list[tuple[str, str, str | None, str | None, int | None]] = []
        if message.photo:
            largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
            found.append(("image", largest.file_id, None, "image/jpeg", largest.file_size))
        if message.document is not None:
            doc = message.document
            kind = "image" if (doc.mime_type or "").startswith("image/") else "file"
            found.append((kind, doc.file_id, doc.file_name, doc.mime_type, doc.file_size))
        if message.video is not None:
            v = message.video
            found.append(("video", v.file_id, v.file_name, v.mime_type, v.file_size))
        for audio in (message.voice, message.audio):
            if audio is not None:
                found.append(("audio", audio.file_id, getattr(audio, "file_name", None), audio.mime_type,
                              audio.file_size))
        attachments: list[Attachment] = []
        for kind, file_id, name, mime, size in found:
            info: dict[str, Any] = {"chat": chat_id, "kind": kind, "name": name, "mime_type": mime}
            await self.state.remember_file(file_id, info)
            attachments.append(Attachment(kind=kind, url=self.file_url(file_id), name=name, mime_type=mime,
                                          size=size))
        return tuple(attachments)

    async def _callback(self, update_id: int, query: CallbackQuery) -> Intake | None:
        chat_id = str(query.message.chat.id) if query.message is not None else str(query.from_user.id)
        keyboard_message = query.message.message_id if query.message is not None else None
        data = query.data
        title = _button_title(query, data)
        if data is None:  # a game button: nothing for the assistant
            return None
        payload: str | None = data
        if data.startswith(PAYLOAD_KEY_PREFIX):
            payload = await self.state.payload(data)
            if payload is None:
                log.warning("button payload no longer known; sending its title instead", extra={"chat": chat_id})
        if payload is None and title is None:
            return None
        return Intake(message=_pressed(self.config.bot_id, update_id, chat_id, query, title or payload or "",
                                       payload),
                      keyboard_message_id=keyboard_message)


def _pressed(bot_id: str, update_id: int, chat_id: str, query: CallbackQuery, text: str,
             payload: str | None) -> InboundMessage:
    return InboundMessage(
        channel=CHANNEL, conversation_id=chat_id, sender_id=str(query.from_user.id), text=text, payload=payload,
        message_id=message_id_for(bot_id, update_id), locale=query.from_user.language_code,
        sender_name=(query.from_user.first_name or "")[:64] or None,
    )


def _button_title(query: CallbackQuery, data: str | None) -> str | None:
    """The label of the pressed button, read from the keyboard the press came from."""
    if not isinstance(query.message, Message) or query.message.reply_markup is None or data is None:
        return None
    for row in query.message.reply_markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def _placeholder(message: Message) -> str | None:
    """Something for Rasa to read when the shopper sent neither text nor files."""
    if message.sticker is not None:
        return message.sticker.emoji or "[sticker]"
    if message.location is not None:
        return "[location]"
    if message.contact is not None:
        return "[contact]"
    return None
