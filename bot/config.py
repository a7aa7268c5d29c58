"""Gateway settings: read once from the environment (and an optional `.env`), validated at start.

Every setting has an embedded default so that `./aftersales run` works on a fresh machine
with nothing configured. Problems are collected and reported together, one line each,
naming the variable and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from bot.files import write_private
from bot.sealing import KEY_FILE_NAME, DataKeyError, DataKeys, resolve_data_keys
from bot.settings_schema import Setting, SettingsReader

T = TypeVar("T")


class ConfigError(ValueError):
    """The environment holds settings the gateway cannot start with."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str = ""
    rasa_timeout_seconds: float = 30.0
    rasa_retry_initial_seconds: float = 0.5
    rasa_retry_max_seconds: float = 15.0
    drain_seconds: float = 10.0
    takeover_seconds: float = 5.0
    gateway_id: str = ""
    holding_after_seconds: float = 2.0
    max_text_length: int = 4000
    max_pending_per_conversation: int = 50
    max_pending_total: int = 5_000
    webchat_new_sessions_per_minute: int = 30
    max_connections_per_address: int = 256
    header_timeout_seconds: float = 10.0
    webchat_allowed_origins: tuple[str, ...] = ()
    console_allowed_origins: tuple[str, ...] = ()  # the agent console's own list (default: the gateway's own)
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (default: none)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    webchat_rate_burst: int = 10
    webchat_rate_per_second: float = 1.0
    webchat_heartbeat_seconds: float = 30.0
    upload_max_files: int = 20  # per conversation
    upload_max_mb: float = 25.0  # per conversation
    upload_rate_per_minute: float = 6.0  # per conversation, after a burst of as many
    upload_retention_days: float = 30.0  # uploads older than this are deleted
    # Cases (with their history) are deleted this long after their last change: three years,
    # the E-Commerce Law's minimum for transaction records (art. 31) and the limitation
    # period for a quality claim (Civil Code art. 188), which outlast any warranty.
    case_retention_days: float = 1095.0
    rest_auth_token: str = ""
    shop_customer_secret: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    data_dir: Path = Path("var")
    # Where "save as test" writes the dialogues it makes (empty: tests/evaluation/corpus_saved in the checkout)
    saved_tests_dir: str = ""
    # Keys that seal the data kept at rest (base64url, newest first); default: DATA_DIR/data-key
    data_keys: str = field(default="", repr=False)
    log_level: str = "INFO"
    log_format: str = "json"
    redis_url: str = ""
    # Everything the settings were read from (environment over `.env`): optional channels
    # read and validate their own variables from it (see bot/plugins.py).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def own_origins(self) -> tuple[str, ...]:
        """Origins the gateway's own page is served from."""
        origins = {f"http://{self.host}:{self.port}", f"http://localhost:{self.port}",
                   f"http://127.0.0.1:{self.port}"}
        if self.public_url:
            origins.add(self.public_url.rstrip("/"))
        return tuple(sorted(origins))


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal `.env`: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"{path}:{number}: expected KEY=VALUE, got {raw!r}"])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a port number between 1 and 65535")
    return value


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw.rstrip("/")


def _gateway_id(raw: str) -> str:
    if raw and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", raw):
        raise ValueError("must be 1-64 letters, digits or _ . -")
    return raw


def _http_urls(raw: str) -> str:
    """One URL or several, comma-separated (each checked); given back comma-joined."""
    urls = [_http_url(u.strip()) for u in raw.split(",") if u.strip()]
    if not urls:
        raise ValueError("give at least one URL")
    if len(set(urls)) != len(urls):
        raise ValueError("a URL is given twice")
    return ",".join(urls)


def _origins(raw: str) -> tuple[str, ...]:
    items = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in items:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"origin {origin!r} must look like https://shop.example")
    return items


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or network like 10.0.0.0/8") from None
    return tuple(networks)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return raw.lower()
    return parse


def _secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return raw


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw


def _data_keys(raw: str) -> str:
    try:
        DataKeys.parse(raw)
    except DataKeyError as exc:
        raise ValueError(str(exc).removeprefix("DATA_KEYS: ")) from None
    return raw


_D = Settings()

# Every gateway setting, as the README's table shows it (`./aftersales settings`), by the
# `Settings` field it fills.
GATEWAY_SETTINGS: dict[str, Setting[Any]] = {
    "host": Setting("GATEWAY_HOST", _D.host, str, "where the gateway listens (use `0.0.0.0` behind your reverse proxy)"),
    "port": Setting("GATEWAY_PORT", _D.port, _port, "the port it listens on"),
    "public_url": Setting("GATEWAY_PUBLIC_URL", _D.public_url, _http_url,
                          "the public https URL of the gateway (webhooks, links to attachments)"),
    "secret": Setting("GATEWAY_SECRET", _D.secret, _secret, "signs web chat session tokens; at least 32 characters",
                      secret=True, shown_default="generated into `DATA_DIR/secret`"),
    "webchat_allowed_origins": Setting(
        "WEBCHAT_ALLOWED_ORIGINS", _D.webchat_allowed_origins, _origins,
        "comma-separated origins allowed to open the web chat socket, e.g. `https://shop.example`",
        shown_default="the gateway's own origin"),
    "console_allowed_origins": Setting(
        "CONSOLE_ALLOWED_ORIGINS", _D.console_allowed_origins, _origins,
        "origins allowed to open the agent console's socket (kept apart from the web chat's shop sites)",
        shown_default="the gateway's own origin"),
    "trusted_proxies": Setting(
        "TRUSTED_PROXIES", _D.trusted_proxies, _networks,
        "comma-separated IPs or CIDRs of your reverse proxies (e.g. `10.0.0.5,10.1.0.0/16`); only from these are "
        "`X-Forwarded-For` (the shopper's or agent's address, used by sign-in lockout) and `X-Forwarded-Proto` "
        "(marks the console cookie `Secure`) believed"),
    "rasa_url": Setting("RASA_URL", _D.rasa_url, _http_urls,
                        "the Rasa server, or several comma-separated (they must share a tracker and lock store, "
                        "as Rasa servers on `REDIS_URL` started by the gateway do); "
                        "turns go to the least busy, around one that is down"),
    "gateway_id": Setting("GATEWAY_ID", _D.gateway_id, _gateway_id,
                          "this gateway's name among several on one `REDIS_URL` (default: the host and a part new on "
                          "every start); a restart under the same name takes its unanswered messages back at once, "
                          "otherwise a survivor takes them over once its heartbeat runs out (15 s)"),
    "takeover_seconds": Setting("TAKEOVER_SECONDS", _D.takeover_seconds, _positive_float,
                                "with several gateways on one `REDIS_URL`, how often each looks for messages "
                                "a dead gateway accepted but did not answer (they are taken over once its "
                                "heartbeat, 15 s, runs out)"),
    "drain_seconds": Setting("DRAIN_SECONDS", _D.drain_seconds, _positive_float,
                             "on SIGTERM, how long the gateway goes on answering messages it accepted (new ones "
                             "go to another gateway) before it stops"),
    "rasa_token": Setting("RASA_TOKEN", _D.rasa_token, str,
                          "Rasa's `--auth-token`, if it was started with one (`./aftersales run` generates one for "
                          "the Rasa it starts, so Rasa's HTTP API is never open)", secret=True),
    "rasa_timeout_seconds": Setting("RASA_TIMEOUT_SECONDS", _D.rasa_timeout_seconds, _positive_float,
                                    "per call to Rasa"),
    "rasa_retry_initial_seconds": Setting("RASA_RETRY_INITIAL_SECONDS", _D.rasa_retry_initial_seconds,
                                          _positive_float, "first backoff while Rasa is unreachable"),
    "rasa_retry_max_seconds": Setting("RASA_RETRY_MAX_SECONDS", _D.rasa_retry_max_seconds, _positive_float,
                                      "longest backoff while Rasa is unreachable"),
    "holding_after_seconds": Setting("HOLDING_AFTER_SECONDS", _D.holding_after_seconds, _positive_float,
                                     "when to tell the shopper their message is kept"),
    "max_text_length": Setting("MAX_TEXT_LENGTH", _D.max_text_length, _positive_int,
                               "longest shopper message, in characters"),
    "max_pending_per_conversation": Setting("MAX_PENDING_PER_CONVERSATION", _D.max_pending_per_conversation,
                                            _positive_int, "unanswered messages one conversation may queue"),
    "max_pending_total": Setting(
        "MAX_PENDING_TOTAL", _D.max_pending_total, _positive_int,
        "unanswered messages the whole gateway may hold; past it new messages get a clear \"busy, try again\" "
        "(`queue_full`) and nothing is kept half-way"),
    "webchat_rate_burst": Setting("WEBCHAT_RATE_BURST", _D.webchat_rate_burst, _positive_int,
                                  "messages one conversation (all its tabs together) or REST sender may send at once"),
    "webchat_rate_per_second": Setting("WEBCHAT_RATE_PER_SECOND", _D.webchat_rate_per_second, _positive_float,
                                       "and then per second"),
    "webchat_new_sessions_per_minute": Setting(
        "WEBCHAT_NEW_SESSIONS_PER_MINUTE", _D.webchat_new_sessions_per_minute, _positive_int,
        "new web chat conversations one client address may open per minute (a burst of as many, then that rate); "
        "resuming with a session token is not limited. Behind a proxy set `TRUSTED_PROXIES` so the real address "
        "is used"),
    "max_connections_per_address": Setting(
        "MAX_CONNECTIONS_PER_ADDRESS", _D.max_connections_per_address, _positive_int,
        "open connections one client address may hold (your trusted proxies are exempt)"),
    "header_timeout_seconds": Setting(
        "HEADER_TIMEOUT_SECONDS", _D.header_timeout_seconds, _positive_float,
        "a connection must send its request headers, and a web chat socket its hello, within this; idle "
        "keep-alive connections close after 15 s"),
    "webchat_heartbeat_seconds": Setting("WEBCHAT_HEARTBEAT_SECONDS", _D.webchat_heartbeat_seconds,
                                         _positive_float, "websocket ping interval; dead sockets are closed"),
    "upload_max_files": Setting("UPLOAD_MAX_FILES", _D.upload_max_files, _positive_int,
                                "files one web chat conversation may upload"),
    "upload_max_mb": Setting("UPLOAD_MAX_MB", _D.upload_max_mb, _positive_float,
                             "megabytes one web chat conversation may upload (one file: at most 5)"),
    "upload_rate_per_minute": Setting("UPLOAD_RATE_PER_MINUTE", _D.upload_rate_per_minute, _positive_float,
                                      "uploads per minute per conversation, after a burst of as many"),
    "upload_retention_days": Setting("UPLOAD_RETENTION_DAYS", _D.upload_retention_days, _positive_float,
                                     "web chat uploads are deleted this long after they were sent"),
    "case_retention_days": Setting(
        "CASE_RETENTION_DAYS", _D.case_retention_days, _positive_float,
        "cases (with their history) are deleted this long after their last change (three years: transaction "
        "records must be kept that long, and a quality claim may come that late); the demo cases are kept"),
    "rest_auth_token": Setting("REST_AUTH_TOKEN", _D.rest_auth_token, str,
                               "if set, the Rasa-format REST endpoint requires `Authorization: Bearer <token>`",
                               secret=True),
    "shop_customer_secret": Setting(
        "SHOP_CUSTOMER_SECRET", _D.shop_customer_secret, _secret,
        "lets your backend vouch for a signed-in customer: open the chat as `/?customer=<token>` (format in "
        "`docs/webchat-protocol.md`) and the bot offers that customer's orders, without asking for proof that "
        "they are theirs", secret=True),
    "redis_url": Setting(
        "REDIS_URL", _D.redis_url, _redis_url,
        "`redis://…`: durable dedupe, delivery inbox (Telegram, Slack and web chat messages kept until answered), "
        "conversation history, handoff state and console sign-outs"),
    "data_dir": Setting("DATA_DIR", _D.data_dir, Path,
                        "where the gateway keeps its generated secret and data key, and the web chat uploads"),
    "saved_tests_dir": Setting(
        "SAVED_TESTS_DIR", _D.saved_tests_dir, str,
        "where `./aftersales save-test` and the console's 'Save as test' write the evaluation dialogues they make "
        "from real conversations (the test command replays them)", shown_default="`tests/evaluation/corpus_saved`"),
    "data_keys": Setting(
        "DATA_KEYS", _D.data_keys, _data_keys,
        "comma-separated base64url 32-byte keys, newest first, that seal (AES-256-GCM) the cases' details and "
        "notes, the uploads and what Redis keeps of conversations; the first seals, all open. `./aftersales run` "
        "hands them to the action server; set the same value for both if you run them apart. Rotation: "
        "`docs/security.md`", secret=True, shown_default="generated into `DATA_DIR/data-key` (0600)"),
    "log_level": Setting("LOG_LEVEL", _D.log_level, lambda s: _choice("debug", "info", "warning", "error")(s).upper(),
                         "`debug`, `info`, `warning` or `error`; `info` logs sessions, handoffs and failures, `debug` adds "
                         "a line for every message, with its text",
                         shown_default="`info`"),
    "log_format": Setting("LOG_FORMAT", _D.log_format, _choice("json", "text"),
                          "`json` (one object per line) or `text`; e-mail addresses and phone numbers are masked"),
}


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build `Settings` from `env` (default: `os.environ`) over an optional `.env` file."""
    merged: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv is not None else {}
    merged.update(os.environ if env is None else env)
    r = SettingsReader(merged)
    settings = Settings(**{name: r.get(setting) for name, setting in GATEWAY_SETTINGS.items()}, environ=merged)
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def ensure_secret(settings: Settings) -> str:
    """The secret that signs web chat session tokens.

    `GATEWAY_SECRET` when set; otherwise one generated on first start and kept in
    `DATA_DIR/secret`, so that shoppers' sessions survive a restart of the gateway.
    """
    if settings.secret:
        return settings.secret
    path = settings.data_dir / "secret"
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if len(stored) >= 32:
            return stored
    generated = secrets.token_hex(32)
    write_private(path, generated)
    return generated


def ensure_data_keys(settings: Settings) -> DataKeys:
    """The keys that seal what the gateway and the flows keep at rest.

    `DATA_KEYS` when set; otherwise one key generated on first use and kept in
    `DATA_DIR/data-key` (0600). `./aftersales run` hands the result to the action server.
    """
    return resolve_data_keys(settings.data_keys, settings.data_dir / KEY_FILE_NAME)
