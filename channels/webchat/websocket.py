"""The gateway's own web chat: an aiohttp websocket speaking the frames in
docs/webchat-protocol.md. Input role: `WebchatInput.handle`; output role: `WebchatOutput`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from aiohttp import WSMsgType, web

from bot import jsoncodec
from bot.channels import OutputChannel
from bot.config import Settings
from bot.conversation import ConversationService, Draining, QueueFull, Turn
from bot.fanout import Fanout
from bot.i18n import language_of_locale
from bot.inbox import Inbox, Kept
from bot.messages import Attachment, Button, InboundMessage, OutboundReply
from bot.plugins import AvailabilityBoard
from bot.ratelimit import KeyedBuckets, TokenBucket
from bot.security import client_address, origin_allowed, parse_json
from bot.texts import error_text
from channels.webchat.corking import cork, send_text_now
from channels.webchat.session import CustomerTokenVerifier, SessionSigner
from channels.webchat.uploads import Uploads

log = logging.getLogger("gateway.webchat")

CHANNEL = "webchat"
MAX_FRAME_BYTES = 64 * 1024
MAX_ID_LENGTH = 100
MAX_PAYLOAD_LENGTH = 1000
FLOOD_CLOSE_AFTER = 50  # refused frames (invalid or over a limit) before the socket is closed
# A shopper's own mistakes: answered, but not counted as flooding.
# Closing a socket because this gateway stops: 1012 "service restart", reconnect (through the
# load balancer, to another gateway) and resend what was not acknowledged.
RECONNECT_CLOSE_CODE = 1012
RECONNECT_REASON = b"gateway restarting: reconnect"
FANOUT_TOPIC = "webchat"
SHOPPER_ERRORS = frozenset({"text_too_long", "empty_text", "queue_full", "invalid_customer", "invalid_attachment"})
HELLO_BURST, HELLO_PER_SECOND = 3, 0.1  # per socket: a hello resends the whole history


# Characters json.dumps writes as they are (printable ASCII but the quote and the backslash).
_WRITTEN_AS_IS = re.compile(r'[ !#-\[\]-~]*\Z')
_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
_NO_CONTEXT: Mapping[str, str] = MappingProxyType({})  # shared by every socket without a customer
# Two frames of every turn, encoded once.
_TYPING_TEXT = {on: json.dumps({"type": "typing", "on": on}) for on in (True, False)}


class WebchatOutput(OutputChannel):
    """Pushes replies to every socket attached to a conversation (several tabs may be), on
    whichever gateway holds them (`bot/fanout.py`)."""

    name = CHANNEL

    def __init__(self, fanout: Fanout | None = None) -> None:
        # A conversation's socket, or a set of them when several tabs share it (a set costs
        # 216 bytes, for every open socket). No weak references: every socket is detached
        # when its handler ends (`WebchatInput.handle`).
        self._sockets: dict[str, web.WebSocketResponse | set[web.WebSocketResponse]] = {}
        self.fanout = fanout or Fanout()
        self.fanout.subscribe(FANOUT_TOPIC, self._deliver_here)

    def attach(self, conversation_id: str, ws: web.WebSocketResponse) -> None:
        held = self._sockets.get(conversation_id)
        if held is None or held is ws:
            self._sockets[conversation_id] = ws
        elif isinstance(held, set):
            held.add(ws)
        else:
            self._sockets[conversation_id] = {held, ws}

    def detach(self, conversation_id: str, ws: web.WebSocketResponse) -> None:
        held = self._sockets.get(conversation_id)
        if held is ws:
            del self._sockets[conversation_id]
        elif isinstance(held, set):
            held.discard(ws)
            if len(held) == 1:
                self._sockets[conversation_id] = next(iter(held))

    async def _broadcast(self, conversation_id: str, frame: dict[str, Any]) -> None:
        # A shopper who is not connected sees the reply in the history frame on resume.
        await self.fanout.publish(FANOUT_TOPIC, {"conversation_id": conversation_id, "frame": frame})

    async def _deliver_here(self, published: dict[str, Any]) -> None:
        conversation_id, frame = published.get("conversation_id"), published.get("frame")
        if not isinstance(conversation_id, str) or not isinstance(frame, dict):
            return
        held = self._sockets.get(conversation_id)
        if held is None:
            return
        on = frame.get("on") if frame.get("type") == "typing" and len(frame) == 2 else None
        text = _TYPING_TEXT[on] if on is True or on is False else jsoncodec.dumps(frame)  # once for every tab
        for ws in tuple(held) if isinstance(held, set) else (held,):
            if not ws.closed:
                await _send_text(ws, text)

    async def send_text(self, conversation_id: str, text: str) -> None:
        await self.send_reply(conversation_id, OutboundReply(text=text))

    async def send_buttons(self, conversation_id: str, text: str | None, buttons: Sequence[Button]) -> None:
        await self.send_reply(conversation_id, OutboundReply(text=text, buttons=tuple(buttons)))

    async def send_image(self, conversation_id: str, url: str) -> None:
        await self.send_reply(conversation_id, OutboundReply(image=url))

    async def send_reply(self, conversation_id: str, reply: OutboundReply) -> None:
        if reply.text is None and reply.image is None and not reply.buttons:
            return  # a pure signal (e.g. handoff): nothing for the shopper to see
        await self._broadcast(conversation_id, {"type": "reply", **reply.to_dict()})

    async def send_typing(self, conversation_id: str, on: bool) -> None:
        frame = {"type": "typing", "on": on}
        if conversation_id in self._sockets:
            # Held here, as it is while the gateway the shopper writes to answers: straight to
            # the socket, not twice through Redis. (A second tab on another gateway goes
            # without the indicator; it gets the reply.)
            await self._deliver_here({"conversation_id": conversation_id, "frame": frame})
        else:
            await self._broadcast(conversation_id, frame)


async def _send_text(ws: web.WebSocketResponse, text: str) -> None:
    """A text frame to a socket: written straight into its corked transport, or through
    aiohttp's writer when that cannot be (closing, a backlog to drain)."""
    if send_text_now(ws, text):
        return
    try:
        await ws.send_str(text)
    except ConnectionError:
        pass  # closed meanwhile: the shopper finds it in the history


def _record(message: InboundMessage) -> dict[str, Any]:
    """What the inbox keeps of an acknowledged message, to answer it after a restart."""
    return {"conversation_id": message.conversation_id, "text": message.text, "payload": message.payload,
            "message_id": message.message_id, "locale": message.locale, "context": dict(message.context),
            "attachments": [a.to_dict() for a in message.attachments], "timestamp": message.timestamp}


def _from_record(record: dict[str, Any]) -> InboundMessage:
    conversation_id = str(record["conversation_id"])
    return InboundMessage(
        channel=CHANNEL, conversation_id=conversation_id, sender_id=conversation_id, text=str(record.get("text") or ""),
        payload=record.get("payload"), message_id=str(record["message_id"]), locale=record.get("locale"),
        context=dict(record.get("context") or {}), timestamp=float(record.get("timestamp") or time.time()),
        attachments=tuple(Attachment(**a) for a in record.get("attachments") or ()))


class WebchatInput:
    """Input role of the web chat. An acknowledged message is kept in the inbox (Redis with
    REDIS_URL) until it is answered, and answered after a restart if the gateway died first."""

    def __init__(self, service: ConversationService, output: WebchatOutput, signer: SessionSigner,
                 settings: Settings, uploads: Uploads, inbox: Inbox,
                 availability: AvailabilityBoard | None = None) -> None:
        self.availability = availability or AvailabilityBoard()  # told in the session frame (the header)
        self.inbox = inbox
        self._to_forget: list[str] = []  # event ids of kept messages answered, to forget
        self._forgetting: asyncio.Task[None] | None = None
        self._tracking_stopped = False
        self.uploads = uploads
        self.service = service
        self.output = output
        self.signer = signer
        self.settings = settings
        self.customers = CustomerTokenVerifier(settings.shop_customer_secret) if settings.shop_customer_secret else None
        self.sockets: set[web.WebSocketResponse] = set()  # open ones, to close them at a stop
        # Shared by every socket of one conversation (twenty tabs with one token get one tab's rate)
        # and by every new conversation from one address.
        self.conversation_rate = KeyedBuckets(settings.webchat_rate_burst, settings.webchat_rate_per_second)
        per_minute = settings.webchat_new_sessions_per_minute  # new conversations per client address
        self.new_sessions = KeyedBuckets(per_minute, per_minute / 60.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, self.settings.webchat_allowed_origins):
            self.service.metrics.inc("frames_rejected_total", reason="origin")
            log.warning("websocket refused: origin not allowed",
                        extra={"origin": request.headers.get("Origin")})
            raise web.HTTPForbidden(text="origin not allowed; add it to WEBCHAT_ALLOWED_ORIGINS")
        # No permessage-deflate, though browsers ask for it: zlib's compressor and decompressor
        # cost about 100 KB of memory for every open socket, to shrink frames of a few hundred bytes.
        ws = web.WebSocketResponse(heartbeat=self.settings.webchat_heartbeat_seconds,
                                   max_msg_size=MAX_FRAME_BYTES, compress=False)
        await ws.prepare(request)
        cork(ws)  # channels/webchat/corking.py: a turn's frames in fewer writes
        connection = _Connection(self, ws, request)
        self.sockets.add(ws)
        try:
            await connection.run()
        finally:
            connection.detach()
            self.sockets.discard(ws)
        return ws

    @staticmethod
    def event_id(message: InboundMessage) -> str:
        """The inbox key of a message: `json.dumps([conversation id, message id])`, opaque, never
        parsed (written out directly for the usual ids, which JSON writes as they are)."""
        conversation_id, message_id = message.conversation_id, message.message_id
        if _WRITTEN_AS_IS.match(conversation_id) and _WRITTEN_AS_IS.match(message_id):
            return f'["{conversation_id}", "{message_id}"]'
        return json.dumps([conversation_id, message_id])

    def track(self, turn: Turn, event_id: str) -> None:
        """Forget the kept message once its turn is answered (a callback, not a task waiting
        for every message; the messages answered meanwhile are forgotten by one task)."""
        def answered(replies: asyncio.Future[list[OutboundReply]]) -> None:
            if replies.cancelled() or self._tracking_stopped:
                return  # shutdown: it stays kept, replayed at the next start
            replies.exception()  # an answer that failed is answered all the same
            self._to_forget.append(event_id)
            if self._forgetting is None:
                self._forgetting = asyncio.create_task(self._forget_answered(), name="webchat-inbox-done")
        turn.replies.add_done_callback(answered)

    async def _forget_answered(self) -> None:
        try:
            while self._to_forget:
                answered, self._to_forget = self._to_forget, []
                failed = await self.inbox.done_all(CHANNEL, answered)
                if failed:  # replayed after the next start; the transcript shows them once
                    log.warning("answered web chat messages not removed from the inbox", extra={"count": failed})
        finally:
            self._forgetting = None

    async def replay_kept(self) -> None:
        """Answer what was acknowledged before the last stop but not answered: the shopper
        finds the answer in the history when they come back."""
        try:
            kept = await self.inbox.claim_unowned(CHANNEL)
        except Exception as exc:
            log.error("cannot read kept web chat messages", extra={"error": repr(exc)})
            return
        for event_id, record in kept:
            try:
                message = _from_record(record)
                # The history as every gateway wrote it, first: the gateway that kept the message
                # may have written its line already (the shopper would see it twice).
                await self.service.transcripts.shared_history(message.conversation_key)
                turn = self.service.submit(message, replayed=True)
            except (KeyError, TypeError, ValueError, QueueFull) as exc:
                self.inbox.release(CHANNEL, event_id)  # tried again at the next take-over
                log.error("kept web chat message could not be replayed", extra={"error": repr(exc)})
                continue
            self.track(turn, event_id)
        if kept:
            log.info("kept web chat messages replayed", extra={"count": len(kept)})

    async def stop_tracking(self) -> None:
        self._tracking_stopped = True
        if self._forgetting is not None:
            self._forgetting.cancel()
            await asyncio.gather(self._forgetting, return_exceptions=True)

    async def close_all(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=RECONNECT_CLOSE_CODE, message=RECONNECT_REASON)


class _Connection:
    """One websocket: the hello handshake, then messages, with per-socket limits."""

    # One per open socket, for as long as it is open: no per-instance dict.
    __slots__ = ("owner", "ws", "request", "conversation_id", "locale", "context", "hellos", "address", "refusals")

    def __init__(self, owner: WebchatInput, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.owner = owner
        self.ws = ws
        self.request = request
        self.conversation_id: str | None = None
        self.locale: str | None = None
        self.context: Mapping[str, str] = _NO_CONTEXT
        settings = owner.settings
        self.hellos = TokenBucket(HELLO_BURST, HELLO_PER_SECOND)
        self.address = client_address(request, settings.trusted_proxies)
        self.refusals = 0

    @property
    def language(self) -> str:
        """The conversation's language (before the hello: the page's locale)."""
        if self.conversation_id is not None:
            return self.owner.service.language_of(f"{CHANNEL}:{self.conversation_id}")
        return language_of_locale(self.locale) or "en"

    async def error(self, code: str, detail: str, frame_id: str | None = None, **values: object) -> None:
        """An error frame: `message` for the shopper, in the conversation's language;
        `detail` for the client's developer."""
        self.owner.service.metrics.inc("frames_rejected_total", reason=code)
        if code not in SHOPPER_ERRORS:
            self.refusals += 1  # counts toward the flood close
        # Debug only: a flood must not become a flood of log lines (the metric counts them).
        log.debug("frame refused", extra={"code": code, "conversation": self.conversation_id})
        await self.ws.send_json({"type": "error", "code": code, "message": error_text(code, self.language, **values),
                                 "detail": detail, "id": frame_id}, dumps=jsoncodec.dumps)

    async def run(self) -> None:
        """The socket's messages until it closes; the first (the hello) must come within
        HEADER_TIMEOUT_SECONDS, so idle sockets do not pile up. (A plain loop: an async
        generator would be one more object and frame kept for every open socket.)"""
        try:
            msg = await self.ws.receive(timeout=self.owner.settings.header_timeout_seconds)
        except asyncio.TimeoutError:
            log.debug("websocket closed: nothing sent after connecting")
            await self.ws.close(code=1008, message=b"send a hello first")
            return
        while msg.type not in _CLOSED:
            if msg.type == WSMsgType.TEXT:
                await self.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self.error("binary_not_supported", "send JSON text frames, not binary")
            elif msg.type == WSMsgType.ERROR:
                log.info("websocket closed with error", extra={"error": repr(self.ws.exception())})
            if self.refusals >= FLOOD_CLOSE_AFTER:
                log.warning("websocket closed for flooding", extra={"conversation": self.conversation_id})
                await self.ws.close(code=1008, message=b"too many messages")
                return
            msg = await self.ws.receive()

    async def on_text(self, data: str) -> None:
        try:
            frame = parse_json(data)
        except ValueError:
            await self.error("invalid_json", "frame is not valid JSON")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.error("invalid_frame", "frame must be a JSON object with a string 'type'")
            return
        kind = frame["type"]
        if kind == "ping":
            await self.ws.send_json({"type": "pong"})
        elif kind == "hello":
            await self.on_hello(frame)
        elif kind == "message":
            await self.on_message(frame)
        else:
            await self.error("invalid_frame", f"unknown frame type {kind[:40]!r}")

    async def on_hello(self, frame: dict[str, Any]) -> None:
        if not self.hellos.allow():
            await self.error("rate_limited", "too many hello frames on this socket")
            return
        locale = frame.get("locale")
        self.locale = locale[:20] if isinstance(locale, str) and locale else None
        customer_token = frame.get("customer")
        if customer_token is not None:
            verifier = self.owner.customers
            customer_id = verifier.verify(customer_token, time.time()) if verifier else None
            if customer_id is None:
                await self.error("invalid_customer", "the customer token is not valid or has expired; "
                                 "continuing without it")
            else:
                self.context = {"customer_id": customer_id}
        resumed_id = self.owner.signer.verify(frame.get("token"))
        if resumed_id is not None:
            conversation_id, token = resumed_id, frame["token"]
        elif not self.owner.new_sessions.allow(self.address):
            await self.error("rate_limited", "too many new conversations from this address; try again shortly")
            return
        else:
            conversation_id, token = self.owner.signer.issue()
        self.detach()
        self.conversation_id = conversation_id
        self.owner.service.declare_locale(f"{CHANNEL}:{conversation_id}", self.locale)
        self.owner.output.attach(conversation_id, self.ws)
        session: dict[str, Any] = {"type": "session", "conversation_id": conversation_id, "token": token,
                                   "resumed": resumed_id is not None}
        people = self.owner.availability.now(self.owner.service.language_of(f"{CHANNEL}:{conversation_id}"))
        if people is not None:
            session["service"] = {"people": people.people, "back": people.back}
        await self.ws.send_json(session)
        if resumed_id is not None:
            history = await self.owner.service.transcripts.shared_history(f"{CHANNEL}:{conversation_id}")
            await self.ws.send_json({"type": "history", "messages": [e.to_dict() for e in history]})
        log.info("web chat session", extra={"conversation": conversation_id, "resumed": resumed_id is not None})

    async def on_message(self, frame: dict[str, Any]) -> None:
        frame_id = frame.get("id")
        if not isinstance(frame_id, str) or not 0 < len(frame_id) <= MAX_ID_LENGTH:
            await self.error("invalid_frame", f"'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
            return
        if self.conversation_id is None:
            await self.error("hello_required", "send a hello frame first", frame_id)
            return
        if not self.owner.conversation_rate.allow(self.conversation_id):  # one rate for all its sockets
            await self.error("rate_limited", "too many messages; wait a moment and send again", frame_id)
            return
        text, payload, raw_attachments = frame.get("text"), frame.get("payload"), frame.get("attachments")
        attachments = [] if raw_attachments is None else await self._attachments(raw_attachments)
        if attachments is None:
            await self.error("invalid_attachment", "attach files uploaded in this conversation "
                             "(POST /webchat/upload), at most 5 per message", frame_id)
            return
        if attachments and (text is None or (isinstance(text, str) and not text.strip())):
            text = ""  # files only: the conversation service tells Rasa so
        if not isinstance(text, str) or (not text.strip() and not attachments):
            await self.error("empty_text", "'text' must be a non-empty string", frame_id)
            return
        limit = self.owner.settings.max_text_length
        if len(text) > limit:
            await self.error("text_too_long", f"text is {len(text)} characters; the limit is {limit}", frame_id,
                             length=len(text), limit=limit)
            return
        if payload is not None and (not isinstance(payload, str) or not 0 < len(payload) <= MAX_PAYLOAD_LENGTH):
            await self.error("invalid_frame", "'payload' must be a short string", frame_id)
            return
        message = InboundMessage(
            channel=CHANNEL, conversation_id=self.conversation_id, sender_id=self.conversation_id,
            text=text, payload=payload, message_id=frame_id, locale=self.locale, context=self.context, raw=frame,
            attachments=tuple(attachments),
        )
        inbox, event_id = self.owner.inbox, self.owner.event_id(message)
        try:  # kept before the ack promises it, unless it was sent before (to any gateway)
            kept: Kept | None = await inbox.keep_new(CHANNEL, event_id, _record(message))
        except Exception as exc:  # Redis away: it is answered, but would not survive a crash
            log.error("web chat message could not be kept; answering it anyway", extra={"error": repr(exc)})
            kept = None
        if kept in (Kept.BEFORE, Kept.ANSWERED):
            # A resend after a drop (maybe to another gateway): its keeper answers it, or has,
            # or a survivor takes it over if the keeper died; never run twice.
            self.owner.service.metrics.inc("messages_duplicate_total", channel=CHANNEL)
            await _send_text(self.ws, jsoncodec.dumps({"type": "ack", "id": frame_id}))
            return
        try:
            turn = self.owner.service.submit(message)
        except (Draining, QueueFull) as exc:
            if kept is Kept.NOW:
                await self._discard(event_id)
            if isinstance(exc, QueueFull):
                await self.error("queue_full", f"please wait for an answer first ({exc})", frame_id)
            # Draining: not acknowledged; once the accepted ones are answered, the socket is
            # closed with the reconnect hint and the client resends it to another gateway.
            return
        if kept is Kept.NOW and not turn.duplicate:
            self.owner.track(turn, event_id)
        await _send_text(self.ws, jsoncodec.dumps({"type": "ack", "id": frame_id}))

    async def _discard(self, event_id: str) -> None:
        try:
            await self.owner.inbox.discard(CHANNEL, event_id)
        except Exception as exc:  # answered at the next take-over instead; the client resends it too
            log.warning("refused web chat message left in the inbox", extra={"error": repr(exc)})

    async def _attachments(self, raw: object) -> list[Attachment] | None:
        """The uploaded files a message refers to; None when any id is not this conversation's."""
        if raw is None:
            return []
        if not isinstance(raw, list) or len(raw) > 5 or self.conversation_id is None:
            return None
        found = [await self.owner.uploads.attachment(self.request, self.conversation_id, i) for i in raw]
        return None if any(a is None for a in found) else [a for a in found if a is not None]

    def detach(self) -> None:
        if self.conversation_id is not None:
            self.owner.output.detach(self.conversation_id, self.ws)
