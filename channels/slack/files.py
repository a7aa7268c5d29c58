"""Files shoppers share in Slack, relayed through the gateway.

Slack's `url_private` needs the bot token, so the conversation gets a gateway link instead:
`/slack/files/<file id>?sig=<hmac>`. The signature is made from the bot token and the file
id, and only for ids that arrived in an inbound event: the route is not an open proxy, and
links keep working after a restart (the file's address is then looked up with files.info).
The download is streamed from Slack with the bot token, never buffered whole.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from typing import Iterable
from urllib.parse import quote, urlsplit

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.security import same_secret
from channels.slack.config import FILES_PATH
from channels.slack.convert import SlackFile
from channels.slack.logtext import LogText, log
from channels.slack.session import SharedSession

_FILE_ID = re.compile(r"^F[A-Z0-9]{2,31}$")
_INLINE_TYPES = ("image/", "audio/", "video/", "application/pdf", "text/plain")
CHUNK_BYTES = 64 * 1024


class FileLinks:
    """Signs and checks the gateway links of shared files."""

    def __init__(self, bot_token: str, base_url: str) -> None:
        self._key = hmac.new(bot_token.encode(), b"aftersales-gateway slack file links", hashlib.sha256).digest()
        self._base = base_url.rstrip("/")

    def signature(self, file_id: str) -> str:
        return hmac.new(self._key, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, file_id: str) -> str:
        return f"{self._base}{FILES_PATH}/{quote(file_id)}?sig={self.signature(file_id)}"

    def valid(self, file_id: str, signature: str) -> bool:
        return bool(_FILE_ID.match(file_id)) and same_secret(signature, self.signature(file_id))


def slack_hosts(api_base: str) -> tuple[str, ...]:
    """Hosts a file's url_private may point at: Slack's, and the configured API host."""
    return ("slack.com", urlsplit(api_base).netloc.lower())


def _host_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    host = parts.netloc.lower()
    if host in hosts[1:]:
        return parts.scheme in ("http", "https")
    return parts.scheme == "https" and (host == hosts[0] or host.endswith("." + hosts[0]))


def _disposition(file: SlackFile, mime_type: str) -> str:
    kind = "inline" if mime_type.startswith(_INLINE_TYPES) else "attachment"
    name = re.sub(r"[^\w.\- ]", "_", file.name or file.file_id)[:100]
    return f'{kind}; filename="{name}"'


class SlackFiles:
    """Remembers shared files and serves `GET /slack/files/{file_id}`."""

    def __init__(self, client: AsyncWebClient, links: FileLinks, hosts: tuple[str, ...],
                 session: SharedSession, max_known: int = 10_000) -> None:
        self.client = client
        self.links = links
        self._hosts = hosts
        self._session = session
        self._known: OrderedDict[str, SlackFile] = OrderedDict()
        self._max_known = max_known

    def remember(self, files: Iterable[SlackFile]) -> None:
        for file in files:
            self._known[file.file_id] = file
            self._known.move_to_end(file.file_id)
        while len(self._known) > self._max_known:
            self._known.popitem(last=False)

    async def _lookup(self, file_id: str) -> SlackFile | None:
        known = self._known.get(file_id)
        if known is not None and known.url_private:
            return known
        try:
            info = await self.client.files_info(file=file_id)
        except Exception as exc:
            log.warning(LogText.FILE_LOOKUP_FAILED, extra={"file_id": file_id, "error": repr(exc)})
            return None
        raw = info.get("file")
        found = SlackFile.from_payload(raw) if isinstance(raw, dict) else None
        if found is not None:
            self.remember([found])
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Relay a shared file's bytes from Slack; 404 for ids the gateway did not hand out."""
        file_id = request.match_info["file_id"]
        if not self.links.valid(file_id, request.query.get("sig", "")):
            log.info(LogText.FILE_REFUSED, extra={"reason": "unknown_or_unsigned"})
            raise web.HTTPNotFound(text="no such file")
        file = await self._lookup(file_id)
        if file is None or not file.url_private or not _host_allowed(file.url_private, self._hosts):
            log.info(LogText.FILE_REFUSED, extra={"reason": "no_slack_url", "file_id": file_id})
            raise web.HTTPNotFound(text="no such file")
        return await self._relay(request, file)

    async def _relay(self, request: web.Request, file: SlackFile) -> web.StreamResponse:
        assert file.url_private is not None
        headers = {"Authorization": f"Bearer {self.client.token}"}
        async with self._session.get().get(file.url_private, headers=headers) as upstream:
            upstream_type = upstream.headers.get("Content-Type", "").split(";")[0].strip()
            login_page = upstream_type == "text/html" and file.mime_type != "text/html"
            if upstream.status != 200 or login_page:
                log.warning(LogText.FILE_UPSTREAM_FAILED, extra={"file_id": file.file_id, "status": upstream.status})
                raise web.HTTPBadGateway(text="Slack did not hand out the file")
            mime_type = file.mime_type or upstream_type or "application/octet-stream"
            response = web.StreamResponse(headers={
                "Content-Type": mime_type,
                "Content-Disposition": _disposition(file, mime_type),
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
            })
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
        log.info(LogText.FILE_SERVED, extra={"file_id": file.file_id})
        return response
