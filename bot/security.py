"""Small guards every endpoint uses against hostile input: constant-time comparison of any
text (non-ASCII included, where `hmac.compare_digest` on `str` raises), JSON parsing that
refuses pathologically deep documents with a `ValueError` instead of a crash, and the
Origin check of websocket handshakes, and the client's address and scheme as seen through a
reverse proxy that the shop configured as trusted (never through an untrusted one)."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Sequence, Union
from urllib.parse import urlsplit

from aiohttp import web

from bot import jsoncodec

MAX_JSON_DEPTH = 64

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def is_trusted(address: str | None, proxies: Sequence[Network]) -> bool:
    """Is `address` one of the shop's reverse proxies (TRUSTED_PROXIES)?"""
    if not address or not proxies:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The address the request came from: the peer, or, when the peer is a trusted proxy, the
    nearest X-Forwarded-For hop that is not itself a trusted proxy. A header from anyone else
    is ignored, so a client cannot pick its own address."""
    address = request.remote or "?"
    if not is_trusted(address, proxies):
        return address
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, proxies):
            return hop[:64]
    return address


def came_over_https(request: web.Request, proxies: Sequence[Network]) -> bool:
    """TLS on our socket, or a trusted proxy saying its client used https."""
    if request.secure:
        return True
    if not is_trusted(request.remote, proxies):
        return False
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def same_secret(given: str | None, expected: str) -> bool:
    """`given == expected`, in constant time, for any text a client sends."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def _depth_ok(text: str, limit: int) -> bool:
    """Cheap pre-check: brackets nested deeper than `limit` (strings are skipped)."""
    if text.count("[") + text.count("{") <= limit:
        return True  # too few brackets to nest that deep (every frame a client sends, in practice)
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing documents nested deeper than `limit` (ValueError)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not _depth_ok(text, limit):
        raise ValueError(f"JSON nested deeper than {limit} levels")
    return jsoncodec.loads(text)


def origin_allowed(request: web.Request, allowed: Sequence[str]) -> bool:
    """Browsers always send Origin on websocket handshakes; tools without one are let in.
    The gateway's own pages are always allowed; other origins only when listed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == request.host
