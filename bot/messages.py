"""The normalized message model every channel converts to and from.

Inbound: one `InboundMessage` per thing a shopper sent, whatever the channel.
Outbound: one `OutboundReply` per bot message, parsed from Rasa's reply dicts once, here,
at the edge (`parse_rasa_replies`). Nothing past the adapters sees a platform's raw format.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


class MessageFormatError(ValueError):
    """A reply from Rasa (or a frame from a client) does not have the documented shape."""


def language_of(locale: str | None) -> str | None:
    """Map a channel locale (`zh-CN`, `zh_Hans`, `en-GB`, ...) to a language the bot speaks."""
    if not locale:
        return None
    head = locale.replace("_", "-").split("-", 1)[0].lower()
    if head == "zh":
        return "zh"
    if head == "en":
        return "en"
    return None


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str | None:
    """`zh` when the text has Chinese characters, `en` when it has Latin letters, else None."""
    if _CJK.search(text):
        return "zh"
    if re.search(r"[A-Za-z]", text):
        return "en"
    return None


@dataclass(frozen=True)
class Attachment:
    """A file the shopper sent (photo of a damaged parcel, receipt, ...)."""

    kind: str  # "image" | "file" | "audio" | "video"
    url: str
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class InboundMessage:
    """One message from a shopper, in the gateway's own terms."""

    channel: str
    conversation_id: str
    sender_id: str
    text: str
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    payload: str | None = None
    attachments: tuple[Attachment, ...] = ()
    locale: str | None = None
    timestamp: float = field(default_factory=time.time)
    context: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def conversation_key(self) -> str:
        """Unique across channels; also the sender id Rasa keeps its tracker under."""
        return f"{self.channel}:{self.conversation_id}"

    @property
    def language(self) -> str:
        """Chinese text wins (shoppers switch languages); else the channel locale; else English."""
        from_text = detect_language(self.text)
        if from_text == "zh":
            return "zh"
        return language_of(self.locale) or from_text or "en"

    def rasa_request(self) -> dict[str, Any]:
        """The body for Rasa's REST webhook (`RestInput` passes `metadata` to the tracker)."""
        metadata: dict[str, Any] = {
            "channel": self.channel,
            "message_id": self.message_id,
            "sender": self.sender_id,
        }
        if self.locale:
            metadata["locale"] = self.locale
        metadata["language"] = self.language
        if self.attachments:
            metadata["attachments"] = [a.to_dict() for a in self.attachments]
        if self.context:
            metadata["context"] = dict(self.context)
        return {
            "sender": self.conversation_key,
            "message": self.payload or self.text,
            "input_channel": self.channel,
            "metadata": metadata,
        }


@dataclass(frozen=True)
class Button:
    title: str
    payload: str

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class OutboundReply:
    """One bot message. Channels render what they can; the rest falls back to text."""

    text: str | None = None
    buttons: tuple[Button, ...] = ()
    image: str | None = None
    custom: Mapping[str, Any] | None = None
    holding: bool = False
    author: str | None = None  # display name of the agent who wrote it; None for the bot

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "buttons": [b.to_dict() for b in self.buttons],
            "image": self.image,
            "custom": dict(self.custom) if self.custom is not None else None,
            "holding": self.holding,
            "author": self.author,
        }

    def to_rasa_dict(self, recipient_id: str) -> dict[str, Any]:
        """The shape Rasa's REST channel returns, for clients written against Rasa."""
        out: dict[str, Any] = {"recipient_id": recipient_id}
        if self.text is not None:
            out["text"] = self.text
        if self.buttons:
            out["buttons"] = [b.to_dict() for b in self.buttons]
        if self.image is not None:
            out["image"] = self.image
        if self.custom is not None:
            out["custom"] = dict(self.custom)
        return out

    @property
    def handoff_request(self) -> Mapping[str, Any] | None:
        """The `{"handoff": {...}}` signal a flow puts in a custom payload, if any."""
        if self.custom and isinstance(self.custom.get("handoff"), Mapping):
            return self.custom["handoff"]  # type: ignore[no-any-return]
        return None


def _parse_button(raw: Any) -> Button:
    if not isinstance(raw, Mapping):
        raise MessageFormatError(f"button must be an object, got {type(raw).__name__}")
    title, payload = raw.get("title"), raw.get("payload")
    if not isinstance(title, str) or not title:
        raise MessageFormatError("button without a title")
    if payload is None:
        payload = title
    if not isinstance(payload, str):
        raise MessageFormatError("button payload must be a string")
    return Button(title=title, payload=payload)


def parse_rasa_reply(raw: Any) -> OutboundReply:
    """Parse one reply dict as Rasa's `CollectingOutputChannel` produces it."""
    if not isinstance(raw, Mapping):
        raise MessageFormatError(f"reply must be an object, got {type(raw).__name__}")
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise MessageFormatError("reply text must be a string")
    buttons = raw.get("buttons") or raw.get("quick_replies") or ()
    if not isinstance(buttons, Sequence) or isinstance(buttons, str):
        raise MessageFormatError("reply buttons must be a list")
    image = raw.get("image")
    if image is not None and not isinstance(image, str):
        raise MessageFormatError("reply image must be a URL string")
    custom = raw.get("custom")
    if custom is not None and not isinstance(custom, Mapping):
        custom = {"value": custom}
    attachment = raw.get("attachment")
    if attachment is not None and custom is None:
        custom = {"attachment": attachment}
    reply = OutboundReply(
        text=text,
        buttons=tuple(_parse_button(b) for b in buttons),
        image=image,
        custom=custom,
    )
    if reply.text is None and not reply.buttons and reply.image is None and reply.custom is None:
        raise MessageFormatError("reply has no text, buttons, image or custom payload")
    return reply


def parse_rasa_replies(raw: Any) -> list[OutboundReply]:
    if not isinstance(raw, list):
        raise MessageFormatError(f"Rasa answered {type(raw).__name__}, expected a list of replies")
    return [parse_rasa_reply(item) for item in raw]
