"""Gateway settings: read once from the environment (and an optional `.env`), validated at start.

Every setting has an embedded default so that `./aftersales run` works on a fresh machine
with nothing configured. Problems are collected and reported together, one line each,
naming the variable and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from bot.files import write_private
from bot.sealing import KEY_FILE_NAME, DataKeyError, DataKeys, resolve_data_keys

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


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T], rule: str = "", secret: bool = False) -> T:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name}{'' if secret else '=' + repr(raw)}: {rule or exc}")
            return default


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


def _data_keys(raw: str) -> str:
    try:
        DataKeys.parse(raw)
    except DataKeyError as exc:
        raise ValueError(str(exc).removeprefix("DATA_KEYS: ")) from None
    return raw


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build `Settings` from `env` (default: `os.environ`) over an optional `.env` file."""
    merged: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv is not None else {}
    merged.update(os.environ if env is None else env)
    r = _Reader(merged)
    d = Settings()
    settings = Settings(
        host=r.get("GATEWAY_HOST", d.host, str),
        port=r.get("GATEWAY_PORT", d.port, _port),
        public_url=r.get("GATEWAY_PUBLIC_URL", d.public_url, _http_url),
        rasa_url=r.get("RASA_URL", d.rasa_url, _http_url),
        rasa_token=r.get("RASA_TOKEN", d.rasa_token, str),
        rasa_timeout_seconds=r.get("RASA_TIMEOUT_SECONDS", d.rasa_timeout_seconds, _positive_float),
        rasa_retry_initial_seconds=r.get("RASA_RETRY_INITIAL_SECONDS", d.rasa_retry_initial_seconds,
                                         _positive_float),
        rasa_retry_max_seconds=r.get("RASA_RETRY_MAX_SECONDS", d.rasa_retry_max_seconds, _positive_float),
        holding_after_seconds=r.get("HOLDING_AFTER_SECONDS", d.holding_after_seconds, _positive_float),
        max_text_length=r.get("MAX_TEXT_LENGTH", d.max_text_length, _positive_int),
        max_pending_per_conversation=r.get("MAX_PENDING_PER_CONVERSATION", d.max_pending_per_conversation,
                                           _positive_int),
        max_pending_total=r.get("MAX_PENDING_TOTAL", d.max_pending_total, _positive_int),
        max_connections_per_address=r.get("MAX_CONNECTIONS_PER_ADDRESS", d.max_connections_per_address,
                                          _positive_int),
        header_timeout_seconds=r.get("HEADER_TIMEOUT_SECONDS", d.header_timeout_seconds, _positive_float),
        webchat_new_sessions_per_minute=r.get("WEBCHAT_NEW_SESSIONS_PER_MINUTE", d.webchat_new_sessions_per_minute,
                                              _positive_int),
        webchat_allowed_origins=r.get("WEBCHAT_ALLOWED_ORIGINS", d.webchat_allowed_origins, _origins),
        console_allowed_origins=r.get("CONSOLE_ALLOWED_ORIGINS", d.console_allowed_origins, _origins),
        trusted_proxies=r.get("TRUSTED_PROXIES", d.trusted_proxies, _networks),
        upload_max_files=r.get("UPLOAD_MAX_FILES", d.upload_max_files, _positive_int),
        upload_max_mb=r.get("UPLOAD_MAX_MB", d.upload_max_mb, _positive_float),
        upload_rate_per_minute=r.get("UPLOAD_RATE_PER_MINUTE", d.upload_rate_per_minute, _positive_float),
        upload_retention_days=r.get("UPLOAD_RETENTION_DAYS", d.upload_retention_days, _positive_float),
        case_retention_days=r.get("CASE_RETENTION_DAYS", d.case_retention_days, _positive_float),
        webchat_rate_burst=r.get("WEBCHAT_RATE_BURST", d.webchat_rate_burst, _positive_int),
        webchat_rate_per_second=r.get("WEBCHAT_RATE_PER_SECOND", d.webchat_rate_per_second, _positive_float),
        webchat_heartbeat_seconds=r.get("WEBCHAT_HEARTBEAT_SECONDS", d.webchat_heartbeat_seconds,
                                        _positive_float),
        rest_auth_token=r.get("REST_AUTH_TOKEN", d.rest_auth_token, str),
        shop_customer_secret=r.get("SHOP_CUSTOMER_SECRET", d.shop_customer_secret, _secret),
        secret=r.get("GATEWAY_SECRET", d.secret, _secret),
        data_dir=r.get("DATA_DIR", d.data_dir, Path),
        data_keys=r.get("DATA_KEYS", d.data_keys, _data_keys, secret=True),
        log_level=r.get("LOG_LEVEL", d.log_level, lambda s: _choice("debug", "info", "warning", "error")(s).upper()),
        log_format=r.get("LOG_FORMAT", d.log_format, _choice("json", "text")),
        redis_url=r.get("REDIS_URL", d.redis_url, str),
        environ=merged,
    )
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        r.problems.append(f"REDIS_URL={settings.redis_url!r}: must start with redis://, rediss:// or unix://")
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
