"""Rasa's REST channel contract, served by the gateway so existing Rasa tools work unchanged.

`POST /webhooks/rest/webhook` with `{"sender": "...", "message": "..."}` answers the list of
reply dicts Rasa would (`recipient_id`, `text`, `buttons`, `image`, `custom`). Optional
fields: `metadata` (`language` or `locale` declares the shopper's language) and
`message_id` (resending the same id does not run the turn twice). Conversations live in
their own `rest:` namespace. The gateway's internal signals (a flow's handoff request)
are never returned.

When the assistant is unreachable the answer is a holding reply; the message is kept, and
its real replies are returned first in the answer to the sender's next request, on any
gateway (with REDIS_URL the replies wait in Redis).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from bot.channels import OutputChannel
from bot.config import Settings
from bot.conversation import ConversationService, Draining, QueueFull
from bot.messages import InboundMessage, OutboundReply, safe_id
from bot.outbox import MemoryOutbox, Outbox
from bot.rasa_client import RasaError
from bot.ratelimit import KeyedBuckets
from bot.security import parse_json, same_secret
from bot.texts import gateway_text

log = logging.getLogger("gateway.rest")

CHANNEL = "rest"
MAX_SENDER_LENGTH = 128


class RestOutput(OutputChannel):
    """Keeps replies until the sender's HTTP request (this one or the next) collects them."""

    name = CHANNEL

    def __init__(self, outbox: Outbox | None = None) -> None:
        self._outbox = outbox or MemoryOutbox()

    async def send_text(self, conversation_id: str, text: str) -> None:
        await self._outbox.put(conversation_id, OutboundReply(text=text).to_dict())

    async def send_reply(self, conversation_id: str, reply: OutboundReply) -> None:
        # Rasa's format has no author field
        await self._outbox.put(conversation_id, self.signed(reply).to_dict())

    async def collect(self, conversation_id: str) -> list[OutboundReply]:
        return [OutboundReply.from_dict(item) for item in await self._outbox.take(conversation_id)]


def _declared_locale(metadata: Any) -> str | None:
    """The language the client declares: `metadata.language` or `metadata.locale`."""
    if not isinstance(metadata, dict):
        return None
    for key in ("language", "locale"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value[:20]
    return None


def _bad_request(code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=400)


class RestInput:
    def __init__(self, service: ConversationService, output: RestOutput, settings: Settings) -> None:
        self.service = service
        self.output = output
        self.settings = settings
        # Per sender, as the web chat limits a conversation (not per address: a shop's backend
        # may relay every shopper from one address).
        self.sender_rate = KeyedBuckets(settings.webchat_rate_burst, settings.webchat_rate_per_second)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def version(self, request: web.Request) -> web.Response:
        """`GET /version`, as Rasa answers it: Rasa-compatible clients (Botium) ping it."""
        try:
            return web.json_response(await self.service.rasa.version())
        except RasaError as exc:
            return web.json_response({"error": "unavailable", "message": str(exc)}, status=503)

    async def webhook(self, request: web.Request) -> web.Response:
        token = self.settings.rest_auth_token
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not same_secret(given, token) and not same_secret(request.query.get("token"), token):
                self.service.metrics.inc("frames_rejected_total", reason="rest_auth")
                return web.json_response({"error": "unauthorized", "message": "missing or wrong bearer token"},
                                         status=401)
        try:
            body: Any = parse_json(await request.read())
        except (ValueError, UnicodeDecodeError):
            self.service.metrics.inc("frames_rejected_total", reason="invalid_json")
            return _bad_request("invalid_json", "request body is not valid JSON")
        if not isinstance(body, dict):
            return _bad_request("invalid_body", "request body must be a JSON object")
        sender, text = body.get("sender"), body.get("message")
        if not safe_id(sender):
            return _bad_request("invalid_sender", f"'sender' must be 1 to {MAX_SENDER_LENGTH} letters, digits or "
                                "the characters _ . @ + : - (starting with a letter or digit)")
        if not isinstance(text, str) or not text.strip():
            return _bad_request("empty_text", "'message' must be a non-empty string")
        if len(text) > self.settings.max_text_length:
            self.service.metrics.inc("frames_rejected_total", reason="text_too_long")
            return web.json_response(
                {"error": "text_too_long",
                 "message": f"message is {len(text)} characters; the limit is {self.settings.max_text_length}"},
                status=413)
        if not self.sender_rate.allow(sender):
            self.service.metrics.inc("frames_rejected_total", reason="rate_limited")
            return web.json_response({"error": "rate_limited", "message": "too many messages from this sender; "
                                      "wait a moment and send again"}, status=429, headers={"Retry-After": "2"})
        metadata = body.get("metadata")
        locale = _declared_locale(metadata)
        message_id = body.get("message_id")
        message = InboundMessage(
            channel=CHANNEL, conversation_id=sender, sender_id=sender, text=text,
            payload=text if text.startswith("/") else None,
            message_id=message_id if isinstance(message_id, str) and message_id else uuid.uuid4().hex,
            locale=locale, raw=body,
        )
        try:
            turn = self.service.submit(message)
        except Draining as exc:  # another gateway behind the load balancer takes it
            return web.json_response({"error": "draining", "message": str(exc)}, status=503,
                                     headers={"Retry-After": "1", "Connection": "close"})
        except QueueFull as exc:
            return web.json_response({"error": "queue_full", "message": str(exc)}, status=429,
                                     headers={"Retry-After": "5"})
        if turn.duplicate and turn.replies.done() and not turn.replies.cancelled():
            replies = turn.replies.result()
        else:
            answered = await turn.wait(timeout=self.settings.rasa_timeout_seconds + 5)
            replies = await self.output.collect(sender)
            if answered is None and not any(r.holding for r in replies):
                replies.append(OutboundReply(text=gateway_text("holding", turn.message.language), holding=True))
        return web.json_response([r.to_rasa_dict(sender) for r in replies if r.visible])
