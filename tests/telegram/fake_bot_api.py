"""A fake Telegram Bot API server for the tests: a real aiohttp app on a free port that the real
aiogram client talks to (`TELEGRAM_API_BASE`).

- Implements the methods the gateway uses: getMe, setWebhook, deleteWebhook, getUpdates
  (long-poll style, confirms updates below `offset`, 409 while a webhook is set, as
  Telegram does), sendMessage, sendPhoto, sendChatAction, answerCallbackQuery,
  editMessageReplyMarkup, getFile, and the file download path.
- Checks what Telegram checks where a mistake would hurt shoppers: text length (4096
  UTF-16 units), empty text, `callback_data` of at most 64 bytes, the bot token.
- Records every call with its parameters and the status it answered.
- `fail_next(method, count, status=429|403|500, retry_after=...)` makes the next calls fail.
- Builds updates shaped as the Bot API documents them, and delivers them to the webhook the
  gateway registered (with the secret header), or queues them for getUpdates.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
LONG_POLL_CAP_SECONDS = 1.0


@dataclass
class Call:
    """One request the gateway made, as the fake saw and answered it."""

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


class _ApiError(Exception):
    """What a handler raises to answer like Telegram does on an error."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None


@dataclass
class FakeBotAPI:
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_statuses: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(700_000_001)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._messages: dict[tuple[str, int], dict[str, Any]] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    # -- server --------------------------------------------------------------------------

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._client = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the tests control ----------------------------------------------------------

    def fail_next(self, method: str, count: int = 1, *, status: int = 429, retry_after: int | None = None,
                  description: str | None = None) -> None:
        """Answer the next `count` calls of `method` with an error, as Telegram words them."""
        default = {429: "Too Many Requests: retry after {}", 403: "Forbidden: bot was blocked by the user",
                   500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error")
        text = description or default.format(retry_after)
        self._failures.setdefault(method, []).extend(
            _Failure(status, text, retry_after if status == 429 else None) for _ in range(count))

    def recover(self) -> None:
        """Telegram is back: no more injected failures."""
        self._failures.clear()

    def add_file(self, file_id: str, content: bytes, file_path: str) -> None:
        """A file Telegram holds (a shopper's photo or document)."""
        self._files[file_id] = (content, file_path)

    def queue_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Make an update available to getUpdates (long polling)."""
        self._updates.append(update)
        self._signal()
        return update

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates getUpdates would still serve (not confirmed by a higher offset yet)."""
        return list(self._updates)

    async def deliver(self, update: dict[str, Any], *, secret: str | None = None) -> int:
        """POST an update to the registered webhook as Telegram does; the HTTP status it got."""
        assert self._client is not None and self.webhook_url, "no webhook registered"
        headers = {SECRET_HEADER: self.webhook_secret if secret is None else secret}
        async with self._client.post(self.webhook_url, json=update, headers=headers) as resp:
            self.webhook_statuses.append(resp.status)
            return resp.status

    # -- reading what happened -----------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent(self, chat_id: int, *, ok_only: bool = True) -> list[Call]:
        """sendMessage/sendPhoto calls for a chat, in the order they reached the fake."""
        return [c for c in self.calls if c.method in ("sendMessage", "sendPhoto")
                and str(c.params.get("chat_id")) == str(chat_id) and (c.ok or not ok_only)]

    def texts(self, chat_id: int) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.sent(chat_id) if c.method == "sendMessage"]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The message as a shopper would see it now (after any edits)."""
        return self._messages[(str(chat_id), message_id)]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait for `condition` (checked whenever a call arrives)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.2)
                except TimeoutError:
                    pass

    async def wait_sent(self, chat_id: int, count: int = 1, timeout: float = 30.0) -> list[Call]:
        """The first `count` successful sends to a chat, waiting for them."""
        try:
            await self.wait_until(lambda: len(self.sent(chat_id)) >= count, timeout)
        except TimeoutError:
            raise AssertionError(f"expected {count} messages to chat {chat_id}, got "
                                 f"{[c.params for c in self.sent(chat_id)]}") from None
        return self.sent(chat_id)[:count]

    # -- updates as the Bot API documents them -------------------------------------------

    def next_update_id(self) -> int:
        return next(self._update_ids)

    @staticmethod
    def shopper(chat_id: int, language_code: str | None = "en") -> dict[str, Any]:
        user: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": "Ana"}
        if language_code:
            user["language_code"] = language_code
        return user

    def _message_update(self, chat_id: int, language_code: str | None, **fields: Any) -> dict[str, Any]:
        return {"update_id": self.next_update_id(), "message": {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Ana"},
            "from": self.shopper(chat_id, language_code), **fields}}

    def text_update(self, chat_id: int, text: str, language_code: str | None = "en") -> dict[str, Any]:
        return self._message_update(chat_id, language_code, text=text)

    def photo_update(self, chat_id: int, file_id: str, caption: str | None = None,
                     language_code: str = "en", media_group_id: str | None = None) -> dict[str, Any]:
        """A photo in the sizes Telegram generates (the last is the largest); photos of one
        album arrive as separate updates sharing a `media_group_id`."""
        sizes = [{"file_id": f"{file_id}-thumb", "file_unique_id": f"{file_id}-t", "width": 90, "height": 67,
                  "file_size": 1200},
                 {"file_id": file_id, "file_unique_id": f"{file_id}-u", "width": 1280, "height": 960,
                  "file_size": len(self._files.get(file_id, (b"",))[0])}]
        fields: dict[str, Any] = {"photo": sizes}
        if caption is not None:
            fields["caption"] = caption
        if media_group_id is not None:
            fields["media_group_id"] = media_group_id
        return self._message_update(chat_id, language_code, **fields)

    def document_update(self, chat_id: int, file_id: str, file_name: str, mime_type: str,
                        caption: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"document": {"file_id": file_id, "file_unique_id": f"{file_id}-u",
                                               "file_name": file_name, "mime_type": mime_type,
                                               "file_size": len(self._files.get(file_id, (b"",))[0])}}
        if caption is not None:
            fields["caption"] = caption
        return self._message_update(chat_id, "en", **fields)

    def press_update(self, chat_id: int, title: str, language_code: str = "en") -> dict[str, Any]:
        """The shopper presses the button labelled `title` on the newest message that shows it."""
        for (chat, _), message in reversed(list(self._messages.items())):
            if chat != str(chat_id):
                continue
            for row in message.get("reply_markup", {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == title:
                        return {"update_id": self.next_update_id(), "callback_query": {
                            "id": f"cbq-{next(self._callback_ids)}", "from": self.shopper(chat_id, language_code),
                            "message": json.loads(json.dumps(message)), "chat_instance": f"ci-{chat_id}",
                            "data": button["callback_data"]}}
        raise AssertionError(f"no message in chat {chat_id} shows a button {title!r}")

    def membership_update(self, chat_id: int, status: str) -> dict[str, Any]:
        """my_chat_member: the shopper blocked (`kicked`) or unblocked (`member`) the bot."""
        bot = {"id": self.bot_id, "is_bot": True, "first_name": "Shop"}
        old = "member" if status == "kicked" else "kicked"
        member = {"member": {"status": "member", "user": bot},
                  "kicked": {"status": "kicked", "user": bot, "until_date": 0}}
        return {"update_id": self.next_update_id(), "my_chat_member": {
            "chat": {"id": chat_id, "type": "private", "first_name": "Ana"},
            "from": self.shopper(chat_id), "date": int(time.time()),
            "old_chat_member": member[old], "new_chat_member": member[status]}}

    # -- the API -------------------------------------------------------------------------

    def _signal(self) -> None:
        self._changed.set()

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.body_exists:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key, value in list(params.items()):
            if isinstance(value, str) and value[:1] in ("{", "["):
                params[key] = json.loads(value)
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method=method, params=params, at=time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                return self._error(call, 401, "Unauthorized")
            queued = self._failures.get(method)
            if queued:
                failure = queued.pop(0)
                return self._error(call, failure.status, failure.description, failure.retry_after)
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                return self._error(call, 404, "Not Found: method not found")
            try:
                result = await handler(params)
            except _ApiError as exc:
                return self._error(call, exc.status, exc.description)
            call.result = result
            return web.json_response({"ok": True, "result": result})
        finally:
            self._signal()

    def _error(self, call: Call, status: int, description: str, retry_after: int | None = None) -> web.Response:
        call.status = status
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    @staticmethod
    def _bad_request(description: str) -> _ApiError:
        return _ApiError(400, f"Bad Request: {description}")

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for content, file_path in self._files.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.Response(status=404)

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Shop", "username": "shop_test_bot"}

    def _store(self, chat_id: str, **fields: Any) -> dict[str, Any]:
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": {"id": int(chat_id), "type": "private", "first_name": "Ana"},
                   "from": self._bot_user(), **fields}
        self._messages[(str(chat_id), message["message_id"])] = message
        return message

    @staticmethod
    def _utf16(text: str) -> int:
        return len(text.encode("utf-16-le")) // 2

    def _check_markup(self, markup: Any) -> str | None:
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode("utf-8")) <= 64:
                    return "BUTTON_DATA_INVALID"
        return None

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return self._bot_user()

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = str(params.get("secret_token", ""))
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook_url = self.webhook_secret = ""
        return True

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook_url:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                 "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset", 0) or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        wait = min(float(params.get("timeout", 0) or 0), LONG_POLL_CAP_SECONDS)
        deadline = time.monotonic() + wait
        while not self._updates and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        limit = int(params.get("limit", 100) or 100)
        return self._updates[:limit]

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        text = str(params.get("text", ""))
        if not text.strip():
            raise self._bad_request("message text is empty")
        if self._utf16(text) > 4096:
            raise self._bad_request("message is too long")
        if problem := self._check_markup(params.get("reply_markup")):
            raise self._bad_request(problem)
        fields: dict[str, Any] = {"text": text}
        if params.get("reply_markup"):
            fields["reply_markup"] = params["reply_markup"]
        return self._store(str(params["chat_id"]), **fields)

    async def _m_sendphoto(self, params: dict[str, Any]) -> Any:
        photo = str(params.get("photo", ""))
        if not photo.startswith(("http://", "https://")):
            raise self._bad_request("wrong remote file identifier specified")
        n = len(self._messages) + 1
        return self._store(str(params["chat_id"]), photo=[{"file_id": f"sent-{n}", "file_unique_id": f"s{n}",
                                                          "width": 800, "height": 600}])

    async def _m_sendchataction(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> Any:
        key = (str(params.get("chat_id")), int(params.get("message_id", 0)))
        message = self._messages.get(key)
        if message is None:
            raise self._bad_request("message to edit not found")
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        elif "reply_markup" in message:
            del message["reply_markup"]
        else:
            raise self._bad_request("message is not modified")
        return message

    async def _m_getfile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id", ""))
        if file_id not in self._files:
            raise self._bad_request("invalid file_id")
        content, path = self._files[file_id]
        return {"file_id": file_id, "file_unique_id": f"{file_id}-u", "file_size": len(content), "file_path": path}
