"""The Slack channel's settings: a declared schema, read from `ctx.env` and validated.

The channel is on when any of SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN or
SLACK_MODE is set; then everything it needs must be valid, and every problem is reported
at once (`bot.config.ConfigError`), naming the variable and where in Slack's app settings
the right value is found. Secret values are never echoed back in messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from bot.config import ConfigError
from bot.i18n import language_of_locale
from bot.settings_schema import Setting

DEFAULT_API_BASE = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
FILES_PATH = "/slack/files"

Mode = Literal["http", "socket"]


# The Slack channel's settings, as the README's table shows them (`./aftersales settings`);
# `load_slack_config` checks them together (which are needed depends on SLACK_MODE).
SLACK_SETTINGS: tuple[Setting[str], ...] = (
    Setting("SLACK_BOT_TOKEN", "", str, "Bot User OAuth Token (xoxb-...), from OAuth & Permissions. "
            "Required; setting it switches the Slack channel on", secret=True),
    Setting("SLACK_MODE", "http", str, "`http`: Slack posts events to the gateway's `/slack/events`. "
            "`socket`: Socket Mode, for gateways without a public URL"),
    Setting("SLACK_SIGNING_SECRET", "", str, "Signing Secret, from Basic Information > App Credentials. "
            "Required in http mode", secret=True),
    Setting("SLACK_APP_TOKEN", "", str, "App-Level Token with the connections:write scope (xapp-...), "
            "from Basic Information > App-Level Tokens. Required in socket mode", secret=True),
    Setting("SLACK_API_BASE", DEFAULT_API_BASE, str, "Slack Web API base URL; only changed to point the gateway "
            "at a test double"),
    Setting("SLACK_LOCALE", "en", str, "the workspace's language (`en` or `zh-CN`): Slack messages carry no "
            "locale, so a conversation starts in it until the shopper writes in the other"),
    Setting("SLACK_AGENTS_CHANNEL", "", str, "the agents' channel id (C... or G...): each handoff opens a thread "
            "there with Claim / Hand back / Resolve; replies in it go to the shopper (`//` first: an internal "
            "note). The app must be in the channel and get its `message.channels` (or `.groups`) events"),
    Setting("SLACK_AGENT_USERS", "", str, "who in Slack is which console agent: `U0123ABC=alice,U0456DEF=bob` "
            "(others can read the threads but not act in them)"),
)

_SWITCHES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_MODE")


@dataclass(frozen=True)
class SlackConfig:
    """Validated Slack settings."""

    bot_token: str = field(repr=False)
    mode: Mode = "http"
    signing_secret: str = field(default="", repr=False)
    app_token: str = field(default="", repr=False)
    api_base: str = DEFAULT_API_BASE
    locale: str = "en"
    agents_channel: str = ""
    agent_users: tuple[tuple[str, str], ...] = ()  # (Slack user id, console agent)


def _value(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def is_configured(env: Mapping[str, str]) -> bool:
    """True when the shop asked for the Slack channel (any of its switches is set)."""
    return any(_value(env, name) for name in _SWITCHES)


def _check_bot_token(token: str, problems: list[str]) -> None:
    if not token:
        problems.append("SLACK_BOT_TOKEN is not set, but other SLACK_ variables are: set it to the Bot User "
                        "OAuth Token (xoxb-...) from OAuth & Permissions, or unset the SLACK_ variables")
    elif not token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb- "
                        "(OAuth & Permissions > Bot User OAuth Token), not a user or app-level token")


def _check_mode(raw: str, problems: list[str]) -> Mode:
    mode = raw.lower() or "http"
    if mode == "http":
        return "http"
    if mode == "socket":
        return "socket"
    problems.append(f"SLACK_MODE={raw!r}: must be http (Events API over HTTP) or socket (Socket Mode)")
    return "http"


def _check_signing_secret(secret: str, app_token: str, problems: list[str]) -> None:
    if not secret:
        hint = " (or set SLACK_MODE=socket to use Socket Mode with SLACK_APP_TOKEN)" if app_token else ""
        problems.append("SLACK_SIGNING_SECRET is required with SLACK_MODE=http: copy the Signing Secret from "
                        "Basic Information > App Credentials" + hint)
    elif len(secret) < 16 or any(c.isspace() for c in secret):
        problems.append("SLACK_SIGNING_SECRET does not look like a Slack signing secret "
                        "(32 characters, no spaces; Basic Information > App Credentials)")


def _check_app_token(token: str, problems: list[str]) -> None:
    if not token:
        problems.append("SLACK_APP_TOKEN is required with SLACK_MODE=socket: create an App-Level Token with "
                        "the connections:write scope (Basic Information > App-Level Tokens), xapp-...")
    elif not token.startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp- "
                        "(Basic Information > App-Level Tokens)")


def _check_api_base(raw: str, problems: list[str]) -> str:
    if not raw:
        return DEFAULT_API_BASE
    if not raw.startswith(("http://", "https://")):
        problems.append(f"SLACK_API_BASE={raw!r}: must start with http:// or https:// (default {DEFAULT_API_BASE})")
        return DEFAULT_API_BASE
    return raw.rstrip("/") + "/"


def load_slack_config(env: Mapping[str, str]) -> SlackConfig | None:
    """The Slack settings from `env`; None when Slack is not configured. Raises `ConfigError`."""
    if not is_configured(env):
        return None
    problems: list[str] = []
    bot_token = _value(env, "SLACK_BOT_TOKEN")
    _check_bot_token(bot_token, problems)
    mode = _check_mode(_value(env, "SLACK_MODE"), problems)
    signing_secret = _value(env, "SLACK_SIGNING_SECRET")
    app_token = _value(env, "SLACK_APP_TOKEN")
    if mode == "http":
        _check_signing_secret(signing_secret, app_token, problems)
    else:
        _check_app_token(app_token, problems)
    api_base = _check_api_base(_value(env, "SLACK_API_BASE"), problems)
    locale = _value(env, "SLACK_LOCALE") or "en"
    if language_of_locale(locale) is None:
        problems.append(f"SLACK_LOCALE={locale!r}: the assistant speaks en or zh (e.g. en-GB, zh-CN)")
    agents_channel = _value(env, "SLACK_AGENTS_CHANNEL")
    if agents_channel and not re.fullmatch(r"[CG][A-Z0-9]{2,30}", agents_channel):
        problems.append(f"SLACK_AGENTS_CHANNEL={agents_channel!r}: a channel id like C0123ABCD (in Slack: the "
                        "channel's details, at the bottom), not its #name")
    agent_users = _agent_users(_value(env, "SLACK_AGENT_USERS"), problems)
    if agent_users and not agents_channel:
        problems.append("SLACK_AGENT_USERS is set but SLACK_AGENTS_CHANNEL is not: agents work in that channel")
    if problems:
        raise ConfigError(problems)
    return SlackConfig(bot_token=bot_token, mode=mode, signing_secret=signing_secret, app_token=app_token,
                       api_base=api_base, locale=locale, agents_channel=agents_channel, agent_users=agent_users)


def _agent_users(raw: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        user, sep, agent = (x.strip() for x in part.partition("="))
        if not sep or not re.fullmatch(r"[UW][A-Z0-9]{2,30}", user) or not re.fullmatch(r"[a-z0-9_.-]{1,64}", agent):
            problems.append(f"SLACK_AGENT_USERS: {part!r} is not `SLACKUSERID=agent` (e.g. U0123ABC=alice)")
            continue
        pairs.append((user, agent))
    return tuple(pairs)
