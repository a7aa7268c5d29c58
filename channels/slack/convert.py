"""Slack payloads in, `InboundMessage`s out: which deliveries start or continue a conversation.

- A direct message with the app (channel_type `im`): conversation id = the DM's channel id.
- A mention of the app in a channel (`app_mention`): conversation id = `<channel>:<thread ts>`
  (the mention's own ts when it starts a thread); replies go into that thread.
- A reply in such a thread without a mention (`message` events, when the shop subscribed
  to message.channels) continues the conversation if the gateway knows the thread.
- A click on one of the gateway's buttons (`block_actions`): the button's value is the
  payload, its text the message text.
- Ignored: anything from a bot (the app's own messages included), edits, deletions and
  other message subtypes.

Everything here is a pure function of the payload, so it is tested without Slack.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bot.messages import Attachment, InboundMessage

CHANNEL = "slack"
BUTTON_ACTION_PREFIX = "gateway_button_"
BARE_MENTION_TEXT = "hello"  # a mention with no words greets the assistant
HANDLED_SUBTYPES = (None, "file_share", "thread_broadcast")

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")


@dataclass(frozen=True)
class SlackIdentity:
    """Who the app is in the workspace (from auth.test), to recognise its own messages and mentions."""

    user_id: str | None = None
    bot_id: str | None = None
    team_id: str | None = None


@dataclass(frozen=True)
class SlackTarget:
    """Where a conversation's replies go: a channel, and a thread in it for channel conversations."""

    channel: str
    thread_ts: str | None = None

    @property
    def conversation_id(self) -> str:
        return self.channel if self.thread_ts is None else f"{self.channel}:{self.thread_ts}"

    @classmethod
    def parse(cls, conversation_id: str) -> "SlackTarget":
        channel, _, thread_ts = conversation_id.partition(":")
        return cls(channel=channel, thread_ts=thread_ts or None)


@dataclass(frozen=True)
class SlackFile:
    """A file a shopper shared, as far as the gateway needs it to relay the download."""

    file_id: str
    url_private: str | None
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.file_id, "url_private": self.url_private, "name": self.name,
                "mimetype": self.mime_type, "size": self.size}

    @classmethod
    def from_payload(cls, raw: Mapping[str, Any]) -> "SlackFile | None":
        """A file object from an event (`files[]`) or from files.info; None when it has no usable id."""
        file_id = raw.get("id")
        if not isinstance(file_id, str) or not _SLACK_ID.match(file_id):
            return None
        url = raw.get("url_private") or raw.get("url_private_download")
        size = raw.get("size")
        return cls(file_id=file_id, url_private=url if isinstance(url, str) else None,
                   name=_str(raw.get("name")) or _str(raw.get("title")), mime_type=_str(raw.get("mimetype")),
                   size=size if isinstance(size, int) else None)


@dataclass(frozen=True)
class Delivery:
    """A Slack delivery the gateway will answer: its durable key and the message it carries."""

    key: str  # dedupe + inbox key: "event:<event_id>" or "click:<channel>:<message ts>"
    message: InboundMessage
    files: tuple[SlackFile, ...] = ()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def attachment_kind(mime_type: str | None) -> str:
    """The gateway's attachment kind for a MIME type."""
    head = (mime_type or "").split("/", 1)[0]
    return head if head in ("image", "audio", "video") else "file"


def plain_text(text: str, bot_user_id: str | None, strip_leading_mention: bool = False) -> str:
    """Slack's markup turned into what a shopper typed: the app's mention removed, `<...>` references
    spelled out, `&amp; &lt; &gt;` unescaped."""
    def mention(match: re.Match[str]) -> str:
        return "" if bot_user_id and match.group(1) == bot_user_id else f"@{match.group(1)}"

    if strip_leading_mention:
        text = re.sub(r"^\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>", "", text)
    text = _MENTION.sub(mention, text)
    text = _CHANNEL_REF.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: m.group(2) or f"@{m.group(1)}", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), text)
    return html.unescape(re.sub(r"[ \t]{2,}", " ", text)).strip()


def _is_from_a_bot(event: Mapping[str, Any], identity: SlackIdentity) -> bool:
    return bool(event.get("bot_id") or event.get("bot_profile")
                or (identity.user_id and event.get("user") == identity.user_id))


def _files(event: Mapping[str, Any]) -> tuple[SlackFile, ...]:
    raw = event.get("files")
    if not isinstance(raw, list):
        return ()
    return tuple(f for f in (SlackFile.from_payload(r) for r in raw if isinstance(r, Mapping)) if f is not None)


def _timestamp(ts: Any) -> float | None:
    try:
        return float(ts)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Converter:
    """Turns Slack payloads into deliveries, given who the app is and which threads it is in.

    `file_url` builds the gateway URL under which a shared file can be fetched;
    `known_thread` says whether a channel thread is one of the gateway's conversations;
    `max_text_length` cuts overlong texts (Slack allows 40,000 characters).
    """

    identity: Callable[[], SlackIdentity]
    file_url: Callable[[str], str]
    known_thread: Callable[[str], bool]
    max_text_length: int = 4000
    locale: str | None = None  # the workspace's language (SLACK_LOCALE): Slack events carry none

    def delivery(self, body: Mapping[str, Any]) -> Delivery | None:
        """The delivery in a Slack request body, or None when the gateway ignores it."""
        kind = body.get("type")
        if kind == "event_callback" and isinstance(body.get("event"), Mapping):
            return self._event(body)
        if kind == "block_actions":
            return self._click(body)
        return None

    # -- events ---------------------------------------------------------------------------

    def _event(self, body: Mapping[str, Any]) -> Delivery | None:
        event: Mapping[str, Any] = body["event"]
        event_id, channel, user = body.get("event_id"), event.get("channel"), event.get("user")
        if (not isinstance(event_id, str) or not event_id or _is_from_a_bot(event, self.identity())
                or event.get("subtype") not in HANDLED_SUBTYPES):
            return None
        if not isinstance(channel, str) or not _SLACK_ID.match(channel) or not isinstance(user, str):
            return None
        if event.get("type") == "app_mention":
            target = self._mention_target(event, channel)
        elif event.get("type") == "message":
            target = self._message_target(event, channel)
        else:
            target = None
        if target is None:
            return None
        return self._build(body, event, event_id, target, user, mention=event.get("type") == "app_mention")

    @staticmethod
    def _mention_target(event: Mapping[str, Any], channel: str) -> SlackTarget | None:
        """A mention starts (or continues) the thread it is in."""
        if event.get("channel_type") == "im" or channel.startswith("D"):
            return None  # a DM arrives as a `message` event too; that one is answered
        return SlackTarget(channel, _str(event.get("thread_ts")) or _str(event.get("ts")))

    def _message_target(self, event: Mapping[str, Any], channel: str) -> SlackTarget | None:
        """A DM is its own conversation; in channels only replies in the gateway's threads count."""
        if event.get("channel_type") == "im":
            return SlackTarget(channel)
        thread_ts = _str(event.get("thread_ts"))
        if thread_ts is None or not self.known_thread(SlackTarget(channel, thread_ts).conversation_id):
            return None
        user_id = self.identity().user_id
        if user_id and f"<@{user_id}" in (_str(event.get("text")) or ""):
            return None  # the app_mention event for the same message is answered instead
        return SlackTarget(channel, thread_ts)

    def _build(self, body: Mapping[str, Any], event: Mapping[str, Any], event_id: str, target: SlackTarget,
               user: str, *, mention: bool) -> Delivery | None:
        files = _files(event)
        text = plain_text(_str(event.get("text")) or "", self.identity().user_id, strip_leading_mention=mention)
        if not text:
            if files:
                text = ""  # files only: the conversation service tells Rasa so
            elif mention:
                text = BARE_MENTION_TEXT
            else:
                return None
        context = {"slack_channel": target.channel}
        if isinstance(body.get("team_id"), str):
            context["slack_team"] = body["team_id"]
        message = InboundMessage(
            channel=CHANNEL, conversation_id=target.conversation_id, sender_id=user,
            text=text[: self.max_text_length], message_id=event_id,
            attachments=tuple(self._attachment(f) for f in files),
            timestamp=_timestamp(event.get("ts")) or _timestamp(body.get("event_time")) or time.time(),
            context=context, locale=self.locale,
        )
        return Delivery(key=f"event:{event_id}", message=message, files=files)

    def _attachment(self, file: SlackFile) -> Attachment:
        return Attachment(kind=attachment_kind(file.mime_type), url=self.file_url(file.file_id), name=file.name,
                          mime_type=file.mime_type, size=file.size)

    # -- button clicks --------------------------------------------------------------------

    def _click(self, body: Mapping[str, Any]) -> Delivery | None:
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], Mapping):
            return None
        action: Mapping[str, Any] = actions[0]
        action_id, value = action.get("action_id"), action.get("value")
        if not isinstance(action_id, str) or not action_id.startswith(BUTTON_ACTION_PREFIX):
            return None
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        container: Mapping[str, Any] = body.get("container") or {}
        message: Mapping[str, Any] = body.get("message") or {}
        message_ts = _str(container.get("message_ts")) or _str(message.get("ts"))
        user = (body.get("user") or {}).get("id")
        if not isinstance(channel, str) or not message_ts or not isinstance(user, str) or not isinstance(value, str):
            return None
        target = self._click_target(channel, action, container, message, message_ts)
        title = ((action.get("text") or {}).get("text")) or value
        key = f"click:{channel}:{message_ts}"
        inbound = InboundMessage(
            channel=CHANNEL, conversation_id=target.conversation_id, sender_id=user,
            text=str(title)[: self.max_text_length], payload=value, message_id=key,
            timestamp=_timestamp(action.get("action_ts")) or time.time(), context={"slack_channel": channel},
            locale=self.locale,
        )
        return Delivery(key=key, message=inbound)

    @staticmethod
    def _click_target(channel: str, action: Mapping[str, Any], container: Mapping[str, Any],
                      message: Mapping[str, Any], message_ts: str) -> SlackTarget:
        """The conversation a click belongs to: the one named in the buttons' block id, if it is in
        this channel; else derived from where the message is."""
        block_id = action.get("block_id")
        if isinstance(block_id, str):
            named = SlackTarget.parse(block_id)
            if named.channel == channel:
                return named
        if channel.startswith("D"):
            return SlackTarget(channel)
        thread_ts = _str(message.get("thread_ts")) or _str(container.get("thread_ts")) or message_ts
        return SlackTarget(channel, thread_ts)


# -- the inbox record: what is kept before acknowledging, replayed after a restart --------


def to_record(delivery: Delivery) -> dict[str, Any]:
    """A JSON-able record of a delivery (the normalized message, plus its files for the relay)."""
    m = delivery.message
    return {
        "conversation_id": m.conversation_id, "sender_id": m.sender_id, "text": m.text,
        "message_id": m.message_id, "payload": m.payload, "timestamp": m.timestamp,
        "context": dict(m.context), "attachments": [a.to_dict() for a in m.attachments], "locale": m.locale,
        "files": [f.to_dict() for f in delivery.files],
    }


def from_record(key: str, record: Mapping[str, Any]) -> Delivery:
    """The delivery kept under `key`. Raises ValueError/KeyError/TypeError for a malformed record."""
    attachments = tuple(Attachment(**a) for a in record.get("attachments") or ())
    message = InboundMessage(
        channel=CHANNEL, conversation_id=str(record["conversation_id"]), sender_id=str(record["sender_id"]),
        text=str(record["text"]), message_id=str(record["message_id"]), payload=record.get("payload"),
        attachments=attachments, timestamp=float(record.get("timestamp") or time.time()),
        context={str(k): str(v) for k, v in (record.get("context") or {}).items()},
        locale=record.get("locale") if isinstance(record.get("locale"), str) else None,
    )
    files = tuple(f for f in (SlackFile.from_payload(r) for r in record.get("files") or ()) if f is not None)
    return Delivery(key=key, message=message, files=files)
