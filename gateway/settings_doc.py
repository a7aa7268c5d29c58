"""The README's settings tables, made from what each part declares (bot/settings_schema.py):
`./aftersales settings` prints them; tests/unit/test_settings_doc.py keeps the README equal
to them, between `<!-- settings:<part> -->` and `<!-- /settings -->`."""

from __future__ import annotations

import re

from bot.config import GATEWAY_SETTINGS
from bot.settings_schema import settings_table
from channels.slack.config import SLACK_SETTINGS
from channels.telegram.config import TELEGRAM_SETTINGS
from flows.updates import UPDATES_SETTINGS
from handoff.analytics import ANALYTICS_SETTINGS
from handoff.config import HANDOFF_SETTINGS

PARTS = {
    "gateway": tuple(GATEWAY_SETTINGS.values()),
    "handoff": HANDOFF_SETTINGS,
    "analytics": ANALYTICS_SETTINGS,
    "telegram": TELEGRAM_SETTINGS,
    "slack": SLACK_SETTINGS,
    "updates": UPDATES_SETTINGS,
}


def tables() -> dict[str, str]:
    return {part: settings_table(settings) for part, settings in PARTS.items()}


def region(part: str) -> re.Pattern[str]:
    # The table may be empty: the end marker may follow the start marker's line directly, and
    # the match never runs on into the next part's region.
    return re.compile(rf"(<!-- settings:{part} -->\n)((?:(?!<!-- settings:).)*?)(\n?<!-- /settings -->)", re.DOTALL)


def render_into(text: str) -> str:
    """`text` (the README) with every settings region replaced by its table."""
    for part, table in tables().items():
        def put(match: re.Match[str], table: str = table) -> str:
            return match.group(1) + table + "\n<!-- /settings -->"
        text = region(part).sub(put, text)
    return text
