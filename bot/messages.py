"""The normalized message model every channel converts to and from.

Inbound: one `InboundMessage` per thing a shopper sent, whatever the channel.
Outbound: one `OutboundReply` per bot message, parsed from Rasa's reply dicts once, here,
at the edge (`parse_rasa_replies`). Nothing past the adapters sees a platform's raw format.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence  # not typing's: isinstance on these is several times faster
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from bot.signals import HANDOFF, HandoffRequest

# What Rasa is sent for a message that is only files (a photo, an album, a PDF): an intent
# of its own, so a photo is never read as words ("goodbye", "shoe care").
ATTACHMENT_PAYLOAD = "/share_attachment"


# The characters a channel's own conversation id may use (e-mail addresses and phone numbers
# as REST senders included), so an id can never become a path, a query or a key prefix.
CHANNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+:\-]{0,127}$")


def safe_id(value: object) -> TypeGuard[str]:
    """Whether `value` is usable as a channel's conversation or sender id."""
    return isinstance(value, str) and CHANNEL_ID.match(value) is not None and ".." not in value


class MessageFormatError(ValueError):
    """A reply from Rasa (or a frame from a client) does not have the documented shape."""


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
class ConversationRef:
    """One conversation across channels: the channel and that channel's own conversation id.

    `key` is its one string form ("telegram:8123456789"): the sender id Rasa keeps its
    tracker under, the key of transcripts, handoffs and the console. `parse` reads a key
    back. Nothing else builds or splits such strings."""

    channel: str
    conversation_id: str

    @property
    def key(self) -> str:
        return self.key_of(self.channel, self.conversation_id)

    @staticmethod
    def key_of(channel: str, conversation_id: str) -> str:
        """The key of the conversation `ConversationRef(channel, conversation_id)`."""
        return f"{channel}:{conversation_id}"

    @classmethod
    def parse(cls, key: str) -> "ConversationRef | None":
        channel, sep, conversation_id = key.partition(":")
        return cls(channel, conversation_id) if sep and channel and conversation_id else None

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class InboundMessage:
    """One message from a shopper, in the gateway's own terms.

    `text` is what the shopper typed (empty for a message that is only attachments);
    `payload` is a pressed button's payload. `locale` is what the client declares; the
    conversation's `language` is decided by the conversation service from the locale and
    the conversation so far (channels leave it None; it stays None while nothing has said
    it, e.g. a bare "hello" from a client without a locale). Messages sharing a `group_id` (a
    Telegram album) were sent together and are answered as one turn.
    """

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
    language: str | None = None
    group_id: str | None = None
    # The shopper's own name as the channel gives it (Telegram's first name), for the agents'
    # canned greetings; never sent to Rasa.
    sender_name: str | None = None

    @property
    def ref(self) -> ConversationRef:
        return ConversationRef(self.channel, self.conversation_id)

    @property
    def conversation_key(self) -> str:
        """Unique across channels; also the sender id Rasa keeps its tracker under."""
        return ConversationRef.key_of(self.channel, self.conversation_id)  # without a ConversationRef each time

    def in_language(self, language: str | None) -> "InboundMessage":
        """This message with its conversation's language set: `dataclasses.replace(self,
        language=language)`, without running `__init__` again (once for every message)."""
        copy = object.__new__(InboundMessage)
        copy.__dict__.update(self.__dict__)
        copy.__dict__["language"] = language
        return copy

    @property
    def summary(self) -> str:
        """What to show of the message in a transcript: the text, else the files' names."""
        if self.text.strip():
            return self.text
        return ", ".join("\U0001f4ce " + (a.name or a.kind) for a in self.attachments)

    @property
    def rasa_text(self) -> str:
        """What Rasa reads: the button payload, the typed text, or the attachment intent."""
        if self.payload:
            return self.payload
        if not self.text.strip() and self.attachments:
            return ATTACHMENT_PAYLOAD
        return self.text

    def rasa_request(self) -> dict[str, Any]:
        """The body for Rasa's REST webhook (`RestInput` passes `metadata` to the tracker)."""
        metadata: dict[str, Any] = {
            "channel": self.channel,
            "message_id": self.message_id,
            "sender": self.sender_id,
        }
        if self.locale:
            metadata["locale"] = self.locale
        if self.language:
            metadata["language"] = self.language
        if self.payload and self.text and self.text != self.payload:
            metadata["title"] = self.text  # the button's title, as the shopper saw it
        if self.attachments:
            metadata["attachments"] = [a.to_dict() for a in self.attachments]
        if self.context:
            metadata["context"] = dict(self.context)
        return {
            "sender": self.conversation_key,
            "message": self.rasa_text,
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
    # A flow's request for a person (`{"handoff": {...}}` in Rasa's custom payload), taken
    # out of `custom` at the edge: the gateway acts on it, no channel ever shows it.
    handoff_request: HandoffRequest | None = field(default=None, compare=False)

    @property
    def visible(self) -> bool:
        """Whether there is anything for the shopper to see."""
        return self.text is not None or self.image is not None or bool(self.buttons) or self.custom is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "buttons": [b.to_dict() for b in self.buttons],
            "image": self.image,
            "custom": dict(self.custom) if self.custom is not None else None,
            "holding": self.holding,
            "author": self.author,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OutboundReply":
        """The reply `to_dict` gave (kept in an outbox, read back on any gateway)."""
        custom = data.get("custom")
        return cls(text=data.get("text"), buttons=tuple(Button(title=str(b["title"]), payload=str(b["payload"]))
                                                       for b in data.get("buttons") or ()),
                   image=data.get("image"), custom=dict(custom) if isinstance(custom, Mapping) else None,
                   holding=bool(data.get("holding")), author=data.get("author"))

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
    handoff: HandoffRequest | None = None
    if custom is not None and isinstance(custom.get(HANDOFF), Mapping):
        handoff = HandoffRequest.from_payload(custom[HANDOFF])
        custom = {k: v for k, v in custom.items() if k != HANDOFF} or None
    reply = OutboundReply(
        text=text,
        buttons=tuple(_parse_button(b) for b in buttons),
        image=image,
        custom=custom,
        handoff_request=handoff,
    )
    if not reply.visible and reply.handoff_request is None:
        raise MessageFormatError("reply has no text, buttons, image or custom payload")
    return reply


def parse_rasa_replies(raw: Any) -> list[OutboundReply]:
    if not isinstance(raw, list):
        raise MessageFormatError(f"Rasa answered {type(raw).__name__}, expected a list of replies")
    return [parse_rasa_reply(item) for item in raw]
