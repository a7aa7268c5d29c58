"""Optional channels (Telegram, Slack): each is switched on by its own settings.

Every optional channel package exposes `setup(app, ctx) -> bool`: it reads and validates
its own settings from `ctx.env` (raising `bot.config.ConfigError` with clear messages),
registers its output channel with `ctx.service`, adds its routes and start-up/clean-up
hooks to `app`, and returns False (doing nothing) when it is not configured.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from aiohttp import web

from bot.config import Settings
from bot.conversation import ConversationService
from bot.dedupe import Deduper
from bot.inbox import Inbox

log = logging.getLogger("gateway.channels")

OPTIONAL_CHANNELS = ("channels.telegram", "channels.slack")


@dataclass(frozen=True)
class ChannelContext:
    service: ConversationService
    settings: Settings
    env: Mapping[str, str]
    deduper: Deduper
    inbox: Inbox
    redis: Any = None  # the gateway's shared redis.asyncio client when REDIS_URL is set


class ChannelSetup(Protocol):
    def __call__(self, app: web.Application, ctx: ChannelContext) -> bool: ...


def setup_optional_channels(app: web.Application, ctx: ChannelContext) -> list[str]:
    enabled: list[str] = []
    for module_name in OPTIONAL_CHANNELS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not built yet
            raise
        setup: ChannelSetup | None = getattr(module, "setup", None)
        if setup is not None and setup(app, ctx):
            enabled.append(module_name.rsplit(".", 1)[-1])
    if enabled:
        log.info("optional channels enabled", extra={"channels": enabled})
    return enabled
