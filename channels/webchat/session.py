"""Web chat session tokens: the only way to attach to a conversation.

A token is `<conversation id>.<HMAC-SHA256 of it under the gateway secret>`. The id is
random (128 bits); the signature makes a guessed or altered id worthless, so nobody can
attach to or read another shopper's conversation. Tokens are stateless: they survive a
gateway restart as long as the secret does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from bot.security import same_secret


class SessionSigner:
    def __init__(self, secret: str, purpose: str = "webchat") -> None:
        self._key = hashlib.sha256(f"{purpose}:{secret}".encode()).digest()

    def _sign(self, conversation_id: str) -> str:
        digest = hmac.new(self._key, conversation_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self) -> tuple[str, str]:
        """A new conversation id and its token."""
        conversation_id = uuid.uuid4().hex
        return conversation_id, f"{conversation_id}.{self._sign(conversation_id)}"

    def verify(self, token: object) -> str | None:
        """The conversation id the token was issued for, or None if it is not genuine."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 200:
            return None
        conversation_id, signature = token.split(".")
        if not conversation_id or not same_secret(signature, self._sign(conversation_id)):
            return None
        return conversation_id


class CustomerTokenVerifier:
    """Customer ids vouched for by the shop's own backend.

    The shop's server, which knows who is signed in, renders the chat link with
    `?customer=<customer id>.<expiry, unix seconds>.<hex HMAC-SHA256 of "<id>.<expiry>"
    under SHOP_CUSTOMER_SECRET>`. The gateway accepts the id only with a valid, unexpired
    signature, so a shopper cannot see someone else's orders by editing the link.
    """

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, customer_id: str, expires: int) -> str:
        body = f"{customer_id}.{expires}"
        return f"{body}.{hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()}"

    def verify(self, token: object, now: float) -> str | None:
        if not isinstance(token, str) or len(token) > 300 or token.count(".") < 2:
            return None
        body, _, signature = token.rpartition(".")
        customer_id, _, expires = body.rpartition(".")
        if not customer_id or not expires.isdigit() or int(expires) < now:
            return None
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return customer_id if same_secret(signature, expected) else None
