"""Canned replies: a title and a text per language, with variables filled from the
conversation (`{order}`, `{item}`, `{case}`, `{name}`).

`CANNED_REPLIES_FILE` is a YAML list of `{title, text: {en, zh}}`, or of the older
`{title, text}` (one text for every language). A variable whose value the conversation does
not have is left in the text as it is (`{order}`): the console selects it for the agent to
fill, and the gateway refuses to send a reply that still holds one (`unfilled_variable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from bot.config import ConfigError

LANGUAGES = ("en", "zh")
VARIABLES = ("order", "item", "case", "name")
PLACEHOLDER = re.compile(r"\{(" + "|".join(VARIABLES) + r")\}")
# `{name}` is a greeting: with the shopper's name when it is known, neutral otherwise.
GREETING = {"en": ("Hi {name}", "Hello"), "zh": ("{name}，您好", "您好")}


@dataclass(frozen=True)
class CannedReply:
    title: str
    texts: Mapping[str, str]  # language -> text

    def text(self, language: str) -> str:
        return self.texts.get(language) or self.texts.get("en") or next(iter(self.texts.values()))

    def to_dict(self) -> dict[str, Any]:
        """As the console's `hello` frame carries it."""
        return {"title": self.title, "text": dict(self.texts)}


def parse_canned(data: Any, where: str) -> list[CannedReply]:
    if not isinstance(data, list):
        raise ConfigError([f"{where}: expected a list of {{title, text}} (text: a string or {{en, zh}})"])
    replies = []
    for n, entry in enumerate(data, 1):
        text = entry.get("text") if isinstance(entry, dict) else None
        if isinstance(text, str) and text.strip():
            texts = {lang: text for lang in LANGUAGES}
        elif isinstance(text, dict) and text and all(k in LANGUAGES and isinstance(v, str) and v.strip()
                                                     for k, v in text.items()):
            texts = dict(text)
        else:
            raise ConfigError([f"{where}: entry {n}: 'text' must be a string or a mapping of en/zh to strings"])
        title = entry.get("title") if isinstance(entry, dict) else None
        replies.append(CannedReply(str(title or next(iter(texts.values()))[:30]), texts))
    return replies


def load_canned(path: Path | None, default: list[dict[str, Any]]) -> list[CannedReply]:
    if path is None:
        return parse_canned(default, "built-in canned replies")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"CANNED_REPLIES_FILE={path}: cannot read: {exc}"]) from exc
    return parse_canned(data, f"CANNED_REPLIES_FILE={path}")


def fill(text: str, values: Mapping[str, str | None], language: str) -> str:
    """`text` with every variable the conversation has a value for filled in; the others
    stay as they are (`{order}`) for the agent."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "name":
            known, neutral = GREETING.get(language, GREETING["en"])
            value = values.get("name")
            return known.format(name=value) if value else neutral
        value = values.get(name)
        return value if value else match.group(0)
    return PLACEHOLDER.sub(one, text)


def unfilled(text: str) -> list[str]:
    """The variables still in `text`, as written (`{order}`)."""
    return [m.group(0) for m in PLACEHOLDER.finditer(text)]
