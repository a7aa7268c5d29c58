"""The Telegram channel (optional): on when TELEGRAM_BOT_TOKEN is set.

`setup(app, ctx)` follows the contract in bot/plugins.py: it reads the channel's settings and,
only when Telegram is configured, imports and assembles the channel (channels/telegram/channel.py).
aiogram is imported there and nowhere on the way to it: its models take about 3 s to import and
some 130 MB per gateway process, which a shop without Telegram should not pay. See docs/telegram.md.
"""

from __future__ import annotations

from aiohttp import web

from bot.plugins import PluginContext
from channels.telegram.config import load_telegram_config

__all__ = ["setup"]


def setup(app: web.Application, ctx: PluginContext) -> bool:
    """Switch the Telegram channel on when configured; False (nothing done) when it is not."""
    config = load_telegram_config(ctx.env, ctx.settings)
    if config is None:
        return False
    from channels.telegram.channel import add_channel  # aiogram only when Telegram is on

    add_channel(app, ctx, config)
    return True
