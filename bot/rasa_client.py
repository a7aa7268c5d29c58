"""HTTP client for the Rasa server (REST channel and the tracker API).

Errors are typed so the conversation service can decide what to do:
`RasaUnavailable` (connection refused, timeout, 5xx: retry later) versus
`RasaRejected` (4xx or a malformed answer: retrying will not help).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from urllib.parse import quote

import aiohttp
import yarl

from bot.errors import DependencyUnavailable
from bot.messages import InboundMessage, MessageFormatError, OutboundReply, parse_rasa_replies

log = logging.getLogger("gateway.rasa")

REST_WEBHOOK = "/webhooks/rest/webhook"


def _segment(value: str) -> str:
    """One URL path segment: every character that could end it or climb out of it escaped
    ("/", "?", "#", "%", spaces, dots are kept only inside a name). ":", "@" and "+" are
    legal in a segment and Rasa does not decode escapes, so they stay as they are."""
    segment = quote(value, safe=":@+")
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment


class RasaError(Exception):
    """Base class for problems talking to Rasa."""


class RasaUnavailable(RasaError, DependencyUnavailable):
    """Rasa could not be reached or failed on its side; the same request may work later."""


class RasaRejected(RasaError):
    """Rasa refused the request or answered something that is not a reply list."""


class RasaClient:
    """Composes one `aiohttp.ClientSession`; call `start()` before use and `close()` after."""

    def __init__(self, base_url: str, timeout_seconds: float = 30.0, token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(5.0, timeout_seconds))
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=200, limit_per_host=200, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RasaClient.start() was not called")
        return self._session

    def _params(self) -> dict[str, str]:
        return {"token": self._token} if self._token else {}

    async def send_message(self, message: InboundMessage) -> list[OutboundReply]:
        """Run one turn through Rasa's REST channel and return its replies."""
        body = await self._request("POST", REST_WEBHOOK, json=message.rasa_request())
        try:
            return parse_rasa_replies(body)
        except MessageFormatError as exc:
            raise RasaRejected(f"unexpected reply from Rasa: {exc}") from exc

    async def append_events(self, conversation_key: str, events: Sequence[dict[str, Any]]) -> None:
        """Append events (e.g. `pause`/`resume`, slot sets) to a conversation's tracker."""
        path = f"/conversations/{_segment(conversation_key)}/tracker/events"
        await self._request("POST", path, json=list(events), params={"include_events": "NONE"})

    async def tracker(self, conversation_key: str) -> dict[str, Any]:
        body = await self._request("GET", f"/conversations/{_segment(conversation_key)}/tracker")
        if not isinstance(body, dict):
            raise RasaRejected("tracker is not an object")
        return body

    async def version(self) -> dict[str, Any]:
        """Rasa's own `/version` answer (Rasa-compatible clients such as Botium ask for it)."""
        body = await self._request("GET", "/version")
        if not isinstance(body, dict):
            raise RasaRejected("version is not an object")
        return body

    async def is_ready(self) -> bool:
        """True when the server answers and has a model loaded."""
        try:
            body = await self._request("GET", "/status")
        except RasaError:
            return False
        return isinstance(body, dict) and bool(body.get("model_file"))

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: dict[str, str] | None = None) -> Any:
        query = {**self._params(), **(params or {})}
        try:
            # `encoded=True`: the escaped segments reach Rasa as they are (no "/../" is ever resolved).
            url = yarl.URL(self.base_url + path, encoded=True)
            async with self.session.request(method, url, json=json, params=query) as resp:
                if resp.status >= 500:
                    raise RasaUnavailable(f"Rasa answered HTTP {resp.status} to {method} {path}")
                if resp.status >= 400:
                    detail = (await resp.text())[:200]
                    raise RasaRejected(f"Rasa answered HTTP {resp.status} to {method} {path}: {detail}")
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise RasaRejected(f"Rasa answered invalid JSON to {method} {path}") from exc
        except asyncio.TimeoutError as exc:
            raise RasaUnavailable(f"Rasa did not answer {method} {path} in time") from exc
        except aiohttp.ClientError as exc:
            raise RasaUnavailable(f"cannot reach Rasa at {self.base_url}: {exc}") from exc
