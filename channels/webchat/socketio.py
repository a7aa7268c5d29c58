"""Rasa's socket.io channel contract, as the rasa-webchat widget speaks it.

Events: the client emits `session_request` (`{"session_id": <stored id or null>}`) and gets
`session_confirm` with the session id to keep; it emits `user_uttered`
(`{"message": "...", "session_id": "..."}`) and receives `bot_uttered` frames shaped like
Rasa's `SocketIOOutput` (`text`, `quick_replies`, `attachment`). The session id the gateway
confirms is a signed token, so a guessed id never attaches to someone else's conversation;
an unknown or forged id simply starts a new conversation, as Rasa does for new sessions.
Bad input is answered with an `error` event and the socket stays open. The shopper's
language comes from `customData.language` (rasa-webchat) or a `locale` in
`session_request`, then follows the conversation.

Behind several gateways (REDIS_URL), python-socketio's Redis manager carries every emit to
the gateway holding the socket, which sockets are attached to a conversation is kept in
Redis with the holding gateway's heartbeat, and replies for a conversation with no socket
anywhere wait in Redis for its next `session_request`. The websocket transport needs no
sticky sessions; socket.io's long-polling transport does (its requests must reach the
gateway that opened the session), so clients behind a load balancer should use
`transports: ["websocket"]` (the cluster's HAProxy keeps polling clients on one gateway).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Sequence

import socketio  # type: ignore[import-untyped]

from bot.channels import OutputChannel
from bot.config import Settings
from bot.conversation import ConversationService, QueueFull
from bot.i18n import language_of_locale
from bot.inbox import Liveness
from bot.messages import Button, InboundMessage
from bot.outbox import MemoryOutbox, Outbox
from bot.ratelimit import TokenBucket
from bot.texts import error_text
from channels.webchat.session import SessionSigner

log = logging.getLogger("gateway.socketio")

CHANNEL = "socketio"


def declared_locale(data: Any) -> str | None:
    """The shopper's language as a socket.io client declares it: rasa-webchat's
    `customData.language` (or `customData.locale`), or a `locale` in the event itself."""
    if not isinstance(data, dict):
        return None
    custom = data.get("customData")
    custom = custom if isinstance(custom, dict) else {}
    for value in (custom.get("language"), custom.get("locale"), data.get("locale")):
        if isinstance(value, str) and value:
            return value[:20]
    return None


class Presence:
    """Which socket.io sessions are attached to a conversation: on this gateway (always), and
    with Redis on every gateway, each session under the gateway holding it, counted only
    while that gateway's heartbeat lives (a killed gateway's sessions are gone with it)."""

    TTL_SECONDS = 24 * 3600

    def __init__(self, redis: Any = None, liveness: Liveness | None = None,
                 prefix: str = "gateway:socketio:attached:") -> None:
        self.here: dict[str, set[str]] = defaultdict(set)
        self.redis = redis if liveness is not None else None
        self.liveness = liveness
        self.prefix = prefix

    async def attach(self, conversation_id: str, sid: str) -> None:
        self.here[conversation_id].add(sid)
        if self.redis is not None and self.liveness is not None:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self.prefix + conversation_id, sid, self.liveness.gateway_id)
                    pipe.expire(self.prefix + conversation_id, self.TTL_SECONDS)
                    await pipe.execute()
            except Exception as exc:
                log.warning("socket.io presence not shared (Redis away)", extra={"error": repr(exc)})

    async def detach(self, conversation_id: str, sid: str) -> None:
        members = self.here.get(conversation_id)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.here[conversation_id]
        if self.redis is not None:
            try:
                await self.redis.hdel(self.prefix + conversation_id, sid)
            except Exception as exc:
                log.warning("socket.io presence not cleared (Redis away); it expires", extra={"error": repr(exc)})

    async def anywhere(self, conversation_id: str) -> bool:
        if self.here.get(conversation_id):
            return True
        if self.redis is None or self.liveness is None:
            return False
        try:
            holders = {v.decode() if isinstance(v, bytes) else str(v)
                       for v in (await self.redis.hgetall(self.prefix + conversation_id)).values()}
            return bool(holders and await self.liveness.alive(holders))
        except Exception as exc:  # unknown: keep the reply rather than emit it to no one
            log.warning("socket.io presence unknown (Redis away)", extra={"error": repr(exc)})
            return False


class SocketIOOutput(OutputChannel):
    name = CHANNEL

    def __init__(self, sio: socketio.AsyncServer, outbox: Outbox | None = None,
                 presence: Presence | None = None) -> None:
        self.sio = sio
        self.presence = presence or Presence()
        self._outbox = outbox or MemoryOutbox()

    async def _emit(self, conversation_id: str, data: dict[str, Any]) -> None:
        if await self.presence.anywhere(conversation_id):
            await self.sio.emit("bot_uttered", data, room=conversation_id)  # on whichever gateway
        else:
            await self._outbox.put(conversation_id, data)  # delivered at the next session_request

    async def flush(self, conversation_id: str) -> None:
        for data in await self._outbox.take(conversation_id):
            await self.sio.emit("bot_uttered", data, room=conversation_id)

    async def send_text(self, conversation_id: str, text: str) -> None:
        await self._emit(conversation_id, {"text": text})

    async def send_buttons(self, conversation_id: str, text: str | None, buttons: Sequence[Button]) -> None:
        await self._emit(conversation_id, {
            "text": text or "",
            "quick_replies": [{"content_type": "text", "title": b.title, "payload": b.payload} for b in buttons],
        })

    async def send_image(self, conversation_id: str, url: str) -> None:
        await self._emit(conversation_id, {"attachment": {"type": "image", "payload": {"src": url}}})

    async def send_custom(self, conversation_id: str, custom: Any) -> None:
        await self._emit(conversation_id, dict(custom))


class SocketIOInput:
    def __init__(self, service: ConversationService, signer: SessionSigner, settings: Settings,
                 outbox: Outbox | None = None, presence: Presence | None = None) -> None:
        self.service = service
        self.signer = signer
        self.settings = settings
        allowed: list[str] | str = ("*" if "*" in settings.webchat_allowed_origins
                                    else [*settings.webchat_allowed_origins, *settings.own_origins])
        # With Redis, an emit on any gateway reaches the socket on the gateway holding it.
        manager = (socketio.AsyncRedisManager(settings.redis_url, channel="gateway:socketio")
                   if settings.redis_url else None)
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=allowed,
                                        ping_interval=25, ping_timeout=20, client_manager=manager,
                                        max_http_buffer_size=64 * 1024, logger=False, engineio_logger=False)
        self.output = SocketIOOutput(self.sio, outbox, presence)
        self._buckets: dict[str, TokenBucket] = {}
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("session_request", self.on_session_request)
        self.sio.on("user_uttered", self.on_user_uttered)

    async def close(self) -> None:
        """Stop the Redis manager's listener and close its connection (the app's clean-up)."""
        manager = self.sio.manager
        thread = getattr(manager, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            await asyncio.gather(thread, return_exceptions=True)
        connection = getattr(manager, "redis", None)
        if connection is not None:
            await connection.aclose()

    async def error(self, sid: str, code: str, detail: str, **values: object) -> None:
        """An `error` event: `message` for the shopper in the conversation's language, `detail`
        for the client's developer."""
        self.service.metrics.inc("frames_rejected_total", reason=code)
        async with self.sio.session(sid) as session:
            conversation_id, locale = session.get("conversation_id"), session.get("locale")
        language = (self.service.language_of(f"{CHANNEL}:{conversation_id}") if conversation_id
                    else language_of_locale(locale))
        await self.sio.emit("error", {"code": code, "message": error_text(code, language, **values),
                                      "detail": detail}, to=sid)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self._buckets[sid] = TokenBucket(self.settings.webchat_rate_burst, self.settings.webchat_rate_per_second)

    async def on_disconnect(self, sid: str, *args: Any) -> None:
        self._buckets.pop(sid, None)
        async with self.sio.session(sid) as session:
            conversation_id = session.get("conversation_id")
        if conversation_id:
            await self.output.presence.detach(conversation_id, sid)

    async def _bind(self, sid: str, data: Any) -> str:
        requested = data.get("session_id") if isinstance(data, dict) else None
        conversation_id = self.signer.verify(requested)
        token = requested if conversation_id else None
        if conversation_id is None:
            conversation_id, token = self.signer.issue()
        async with self.sio.session(sid) as session:
            previous = session.get("conversation_id")
            session["conversation_id"] = conversation_id
            session["token"] = token
            session["locale"] = declared_locale(data) or session.get("locale")
        self.service.declare_locale(f"{CHANNEL}:{conversation_id}", declared_locale(data))
        if previous and previous != conversation_id:
            await self.sio.leave_room(sid, previous)
            await self.output.presence.detach(previous, sid)
        await self.sio.enter_room(sid, conversation_id)
        await self.output.presence.attach(conversation_id, sid)
        assert isinstance(token, str)
        return token

    async def on_session_request(self, sid: str, data: Any = None) -> None:
        token = await self._bind(sid, data)
        await self.sio.emit("session_confirm", token, to=sid)
        conversation_id = self.signer.verify(token)
        assert conversation_id is not None
        await self.output.flush(conversation_id)

    async def on_user_uttered(self, sid: str, data: Any = None) -> None:
        if not isinstance(data, dict):
            await self.error(sid, "invalid_frame", "user_uttered needs an object with 'message'")
            return
        bucket = self._buckets.get(sid)
        if bucket is not None and not bucket.allow():
            await self.error(sid, "rate_limited", "too many messages; wait a moment and send again")
            return
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            await self.error(sid, "empty_text", "'message' must be a non-empty string")
            return
        if len(text) > self.settings.max_text_length:
            await self.error(sid, "text_too_long",
                             f"message is {len(text)} characters; the limit is {self.settings.max_text_length}",
                             length=len(text), limit=self.settings.max_text_length)
            return
        async with self.sio.session(sid) as session:
            conversation_id = session.get("conversation_id")
            locale = declared_locale(data) or session.get("locale")
            session["locale"] = locale
        claimed = self.signer.verify(data.get("session_id"))
        if claimed is not None and claimed != conversation_id:
            await self._bind(sid, {"session_id": data["session_id"], "locale": locale})
            conversation_id = claimed
        if conversation_id is None:
            await self.error(sid, "hello_required", "emit session_request first")
            return
        message = InboundMessage(
            channel=CHANNEL, conversation_id=conversation_id, sender_id=conversation_id, text=text,
            payload=text if text.startswith("/") else None, locale=locale, raw=data,
            **({"message_id": data["message_id"][:100]} if isinstance(data.get("message_id"), str) else {}),
        )
        try:
            self.service.submit(message)
        except QueueFull as exc:
            await self.error(sid, "queue_full", f"please wait for an answer first ({exc})")
