"""Fixtures for the Telegram channel: a fake Bot API server, and real gateways (in front of the
test's fake Rasa) whose real aiogram client is pointed at it."""

from __future__ import annotations

import random
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from channels.telegram.channel import TELEGRAM_KEY, TelegramChannel
from tests.conftest import RunningGateway, free_port, make_settings, settled, start_gateway
from tests.telegram.fake_bot_api import FakeBotAPI

WEBHOOK_SECRET = "test_webhook_secret_" + "s" * 20


def new_token() -> str:
    """A token shaped like BotFather's, with a fresh bot id (Redis keys are per bot)."""
    return f"{random.randint(10**8, 10**9 - 1)}:AA{secrets.token_urlsafe(24)}"


def new_chat_id() -> int:
    """A fresh chat per test: a real Rasa keeps one tracker per chat for the whole run."""
    return random.randint(10**9, 2 * 10**9)


@dataclass
class TelegramGateway:
    """A running gateway with the Telegram channel on, and the fake Telegram it talks to."""

    gateway: RunningGateway
    runner: web.AppRunner
    fake: FakeBotAPI
    stopped: bool = False

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def channel(self) -> TelegramChannel:
        return self.gateway.app[TELEGRAM_KEY]

    async def post_webhook(self, update: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        """POST to the gateway's webhook directly (e.g. with a forged or missing secret)."""
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/telegram/webhook", json=update, headers=headers or {}) as resp:
                return resp.status

    def busy(self) -> bool:
        """Telegram still has updates for the gateway (polling), or an update it accepted is
        still being converted, answered or marked done (channels/telegram/input.py `process`)."""
        in_flight = [t for t in list(self.channel.input._tasks)
                     if t.get_name().startswith(("telegram-update:", "telegram-replay:")) and not t.done()]
        return bool(in_flight or self.fake.pending_updates())

    async def settled(self) -> None:
        """Until the gateway has finished every update it accepted and every turn (tests/conftest.py
        `settled`): what it would still send has reached the fake; asserting "nothing more" is safe."""
        await settled(self.gateway.service, self.busy)

    async def stop(self) -> None:
        """Stop the gateway as `Ctrl-C` would (idempotent)."""
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()


@asynccontextmanager
async def telegram_gateway(tmp_path: Path, rasa_url: str, fake: FakeBotAPI, *, mode: str = "webhook",
                           redis_url: str = "", **env: str) -> AsyncIterator[TelegramGateway]:
    """Start a gateway with Telegram configured against `fake`; stopped on exit (if not already)."""
    port = free_port()
    environ = {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE": fake.base_url,
        "TELEGRAM_MODE": mode,
        "TELEGRAM_POLL_TIMEOUT_SECONDS": "1",
        "TELEGRAM_RETRY_BACKOFF_SECONDS": "0.1",
        **({"TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET} if mode == "webhook" else {}),
        **env,
    }
    settings = make_settings(tmp_path, rasa_url, port=port, public_url=f"http://127.0.0.1:{port}",
                             redis_url=redis_url, environ=environ)
    running, runner = await start_gateway(settings)
    tg = TelegramGateway(running, runner, fake)
    try:
        if mode == "webhook":
            await fake.wait_until(lambda: bool(fake.webhook_url), timeout=10)
        yield tg
    finally:
        await tg.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    api = FakeBotAPI(token=new_token())
    await api.start()
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def tg(rasa_url: str, tmp_path: Path, fake: FakeBotAPI) -> AsyncIterator[TelegramGateway]:
    """A webhook-mode gateway (memory deduper/inbox) in front of the fake Rasa (`rasa_url`)."""
    async with telegram_gateway(tmp_path, rasa_url, fake) as running:
        yield running


@pytest.fixture
def chat_id() -> int:
    return new_chat_id()
