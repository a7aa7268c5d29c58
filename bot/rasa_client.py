"""HTTP client for the Rasa server (REST channel and the tracker API).

Errors are typed so the conversation service can decide what to do:
`RasaUnavailable` (connection refused, timeout, 5xx: retry later) versus
`RasaRejected` (4xx or a malformed answer: retrying will not help).

A turn whose request was sent but whose answer never came (timeout, dropped connection,
5xx) may have run in Rasa. Its retry first reads the tracker: if the message is there, the
turn is not sent again; its replies are read from the tracker's bot events (once the turn
has finished). Only a message Rasa never saw is resent. The action server keys the cases
it creates by the same message id, so even a resend cannot create a second case.

Several Rasa servers (RASA_URL with several URLs; they must share a tracker store and lock
store, as `./aftersales run` and the cluster set them up on Redis) are used as one: each
request goes to the server with the fewest requests in flight (in turn among equals); one
that refuses the connection is skipped for a while and the request goes to the next, since
it never ran. One conversation's turns stay in order: the conversation service sends them
one at a time, and Rasa's lock store keeps two gateways from running them at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import quote

import aiohttp
import yarl

from bot import jsoncodec
from bot.errors import DependencyUnavailable
from bot.keepalive import BadResponse, ConnectionLost, KeepAlivePool, NotConnected
from bot.messages import InboundMessage, MessageFormatError, OutboundReply, parse_rasa_replies
from bot.metrics import Metrics

log = logging.getLogger("gateway.rasa")

REST_WEBHOOK = "/webhooks/rest/webhook"
JSON_HEADERS = {"Content-Type": "application/json"}


def _segment(value: str) -> str:
    """One URL path segment: every character that could end it or climb out of it escaped
    ("/", "?", "#", "%", spaces, dots are kept only inside a name). ":", "@" and "+" are
    legal in a segment and Rasa does not decode escapes, so they stay as they are."""
    segment = quote(value, safe=":@+")
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class RasaError(Exception):
    """Base class for problems talking to Rasa."""


class RasaUnavailable(RasaError, DependencyUnavailable):
    """Rasa could not be reached or failed on its side; the same request may work later."""


class RasaNotReached(RasaUnavailable):
    """The request never reached Rasa (connection refused): sending it again is safe."""


class RasaRejected(RasaError):
    """Rasa refused the request or answered something that is not a reply list."""


MAX_UNSETTLED = 10_000
REPLY_FIELDS = ("buttons", "image", "custom", "attachment")
SKIP_REFUSING_SERVER_SECONDS = 5.0


@dataclass(eq=False)
class RasaServer:
    """One Rasa server of the pool, as the client sees it."""

    url: str
    in_flight: int = 0
    refused_until: float = 0.0  # monotonic time before which it is tried only after the others
    turns: KeepAlivePool | None = None  # the webhook's connections (plain http://), from `RasaClient.start`

    def __post_init__(self) -> None:
        self.webhook = self.url_of(REST_WEBHOOK)  # every turn's URL, built once

    def url_of(self, path: str) -> yarl.URL:
        # `encoded=True`: the escaped segments reach Rasa as they are (no "/../" is ever resolved).
        return yarl.URL(self.url + path, encoded=True)


class RasaClient:
    """Composes one `aiohttp.ClientSession`; call `start()` before use and `close()` after.
    `base_urls`: one Rasa server's URL, or several (a comma-separated string or a sequence)."""

    def __init__(self, base_urls: str | Sequence[str], timeout_seconds: float = 30.0, token: str = "",
                 metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        urls = [u.strip() for u in base_urls.split(",")] if isinstance(base_urls, str) else list(base_urls)
        self.servers = [RasaServer(u.rstrip("/")) for u in urls if u.strip()]
        if not self.servers:
            raise ValueError("no Rasa server URL given")
        self._turn = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(5.0, timeout_seconds))
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        # Turns sent whose answer was lost: (conversation key, message id).
        self._unsettled: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def start(self) -> None:
        for server in self.servers:
            url = yarl.URL(server.url)
            if server.turns is None and url.scheme == "http" and url.host:
                webhook = server.webhook.with_query(self._params()) if self._token else server.webhook
                server.turns = KeepAlivePool(url.host, url.port or 80, webhook.raw_path_qs,
                                             timeout=self._timeout.total or 30.0, limit=200,
                                             connect_timeout=min(5.0, self._timeout.total or 5.0))
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=200, limit_per_host=200, enable_cleanup_closed=True)
            # Rasa sets no cookies: a jar that keeps none spares every request the cookie filtering.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        for server in self.servers:
            if server.turns is not None:
                server.turns.close()
                server.turns = None
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

    def may_have_run(self, message: InboundMessage) -> None:
        """`message` may have been sent to Rasa before (by a gateway that died, by this one
        before a restart): its first send reads the tracker first."""
        self._unsettled[(message.conversation_key, message.message_id)] = None
        while len(self._unsettled) > MAX_UNSETTLED:
            self._unsettled.popitem(last=False)

    async def send_message(self, message: InboundMessage) -> list[OutboundReply]:
        """Run one turn through Rasa's REST channel and return its replies; a retried turn
        that already ran is answered from the tracker instead of running again."""
        turn = (message.conversation_key, message.message_id)
        if turn in self._unsettled:
            earlier = await self._replies_of_earlier_run(message)
            if earlier is not None:
                self._unsettled.pop(turn, None)
                log.info("retried turn had already run in Rasa; replies taken from its tracker",
                         extra={"conversation": message.conversation_key, "message_id": message.message_id})
                return earlier
        try:
            body = await self._request("POST", REST_WEBHOOK, json=message.rasa_request())
        except RasaNotReached:
            raise
        except RasaUnavailable:
            self._unsettled[turn] = None  # it may have run: check before sending it again
            while len(self._unsettled) > MAX_UNSETTLED:
                self._unsettled.popitem(last=False)
            raise
        self._unsettled.pop(turn, None)
        return self._parse(body)

    @staticmethod
    def _parse(body: Any) -> list[OutboundReply]:
        try:
            return parse_rasa_replies(body)
        except MessageFormatError as exc:
            raise RasaRejected(f"unexpected reply from Rasa: {exc}") from exc

    async def _replies_of_earlier_run(self, message: InboundMessage) -> list[OutboundReply] | None:
        """The replies Rasa gave when it ran `message` before, read from the tracker; None if
        Rasa never saw it. Raises `RasaUnavailable` while that run is still going."""
        tracker = await self.tracker(message.conversation_key)
        events = [e for e in tracker.get("events") or [] if isinstance(e, dict)]
        start = None
        for index, event in enumerate(events):
            if event.get("event") == "user" and _mapping(event.get("metadata")).get("message_id") == message.message_id:
                start = index
        if start is None:
            return None
        said: list[dict[str, Any]] = []
        for event in events[start + 1:]:
            if event.get("event") == "user":
                break
            if event.get("event") == "action" and event.get("name") == "action_listen":
                return self._parse(said)
            if event.get("event") == "bot":
                data = _mapping(event.get("data"))
                said.append({"text": event.get("text"), **{k: data[k] for k in REPLY_FIELDS if data.get(k)}})
        else:
            if not tracker.get("paused"):
                raise RasaUnavailable("Rasa is still running the earlier attempt of this turn")
        return self._parse(said)

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
        """True when at least one server answers and has a model loaded."""
        return bool(await self.ready_servers())

    async def ready_servers(self) -> list[str]:
        """The URLs of the servers that answer with a model loaded."""
        ready = await asyncio.gather(*(self._server_ready(server) for server in self.servers))
        return [server.url for server, ok in zip(self.servers, ready, strict=True) if ok]

    async def _server_ready(self, server: RasaServer) -> bool:
        try:
            body = await self._request_one(server, "GET", "/status", None, self._params())
        except RasaError:
            return False
        return isinstance(body, dict) and bool(body.get("model_file"))

    def _candidates(self) -> list[RasaServer]:
        """Every server once: the least busy first (in turn among equals), those that
        refused a connection lately last."""
        if len(self.servers) == 1:
            return self.servers
        now = time.monotonic()
        self._turn = (self._turn + 1) % len(self.servers)
        rotated = self.servers[self._turn:] + self.servers[:self._turn]
        return sorted(rotated, key=lambda s: (s.refused_until > now, s.in_flight))

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: dict[str, str] | None = None) -> Any:
        query = {**self._params(), **params} if params else self._params()
        refused: RasaNotReached | None = None
        for server in self._candidates():
            try:
                return await self._request_one(server, method, path, json, query)
            except RasaNotReached as exc:  # it never ran there: the next server may take it
                server.refused_until = time.monotonic() + SKIP_REFUSING_SERVER_SECONDS
                self.metrics.inc("rasa_refused_total", rasa=server.url)
                if len(self.servers) > 1:
                    log.warning("a Rasa server refused the connection; trying the next",
                                extra={"rasa": server.url, "error": str(exc)})
                refused = exc
        raise refused or RasaNotReached("no Rasa server to send to")

    async def _request_one(self, server: RasaServer, method: str, path: str, json: Any,
                           query: dict[str, str]) -> Any:
        server.in_flight += 1
        self.metrics.inc("rasa_requests_total", rasa=server.url)
        try:
            body = None if json is None else jsoncodec.dumps_bytes(json)  # bytes: no payload lookup, no encoding
            if server.turns is not None and method == "POST" and path == REST_WEBHOOK:
                status, raw = await self._post_turn(server, body or b"null")
            else:
                status, raw = await self._send(server, method, path, body, query)
        finally:
            server.in_flight -= 1
        if status >= 500:
            raise RasaUnavailable(f"Rasa answered HTTP {status} to {method} {path}")
        if status >= 400:
            detail = raw[:200].decode("utf-8", "replace")
            raise RasaRejected(f"Rasa answered HTTP {status} to {method} {path}: {detail}")
        try:  # read as UTF-8 JSON whatever the content type says, as Rasa means it
            return jsoncodec.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise RasaRejected(f"Rasa answered invalid JSON to {method} {path}") from exc

    async def _post_turn(self, server: RasaServer, body: bytes) -> tuple[int, bytes]:
        """A turn, on the server's keep-alive connections (bot/keepalive.py)."""
        assert server.turns is not None
        try:
            answer = await server.turns.post(body)
        except NotConnected as exc:
            raise RasaNotReached(f"cannot reach Rasa at {server.url}: {exc}") from exc
        except (ConnectionLost, BadResponse) as exc:
            raise RasaUnavailable(f"no answer from Rasa at {server.url}: {exc}") from exc
        except asyncio.TimeoutError as exc:
            raise RasaUnavailable(f"Rasa did not answer POST {REST_WEBHOOK} in time") from exc
        return answer.status, answer.body

    async def _send(self, server: RasaServer, method: str, path: str, body: bytes | None,
                    query: dict[str, str]) -> tuple[int, bytes]:
        url = server.webhook if path == REST_WEBHOOK else server.url_of(path)
        try:
            async with self.session.request(method, url, data=body, params=query or None,
                                            headers=JSON_HEADERS if body is not None else None) as resp:
                return resp.status, await resp.read()
        except asyncio.TimeoutError as exc:
            raise RasaUnavailable(f"Rasa did not answer {method} {path} in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise RasaNotReached(f"cannot reach Rasa at {server.url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise RasaUnavailable(f"cannot reach Rasa at {server.url}: {exc}") from exc
