"""The running Telegram channel, assembled by `channels.telegram.setup` once it is configured.

`add_channel(app, ctx, config)` composes one aiogram
`Bot` (pointed at TELEGRAM_API_BASE), registers `TelegramOutput` as the "telegram" output,
adds the webhook route (webhook mode) and `/telegram/files/{file_id}`, and hooks the start, once
the port is bound (replay kept updates, then setWebhook or start long polling), and shut-down (stop polling
and intake, refuse further sends, close the bot session). See docs/telegram.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from bot import serving
from bot.plugins import PluginContext
from channels.telegram.config import FILES_PATH, TelegramConfig
from channels.telegram.convert import UpdateConverter
from channels.telegram.files import TelegramFiles
from channels.telegram.input import TelegramInput
from channels.telegram.output import CHANNEL, TelegramOutput
from channels.telegram.state import MemoryTelegramState, RedisTelegramState, TelegramState

log = logging.getLogger("gateway.telegram")

__all__ = ["TELEGRAM_KEY", "TelegramChannel", "add_channel"]


@dataclass(frozen=True)
class TelegramChannel:
    """The running channel's parts (tests and the handoff module reach them via `app[TELEGRAM_KEY]`)."""

    config: TelegramConfig
    bot: Bot
    state: TelegramState
    input: TelegramInput
    output: TelegramOutput


TELEGRAM_KEY = web.AppKey("telegram", TelegramChannel)


def _state(ctx: PluginContext, config: TelegramConfig) -> TelegramState:
    if ctx.redis is None:
        return MemoryTelegramState()
    return RedisTelegramState(ctx.redis, config.bot_id, owns_client=False)


def add_channel(app: web.Application, ctx: PluginContext, config: TelegramConfig) -> None:
    """Compose the channel's parts on `app` and hook its start and shut-down."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(config.api_base),
                             timeout=config.request_timeout_seconds)
    bot = Bot(token=config.token, session=session)
    state = _state(ctx, config)
    output = TelegramOutput(bot, state, ctx.service.metrics, retries=config.send_retries,
                            backoff_seconds=config.retry_backoff_seconds)
    ctx.service.register_output(CHANNEL, output)
    telegram_input = TelegramInput(bot, config, ctx.service, ctx.deduper, ctx.inbox, output,
                                   UpdateConverter(config, state, ctx.settings.max_text_length))
    files = TelegramFiles(bot, state)
    app[TELEGRAM_KEY] = TelegramChannel(config=config, bot=bot, state=state, input=telegram_input, output=output)

    if config.mode == "webhook":
        app.router.add_post(config.webhook_path, telegram_input.webhook)
        ctx.tell_operator(f"  Telegram:           on, webhook at {{base}}{config.webhook_path} (see docs/telegram.md)")
    else:
        ctx.tell_operator("  Telegram:           on, long polling (see docs/telegram.md)")
    app.router.add_get(FILES_PATH + "/{file_id}", files.fetch)

    username: list[str] = []  # the bot's @name, for deep links (getMe once the port is bound)

    def deep_link(code: str, lang: str) -> str | None:
        if not username:
            return None
        return ("Telegram：" if lang == "zh" else "Telegram: ") + f"https://t.me/{username[0]}?start={code}"

    ctx.continuations.add_way(CHANNEL, deep_link)

    async def learn_username() -> None:
        try:
            me = await bot.get_me()
            if me.username:
                username.append(me.username)
        except Exception as exc:  # no deep links until a restart; everything else works
            log.warning("getMe failed: no Telegram deep links", extra={"error": repr(exc)})

    lookups: list[asyncio.Task[None]] = []

    async def on_listening(app: web.Application) -> None:
        # Only once the port is bound: a webhook must never point at a gateway that failed to start.
        await telegram_input.start()  # kept updates first: the deep links' @name can wait
        lookups.append(asyncio.create_task(learn_username(), name="telegram-get-me"))
        log.info("Telegram channel started", extra={"mode": config.mode, "bot_id": config.bot_id})

    async def on_shutdown(app: web.Application) -> None:
        for task in lookups:
            task.cancel()
        await telegram_input.stop()

    async def on_cleanup(app: web.Application) -> None:
        await output.close()
        await bot.session.close()
        await state.close()

    serving.on_listening(app, on_listening)
    serving.every_while_listening(app, "telegram-takeover", ctx.settings.takeover_seconds, telegram_input.replay_pending)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
