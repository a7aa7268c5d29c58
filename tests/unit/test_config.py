from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, ensure_secret, load_settings


def test_defaults_need_nothing_configured() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.port == 8080 and settings.rasa_url == "http://127.0.0.1:5005"
    assert settings.max_text_length == 4000 and settings.redis_url == ""


def test_every_problem_is_reported_at_once_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"GATEWAY_PORT": "eighty", "RASA_URL": "localhost:5005", "GATEWAY_SECRET": "short",
                       "WEBCHAT_ALLOWED_ORIGINS": "shop.example", "LOG_LEVEL": "loud",
                       "REDIS_URL": "localhost"}, dotenv=None)
    text = str(error.value)
    for name in ["GATEWAY_PORT", "RASA_URL", "GATEWAY_SECRET", "WEBCHAT_ALLOWED_ORIGINS", "LOG_LEVEL", "REDIS_URL"]:
        assert name in text
    assert len(error.value.problems) == 6


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# shop settings\nGATEWAY_PORT=9090\nexport RASA_URL='http://rasa:5005/'\n"
                      "WEBCHAT_ALLOWED_ORIGINS=https://a.example, https://b.example\n")
    settings = load_settings({"GATEWAY_PORT": "9191"}, dotenv=dotenv)
    assert settings.port == 9191
    assert settings.rasa_url == "http://rasa:5005"
    assert settings.webchat_allowed_origins == ("https://a.example", "https://b.example")


def test_malformed_dotenv_line_is_named(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GATEWAY_PORT=9090\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        load_settings({}, dotenv=dotenv)


def test_generated_secret_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = ensure_secret(settings)
    assert len(first) >= 32 and ensure_secret(settings) == first
    assert (tmp_path / "data" / "secret").stat().st_mode & 0o077 == 0
