"""`GET /telegram/files/<file_id>`: the photos and documents shoppers sent, for flows and agents.

Attachments reach the conversation with this URL (Telegram's own file links carry the bot
token and expire). Only file ids the gateway saw in an inbound update are served, so the
endpoint is no open proxy to Telegram: the gateway resolves getFile and streams the bytes
from the Bot API's file endpoint.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from typing import Any
from urllib.parse import quote

import aiohttp
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramNotFound
from aiohttp import web

from channels.telegram.state import TelegramState

log = logging.getLogger("gateway.telegram")

DOWNLOAD_TIMEOUT_SECONDS = 60
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*$")
INLINE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _describe(exc: BaseException) -> str:
    """An error without the file URL (it contains the bot token)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: HTTP {exc.status}"
    return type(exc).__name__


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class TelegramFiles:
    """Serves files shoppers sent on Telegram, by file id, streaming them from the Bot API."""

    def __init__(self, bot: Bot, state: TelegramState) -> None:
        self.bot = bot
        self.state = state

    async def fetch(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        info = await self.state.file_info(file_id)
        if info is None:
            return _error(404, "unknown_file", "no shopper sent a file with this id")
        try:
            telegram_file = await self.bot.get_file(file_id)
        except (TelegramBadRequest, TelegramNotFound) as exc:
            log.info("Telegram no longer has this file", extra={"error": exc.message})
            return _error(404, "file_gone", "Telegram no longer has this file")
        except TelegramAPIError as exc:
            log.warning("cannot reach Telegram for a file", extra={"error": str(exc)})
            return _error(502, "telegram_unavailable", "Telegram did not answer; try again later")
        if not telegram_file.file_path:
            return _error(404, "file_too_big", "Telegram does not hand out files this large to bots")
        url = self.bot.session.api.file_url(self.bot.token, telegram_file.file_path)
        return await self._stream(request, url, info, telegram_file.file_path, telegram_file.file_size)

    async def _stream(self, request: web.Request, url: str, info: dict[str, Any], path: str,
                      size: int | None) -> web.StreamResponse:
        chunks = self.bot.session.stream_content(url=url, timeout=DOWNLOAD_TIMEOUT_SECONDS, raise_for_status=True)
        try:
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = b""
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("cannot download a file from Telegram", extra={"error": _describe(exc)})
                return _error(502, "telegram_unavailable", "Telegram did not hand out the file; try again later")
            response = web.StreamResponse(headers=self._headers(info, path))
            if size is not None:
                response.content_length = size  # a cut-off download shows as incomplete
            await response.prepare(request)
            await response.write(first)
            try:
                async for chunk in chunks:
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("file download from Telegram broke off", extra={"error": _describe(exc)})
                response.force_close()
                return response
            await response.write_eof()
            return response
        finally:
            await chunks.aclose()

    @staticmethod
    def _headers(info: dict[str, Any], path: str) -> dict[str, str]:
        """Raster images display inline; anything else downloads (a shopper's file never runs as a page)."""
        mime = str(info.get("mime_type") or mimetypes.guess_type(path)[0] or "")
        if not _MIME.match(mime):
            mime = "application/octet-stream"
        headers = {"Content-Type": mime, "Cache-Control": "private, max-age=3600",
                   "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; sandbox"}
        disposition = "inline" if mime in INLINE_TYPES else "attachment"
        name = info.get("name")
        if isinstance(name, str) and name:
            clean = "".join(c for c in name if c.isprintable() and c not in '"\\')
            ascii_name = clean.encode("ascii", "replace").decode("ascii").replace("?", "_")
            headers["Content-Disposition"] = (f'{disposition}; filename="{ascii_name}"; '
                                              f"filename*=UTF-8''{quote(clean)}")
        else:
            headers["Content-Disposition"] = disposition
        return headers
