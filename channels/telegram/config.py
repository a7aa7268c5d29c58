"""The Telegram channel's settings: declared once here (`TELEGRAM_SETTINGS`, the README's
table is made from it), read from the environment the gateway settings were read from
(`ctx.env`), validated together. Every problem is reported at once, one line per
variable, as a `bot.config.ConfigError`."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from bot.config import ConfigError, Settings
from bot.settings_schema import Setting, SettingsReader

log = logging.getLogger("gateway.telegram")

T = TypeVar("T")

PRODUCTION_API_BASE = "https://api.telegram.org"
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
FILES_PATH = "/telegram/files"

_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")


@dataclass(frozen=True)
class TelegramConfig:
    """Validated Telegram settings; built only when TELEGRAM_BOT_TOKEN is set."""

    token: str
    mode: str  # "webhook" | "polling"
    webhook_secret: str
    webhook_path: str
    webhook_url: str
    api_base: str
    poll_timeout_seconds: int
    send_retries: int
    retry_backoff_seconds: float
    start_payload: str | None
    files_base_url: str
    request_timeout_seconds: float = 20.0

    def __repr__(self) -> str:  # never print the token or the secret
        return (f"TelegramConfig(mode={self.mode!r}, webhook_url={self.webhook_url!r}, "
                f"api_base={self.api_base!r})")

    @property
    def bot_id(self) -> str:
        """The numeric part of the token: the bot's user id (keys in Redis are per bot)."""
        return self.token.split(":", 1)[0]


def _token(raw: str) -> str:
    if not _TOKEN.match(raw):
        raise ValueError("must look like 123456789:AAH... (the token @BotFather gave you)")
    return raw


def _mode(raw: str) -> str:
    if raw.lower() not in ("webhook", "polling"):
        raise ValueError("must be `webhook` (Telegram calls the gateway) or `polling` (the gateway asks Telegram)")
    return raw.lower()


def _secret(raw: str) -> str:
    if not _SECRET.match(raw):
        raise ValueError("must be 16 to 256 characters of A-Z, a-z, 0-9, _ and - (e.g. `openssl rand -hex 32`)")
    return raw


def _path(raw: str) -> str:
    if not _PATH.match(raw) or raw == "/":
        raise ValueError("must be a URL path such as /telegram/webhook")
    return raw.rstrip("/")


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with https:// (or http:// for a local Bot API server)")
    return raw.rstrip("/")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value
    return parse


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a positive number of seconds") from None
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _start_payload(raw: str) -> str | None:
    return None if raw.lower() == "off" else raw


TOKEN = Setting("TELEGRAM_BOT_TOKEN", "", _token, "the token @BotFather gave the shop; setting it switches the "
                "Telegram channel on", secret=True)
MODE = Setting("TELEGRAM_MODE", "polling", _mode, "`webhook` or `polling`")
WEBHOOK_SECRET = Setting("TELEGRAM_WEBHOOK_SECRET", "", _secret, "secret Telegram sends back in a header "
                         "(required in webhook mode)", secret=True)
WEBHOOK_PATH = Setting("TELEGRAM_WEBHOOK_PATH", DEFAULT_WEBHOOK_PATH, _path, "where the gateway receives webhook updates")
WEBHOOK_URL = Setting("TELEGRAM_WEBHOOK_URL", "", _http_url, "the URL registered with Telegram (https)",
                      shown_default="`GATEWAY_PUBLIC_URL` + path")
API_BASE = Setting("TELEGRAM_API_BASE", PRODUCTION_API_BASE, _http_url, "Bot API server (a local Bot API server, tests)")
POLL_TIMEOUT = Setting("TELEGRAM_POLL_TIMEOUT_SECONDS", 25, _int_between(1, 50), "long-polling wait per getUpdates call")
SEND_RETRIES = Setting("TELEGRAM_SEND_RETRIES", 3, _int_between(0, 10), "retries of a send after a 5xx or network error")
RETRY_BACKOFF = Setting("TELEGRAM_RETRY_BACKOFF_SECONDS", 1.0, _positive_float, "first retry delay (doubles each time)")
START_PAYLOAD = Setting[str | None]("TELEGRAM_START_PAYLOAD", "/greet", _start_payload,
                                    "what `/start` is sent to Rasa as (`off`: as it is)")
FILES_BASE_URL = Setting("TELEGRAM_FILES_BASE_URL", "", _http_url, "base of attachment URLs handed to Rasa and agents",
                         shown_default="`GATEWAY_PUBLIC_URL`")
TELEGRAM_SETTINGS = (TOKEN, MODE, WEBHOOK_SECRET, WEBHOOK_PATH, WEBHOOK_URL, API_BASE, POLL_TIMEOUT, SEND_RETRIES,
                     RETRY_BACKOFF, START_PAYLOAD, FILES_BASE_URL)


def local_base_url(settings: Settings) -> str:
    """How this machine reaches the gateway when no public URL is configured."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def load_telegram_config(env: Mapping[str, str], settings: Settings) -> TelegramConfig | None:
    """The Telegram settings, or None when TELEGRAM_BOT_TOKEN is not set (channel off).

    Raises `ConfigError` listing every problem (missing secret in webhook mode, bad token, ...).
    """
    if not env.get("TELEGRAM_BOT_TOKEN", "").strip():
        stray = sorted(k for k, v in env.items() if k.startswith("TELEGRAM_") and v.strip())
        if stray:
            log.warning("Telegram settings found but TELEGRAM_BOT_TOKEN is not set; the Telegram channel is off",
                        extra={"variables": stray})
        return None
    r = SettingsReader(env)
    token = r.get(TOKEN)
    mode = r.get(MODE)
    secret = r.get(WEBHOOK_SECRET)
    path = r.get(WEBHOOK_PATH)
    api_base = r.get(API_BASE)
    public = settings.public_url.rstrip("/")
    webhook_url = r.get(WEBHOOK_URL) or (f"{public}{path}" if public else "")
    files_base = r.get(FILES_BASE_URL) or public or local_base_url(settings)
    config = TelegramConfig(
        token=token,
        mode=mode,
        webhook_secret=secret,
        webhook_path=path,
        webhook_url=webhook_url,
        api_base=api_base,
        poll_timeout_seconds=r.get(POLL_TIMEOUT),
        send_retries=r.get(SEND_RETRIES),
        retry_backoff_seconds=r.get(RETRY_BACKOFF),
        start_payload=r.get(START_PAYLOAD),
        files_base_url=files_base,
    )
    if mode == "webhook":
        if not secret and not any(p.startswith("TELEGRAM_WEBHOOK_SECRET=") for p in r.problems):
            r.problems.append("TELEGRAM_WEBHOOK_SECRET: required when TELEGRAM_MODE=webhook, so that only "
                              "Telegram can post updates (e.g. `openssl rand -hex 32`)")
        if not webhook_url and not any(p.startswith("TELEGRAM_WEBHOOK_URL=") for p in r.problems):
            r.problems.append("GATEWAY_PUBLIC_URL (or TELEGRAM_WEBHOOK_URL): required when TELEGRAM_MODE=webhook; "
                              "Telegram must reach the gateway at a public https:// address "
                              "(use TELEGRAM_MODE=polling without one)")
        elif webhook_url and api_base == PRODUCTION_API_BASE and not webhook_url.startswith("https://"):
            r.problems.append(f"TELEGRAM_WEBHOOK_URL={webhook_url!r}: Telegram only calls https:// webhooks")
    if r.problems:
        raise ConfigError(r.problems)
    return config
