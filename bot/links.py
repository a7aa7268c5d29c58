"""Signed, expiring links the gateway hands out (a shopper's case page, ...): the payload is
visible, not secret; what it proves is that the gateway made it, for this purpose, and until
when. HMAC-SHA256 with a key derived from the gateway secret and the purpose, so a token made
for one purpose never opens another; compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class Opened:
    payload: dict[str, Any]
    expired: bool


class LinkSigner:
    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hmac.new(secret.encode(), f"aftersales-gateway link: {purpose}".encode(), hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:20]).decode().rstrip("=")

    def make(self, payload: Mapping[str, Any], expires_at: float) -> str:
        raw = json.dumps({**payload, "exp": int(expires_at)}, separators=(",", ":"), sort_keys=True)
        body = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body)}"

    def open(self, token: str, now: float | None = None) -> Opened | None:
        """The payload of a token this signer made (and whether it has expired); None for
        anything else: forged, altered, made for another purpose, or not a token at all."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return None
        expires_at = payload.pop("exp")
        return Opened(payload, expired=(time.time() if now is None else now) > expires_at)
