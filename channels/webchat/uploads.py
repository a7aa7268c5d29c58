"""Photos and documents a web chat shopper attaches (a damaged parcel, a skin reaction, a
receipt).

`POST /webchat/upload` (multipart field `file`, header `X-Webchat-Token: <session token>`)
stores the file under `DATA_DIR/uploads/` and answers `{"id", "kind", "name", "url"}`; the
shopper then sends a `message` frame with `"attachments": ["<id>"]`. Files are served at
`/webchat/files/<id>?sig=<signature>`: the signature makes the link unguessable, so the
flows and agents can open it while nobody can enumerate other shoppers' files.

A conversation may store at most `UPLOAD_MAX_FILES` files and `UPLOAD_MAX_MB` megabytes,
at `UPLOAD_RATE_PER_MINUTE` after a burst of as many; files older than
`UPLOAD_RETENTION_DAYS` are deleted (at start, then hourly).

On disk each file is sealed (`bot/sealing.py`, bound to its id) and so is its original name
in `<id>.json`; the conversation, kind, type and size stay in clear for the quota count.
Serving opens the file in memory (at most 5 MB). Files stored before sealing are served as
they are.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiohttp import BodyPartReader, web

from bot.i18n import language_of_locale
from bot.messages import Attachment
from bot.ratelimit import TokenBucket
from bot.sealing import DataKeys, Resealed, SealingError
from bot.security import same_secret
from bot.texts import error_body
from channels.webchat.session import SessionSigner

log = logging.getLogger("gateway.webchat")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
ALLOWED_TYPES = {
    "image/jpeg": ("image", ".jpg"), "image/png": ("image", ".png"), "image/webp": ("image", ".webp"),
    "image/gif": ("image", ".gif"), "application/pdf": ("file", ".pdf"),
}
_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 20
    max_bytes: int = 25 * 1024 * 1024
    per_minute: float = 6.0
    retention_seconds: float = 30 * 86400.0


@dataclass
class _Usage:
    """What one conversation has stored, and its upload rate."""

    files: int = 0
    bytes: int = 0
    bucket: TokenBucket | None = field(default=None, repr=False)


MAX_TRACKED_CONVERSATIONS = 50_000


def _refuse(code: str, language: str | None, status: int) -> web.Response:
    """An upload refused with the reason in the shopper's language (the page shows `message`)."""
    return web.json_response(error_body(code, language), status=status)


class Uploads:
    def __init__(self, directory: Path, signer: SessionSigner, secret: str, public_url: str = "", *,
                 keys: DataKeys, language_of: Callable[[str], str] = lambda conversation_id: "en",
                 limits: UploadLimits = UploadLimits()) -> None:
        self.keys = keys
        self.language_of = language_of  # conversation id -> its language, for the error texts
        self.limits = limits
        self._usage: OrderedDict[str, _Usage] | None = None  # built from the files on disk on first use
        self._lock = asyncio.Lock()
        self.directory = directory
        self.signer = signer
        self._key = hashlib.sha256(f"webchat-files:{secret}".encode()).digest()
        self.public_url = public_url.rstrip("/")

    def _sig(self, file_id: str) -> str:
        digest = hmac.new(self._key, file_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        return self.directory / file_id, self.directory / f"{file_id}.json"

    def url(self, request: web.Request | None, file_id: str) -> str:
        base = self.public_url or (f"{request.scheme}://{request.host}" if request is not None else "")
        return f"{base}/webchat/files/{file_id}?sig={self._sig(file_id)}"

    def _meta(self, file_id: str) -> dict[str, object] | None:
        """The file's meta, its name opened; None when there is none or it cannot be opened."""
        try:
            meta = json.loads(self._paths(file_id)[1].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        try:
            meta["name"] = self.keys.open_text(str(meta.get("name") or ""), f"upload:{file_id}:name")
        except SealingError as exc:
            log.error("an upload's meta cannot be opened", extra={"file": file_id, "error": str(exc)})
            return None
        return meta

    def read_sync(self, file_id: str) -> bytes:
        """The file's bytes, opened (`SealingError` if they cannot be)."""
        return self.keys.open_bytes(self._paths(file_id)[0].read_bytes(), f"upload:{file_id}")

    async def attachment(self, request: web.Request, conversation_id: str, file_id: object) -> Attachment | None:
        """The attachment for an id this conversation uploaded, else None."""
        if not isinstance(file_id, str) or not _ID.match(file_id):
            return None
        meta = await asyncio.to_thread(self._meta, file_id)
        if meta is None:
            return None
        if meta.get("conversation_id") != conversation_id:
            return None
        size = meta.get("size")
        return Attachment(kind=str(meta["kind"]), url=self.url(request, file_id), name=str(meta.get("name") or ""),
                          mime_type=str(meta.get("mime_type") or ""), size=size if isinstance(size, int) else None)

    async def upload(self, request: web.Request) -> web.Response:
        conversation_id = self.signer.verify(request.headers.get("X-Webchat-Token"))
        if conversation_id is None:
            browser = language_of_locale(request.headers.get("Accept-Language", "")[:20])
            return _refuse("unauthorized", browser, 401)
        language = self.language_of(conversation_id)
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 64 * 1024:
            return _refuse("too_large", language, 413)
        usage = await self._usage_of(conversation_id)
        if usage.files >= self.limits.max_files or usage.bytes >= self.limits.max_bytes:
            return _refuse("upload_quota", language, 429)
        assert usage.bucket is not None
        if not usage.bucket.allow():
            return web.json_response(error_body("upload_rate", language), status=429, headers={"Retry-After": "60"})
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError):
            return _refuse("invalid_upload", language, 400)
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
        if part is None or not isinstance(part, BodyPartReader):
            return _refuse("invalid_upload", language, 400)
        mime = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if mime not in ALLOWED_TYPES:
            return _refuse("unsupported_type", language, 415)
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return _refuse("too_large", language, 413)
        if not data:
            return _refuse("invalid_upload", language, 400)
        if usage.bytes + len(data) > self.limits.max_bytes:
            return _refuse("upload_quota", language, 429)
        kind, _ = ALLOWED_TYPES[mime]
        file_id = uuid.uuid4().hex
        name = (part.filename or "attachment")[-100:]
        meta = {"conversation_id": conversation_id, "kind": kind, "name": name, "mime_type": mime, "size": len(data)}
        await asyncio.to_thread(self._store, file_id, bytes(data), meta)
        usage.files += 1
        usage.bytes += len(data)
        log.info("web chat upload stored", extra={"conversation": conversation_id, "size": len(data),
                                                  "mime": mime})
        return web.json_response({"id": file_id, "kind": kind, "name": name, "url": self.url(request, file_id)})

    # -- quota and expiry -----------------------------------------------------------------

    async def _usage_of(self, conversation_id: str) -> _Usage:
        async with self._lock:
            if self._usage is None:
                self._usage = await asyncio.to_thread(self._scan)
            usage = self._usage.get(conversation_id)
            if usage is None:
                usage = self._usage[conversation_id] = _Usage()
                while len(self._usage) > MAX_TRACKED_CONVERSATIONS:  # bounded; disk is the truth
                    self._usage.popitem(last=False)
            else:
                self._usage.move_to_end(conversation_id)
            if usage.bucket is None:
                per_minute = self.limits.per_minute
                usage.bucket = TokenBucket(max(1, int(per_minute)), per_minute / 60.0)
            return usage

    def _scan(self) -> OrderedDict[str, _Usage]:
        """What every conversation has on disk (the gateway may have restarted)."""
        usage: OrderedDict[str, _Usage] = OrderedDict()
        if not self.directory.is_dir():
            return usage
        for meta_path in self.directory.glob("*.json"):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and isinstance(meta.get("conversation_id"), str):
                entry = usage.setdefault(meta["conversation_id"], _Usage())
                entry.files += 1
                entry.bytes += int(meta.get("size") or 0)
        return usage

    async def expire(self, now: float | None = None) -> int:
        """Delete the files older than the retention period; how many went."""
        removed = await asyncio.to_thread(self._expire, time.time() if now is None else now)
        if removed:
            async with self._lock:
                self._usage = None  # recounted from disk on the next upload
            log.info("old web chat uploads deleted", extra={"count": removed})
        return removed

    def _expire(self, now: float) -> int:
        if not self.directory.is_dir():
            return 0
        cutoff, removed = now - self.limits.retention_seconds, 0
        for meta_path in self.directory.glob("*.json"):
            try:
                if meta_path.stat().st_mtime >= cutoff:
                    continue
                meta_path.with_suffix("").unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                removed += 1
            except OSError:
                continue
        return removed

    def _store(self, file_id: str, data: bytes, meta: dict[str, object]) -> None:
        file_path, meta_path = self._paths(file_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        file_path.write_bytes(self.keys.seal_bytes(data, f"upload:{file_id}"))
        sealed = {**meta, "name": self.keys.seal_text(str(meta.get("name") or ""), f"upload:{file_id}:name")}
        meta_path.write_text(json.dumps(sealed), encoding="utf-8")

    # -- a shopper's requests, key rotation (the CLI; worker threads) --------------------------

    def files_of_sync(self, conversation_id: str) -> list[tuple[str, dict[str, object]]]:
        """(id, meta with the name opened) of every file this web chat conversation stored."""
        found: list[tuple[str, dict[str, object]]] = []
        if not self.directory.is_dir():
            return found
        for meta_path in sorted(self.directory.glob("*.json")):
            file_id = meta_path.stem
            if not _ID.match(file_id):
                continue
            meta = self._meta(file_id)
            if meta is not None and meta.get("conversation_id") == conversation_id:
                found.append((file_id, meta))
        return found

    def erase_sync(self, conversation_id: str) -> int:
        """Delete every file this conversation stored; how many."""
        files = self.files_of_sync(conversation_id)
        for file_id, _ in files:
            file_path, meta_path = self._paths(file_id)
            file_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
        return len(files)

    def reseal_sync(self) -> Resealed:
        """Seal every file and name with the newest key (a file that does not open is left as
        it is and counted). The meta's time is kept, so re-sealing does not extend a file's
        retention."""
        done = Resealed()
        if not self.directory.is_dir():
            return done
        for meta_path in sorted(self.directory.glob("*.json")):
            file_id = meta_path.stem
            if not _ID.match(file_id) or not self._paths(file_id)[0].is_file():
                continue
            try:
                done.rewritten += self._reseal_file(file_id)
            except SealingError as exc:
                done.skip(f"upload {file_id}", exc)
            except (OSError, ValueError):
                continue  # deleted meanwhile (expiry, an erasure)
        return done

    def _reseal_file(self, file_id: str) -> int:
        file_path, meta_path = self._paths(file_id)
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
        data = file_path.read_bytes()
        if self.keys.bytes_are_current(data) and self.keys.text_is_current(str(raw.get("name") or "")):
            return 0
        stat = meta_path.stat()
        name = self.keys.open_text(str(raw.get("name") or ""), f"upload:{file_id}:name")
        sealed = self.keys.seal_bytes(self.keys.open_bytes(data, f"upload:{file_id}"), f"upload:{file_id}")
        temporary = file_path.with_name(file_id + ".tmp")
        temporary.write_bytes(sealed)
        os.replace(temporary, file_path)
        raw["name"] = self.keys.seal_text(name, f"upload:{file_id}:name")
        temporary = meta_path.with_name(file_id + ".json.tmp")
        temporary.write_text(json.dumps(raw), encoding="utf-8")
        os.replace(temporary, meta_path)
        os.utime(meta_path, (stat.st_atime, stat.st_mtime))
        return 1

    async def serve(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        sig = request.query.get("sig", "")
        if not _ID.match(file_id) or not same_secret(sig, self._sig(file_id)):
            raise web.HTTPNotFound()
        meta = await asyncio.to_thread(self._meta, file_id)
        if meta is None:
            raise web.HTTPNotFound()
        try:
            body = await asyncio.to_thread(self.read_sync, file_id)
        except OSError:
            raise web.HTTPNotFound() from None
        except SealingError as exc:
            log.error("an upload cannot be opened", extra={"file": file_id, "error": str(exc)})
            raise web.HTTPNotFound() from None
        return web.Response(body=body, headers={
            "Content-Type": str(meta["mime_type"]), "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline", "Cache-Control": "private, max-age=3600"})
