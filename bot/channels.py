"""The two roles every channel adapter plays.

Input role: the adapter turns a platform event into an `InboundMessage` and calls
`ConversationService.submit`. Output role: an `OutputChannel`, where only `send_text` is
required; buttons, images and custom payloads fall back to text unless the adapter can
render them natively (the Rasa channel design).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Mapping, Sequence

from bot.messages import Button, OutboundReply

log = logging.getLogger("gateway.channels")


def buttons_as_text(text: str | None, buttons: Sequence[Button]) -> str:
    lines = [text] if text else []
    lines += [f"{i}. {b.title}" for i, b in enumerate(buttons, 1)]
    return "\n".join(lines)


class OutputChannel(ABC):
    """Sends replies to one channel's conversations. `conversation_id` is the channel's own id."""

    name: str = "base"

    @abstractmethod
    async def send_text(self, conversation_id: str, text: str) -> None:
        """Send plain text. The one method every channel must implement."""

    async def send_buttons(self, conversation_id: str, text: str | None, buttons: Sequence[Button]) -> None:
        await self.send_text(conversation_id, buttons_as_text(text, buttons))

    async def send_image(self, conversation_id: str, url: str) -> None:
        await self.send_text(conversation_id, url)

    async def send_custom(self, conversation_id: str, custom: Mapping[str, Any]) -> None:
        """Custom payloads are signals for the gateway (e.g. handoff) unless they carry text."""
        text = custom.get("text")
        if isinstance(text, str) and text:
            await self.send_text(conversation_id, text)

    async def send_typing(self, conversation_id: str, on: bool) -> None:
        """Show or hide a typing indicator, where the channel has one."""

    @staticmethod
    def signed(reply: OutboundReply) -> OutboundReply:
        """A person's reply (an agent in a handoff) with their name before the text, for a
        channel with no place of its own to show who wrote it."""
        if reply.author and reply.text:
            return replace(reply, text=f"{reply.author}: {reply.text}", author=None)
        return reply

    async def send_reply(self, conversation_id: str, reply: OutboundReply) -> None:
        """Renders any reply through the methods above; an adapter that shows the author
        natively (the web chat) overrides this."""
        reply = self.signed(reply)
        if reply.buttons:
            await self.send_buttons(conversation_id, reply.text, reply.buttons)
        elif reply.text is not None:
            await self.send_text(conversation_id, reply.text)
        if reply.image is not None:
            await self.send_image(conversation_id, reply.image)
        if reply.custom is not None:
            await self.send_custom(conversation_id, reply.custom)
