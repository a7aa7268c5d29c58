"""Slack: shoppers who are businesses talk to the shop's app in direct messages and (Slack
Connect) channels. Events API over HTTP, or Socket Mode; see docs/slack.md.

`setup(app, ctx)` is the optional-channel contract (bot/plugins.py): it reads
SLACK_* from `ctx.env`, returns False when Slack is not configured, raises
`bot.config.ConfigError` when it is configured wrongly, and otherwise registers the
`slack` output channel, the routes (`POST /slack/events` in http mode,
`GET /slack/files/{file_id}` always) and the start-up/clean-up hooks.
"""

from __future__ import annotations

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot import serving
from bot.config import Settings
from bot.plugins import PluginContext
from channels.slack.config import EVENTS_PATH, FILES_PATH, SlackConfig, load_slack_config
from channels.slack.convert import CHANNEL
from channels.slack.files import FileLinks, SlackFiles, slack_hosts
from channels.slack.intake import SlackIntake
from channels.slack.logtext import LogText, log
from channels.slack.output import SlackOutput
from channels.slack.runtime import SlackRuntime, build_bolt_app
from channels.slack.session import SharedSession
from channels.slack.staff import SlackStaffRoom

SLACK_KEY = web.AppKey("slack", SlackRuntime)

__all__ = ["SLACK_KEY", "SlackRuntime", "setup"]


def gateway_base_url(settings: Settings) -> str:
    """The URL the gateway is reached at (for file links handed to the assistant and agents)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def build_runtime(config: SlackConfig, ctx: PluginContext) -> SlackRuntime:
    """Wire client, output, file relay, intake and Bolt app together (no I/O yet)."""
    client = AsyncWebClient(token=config.bot_token, base_url=config.api_base)
    output = SlackOutput(client)
    session = SharedSession(client)
    files = SlackFiles(client, FileLinks(config.bot_token, gateway_base_url(ctx.settings)),
                       slack_hosts(config.api_base), session)
    intake = SlackIntake(ctx.service, ctx.deduper, ctx.inbox, output, files, ctx.settings.max_text_length,
                         locale=config.locale)
    return SlackRuntime(config, client, build_bolt_app(config, client, intake), intake, ctx.service, session)


def setup(app: web.Application, ctx: PluginContext) -> bool:
    """Switch the Slack channel on when SLACK_* settings are present (see module doc)."""
    config = load_slack_config(ctx.env)
    if config is None:
        return False
    runtime = build_runtime(config, ctx)
    ctx.service.register_output(CHANNEL, runtime.intake.output)
    if config.agents_channel:
        room = SlackStaffRoom(runtime.intake.output, config.agents_channel, dict(config.agent_users))
        ctx.staff.add_room(room)
        runtime.intake.staff = (room, ctx.staff)
        ctx.tell_operator(f"  Slack agents:       handoff threads in {config.agents_channel}")
    ctx.continuations.add_way(CHANNEL, lambda code, lang: (
        f"Slack：给本店的 App 发消息“continue {code}”" if lang == "zh"
        else f"Slack: send the shop's app the message \"continue {code}\""))
    app[SLACK_KEY] = runtime
    if config.mode == "http":
        app.router.add_post(EVENTS_PATH, runtime.handle_events)
        ctx.tell_operator(f"  Slack:              on, events at {{base}}{EVENTS_PATH} (see docs/slack.md)")
    else:
        ctx.tell_operator("  Slack:              on, Socket Mode (see docs/slack.md)")
    app.router.add_get(FILES_PATH + "/{file_id}", runtime.intake.files.handle)
    app.on_startup.append(runtime.on_startup)
    serving.on_listening(app, runtime.on_listening)
    serving.every_while_listening(app, "slack-takeover", ctx.settings.takeover_seconds, runtime.intake.replay)
    app.on_shutdown.append(runtime.on_shutdown)
    app.on_cleanup.append(runtime.on_cleanup)
    log.info(LogText.ENABLED, extra=runtime.describe())
    return True
