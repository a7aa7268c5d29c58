"""A shop configuring Telegram gets it on only with a token, and clear errors for what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from channels.telegram.config import load_telegram_config
from gateway.app import CHANNELS_KEY, create_app
from tests.telegram.conftest import new_token

TOKEN = new_token()


def settings_from(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Settings]:
    full = {"DATA_DIR": str(tmp_path), **env}
    return full, load_settings(full, dotenv=None)


def problems(env: dict[str, str], tmp_path: Path) -> list[str]:
    full, settings = settings_from(env, tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_telegram_config(full, settings)
    return caught.value.problems


def test_without_a_token_the_channel_stays_off(tmp_path: Path) -> None:
    app = create_app(load_settings({"DATA_DIR": str(tmp_path), "TELEGRAM_MODE": "webhook"}, dotenv=None))
    assert "telegram" not in app[CHANNELS_KEY]
    assert not any(r.canonical.startswith("/telegram") for r in app.router.resources())


def test_with_a_token_polling_is_the_default_and_the_channel_is_on(tmp_path: Path) -> None:
    app = create_app(load_settings({"DATA_DIR": str(tmp_path), "TELEGRAM_BOT_TOKEN": TOKEN}, dotenv=None))
    assert app[CHANNELS_KEY] == ["telegram"]
    routes = {r.canonical for r in app.router.resources()}
    assert "/telegram/files/{file_id}" in routes and "/telegram/webhook" not in routes


def test_webhook_mode_needs_a_secret_and_a_public_url_reported_together(tmp_path: Path) -> None:
    found = problems({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook"}, tmp_path)
    assert len(found) == 2
    assert found[0].startswith("TELEGRAM_WEBHOOK_SECRET") and "openssl rand" in found[0]
    assert found[1].startswith("GATEWAY_PUBLIC_URL") and "polling" in found[1]


def test_bad_values_are_named_and_secrets_are_not_echoed(tmp_path: Path) -> None:
    found = problems({"TELEGRAM_BOT_TOKEN": "not-a-token", "TELEGRAM_MODE": "hook",
                      "TELEGRAM_WEBHOOK_SECRET": "short", "TELEGRAM_POLL_TIMEOUT_SECONDS": "90"}, tmp_path)
    text = "\n".join(found)
    assert "TELEGRAM_BOT_TOKEN=(hidden)" in text and "not-a-token" not in text
    assert "TELEGRAM_MODE='hook'" in text
    assert "TELEGRAM_WEBHOOK_SECRET=(hidden)" in text and "'short'" not in text
    assert "TELEGRAM_POLL_TIMEOUT_SECONDS='90': must be a whole number from 1 to 50" in text


def test_telegram_only_calls_https_webhooks(tmp_path: Path) -> None:
    found = problems({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": "s" * 32,
                      "GATEWAY_PUBLIC_URL": "http://shop.example"}, tmp_path)
    assert found == ["TELEGRAM_WEBHOOK_URL='http://shop.example/telegram/webhook': "
                     "Telegram only calls https:// webhooks"]


def test_a_complete_webhook_setup_is_accepted(tmp_path: Path) -> None:
    full, settings = settings_from({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook",
                                    "TELEGRAM_WEBHOOK_SECRET": "s" * 32,
                                    "GATEWAY_PUBLIC_URL": "https://shop.example/"}, tmp_path)
    config = load_telegram_config(full, settings)
    assert config is not None
    assert config.webhook_url == "https://shop.example/telegram/webhook"
    assert config.files_base_url == "https://shop.example"
    assert TOKEN not in repr(config) and "s" * 32 not in repr(config)
