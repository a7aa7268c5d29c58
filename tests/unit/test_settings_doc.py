"""The README's settings tables are the ones the code declares: a setting added, renamed or
given a new default shows up in the README, or this fails (`./aftersales settings --write`
updates them). And the declarations are what the loaders read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import GATEWAY_SETTINGS, ConfigError, Settings, load_settings
from gateway.settings_doc import PARTS, render_into

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_tables_are_the_declared_settings() -> None:
    text = README.read_text(encoding="utf-8")
    for part in PARTS:
        assert f"<!-- settings:{part} -->" in text, f"README has no table for {part}"
    assert render_into(text) == text, "README settings tables are stale: run ./aftersales settings --write"


def test_every_gateway_setting_is_declared_once_and_read() -> None:
    names = [s.name for s in GATEWAY_SETTINGS.values()]
    assert len(names) == len(set(names))
    fields = set(Settings.__dataclass_fields__) - {"environ"}
    assert set(GATEWAY_SETTINGS) == fields  # no Settings field without its variable, none read twice
    env = {"GATEWAY_PORT": "9090", "UPLOAD_MAX_FILES": "3", "CASE_RETENTION_DAYS": "30"}
    settings = load_settings(env, dotenv=None)
    assert (settings.port, settings.upload_max_files, settings.case_retention_days) == (9090, 3, 30.0)


def test_a_secret_in_a_bad_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"GATEWAY_SECRET": "short-but-secret-value", "GATEWAY_PORT": "99999"}, dotenv=None)
    message = str(caught.value)
    assert "GATEWAY_SECRET=(hidden)" in message and "short-but-secret-value" not in message
    assert "GATEWAY_PORT='99999'" in message  # every problem at once, with the value where it is not secret


def test_an_empty_table_is_filled_without_swallowing_what_follows() -> None:
    text = ("intro\n<!-- settings:slack -->\n<!-- /settings -->\n\n## For an agent\nkept\n"
            "<!-- settings:handoff -->\nstale-row\n<!-- /settings -->\n")
    rendered = render_into(text)
    assert "## For an agent\nkept\n" in rendered and "SLACK_BOT_TOKEN" in rendered and "AGENTS_FILE" in rendered
    assert "stale-row" not in rendered and rendered.count("<!-- /settings -->") == 2
