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


MAX_CANNED = 50
MAX_TITLE = 80
MAX_TEXT = 2000
_ANY_VARIABLE = re.compile(r"\{([^{}]*)\}")


def edited_canned(data: Any) -> list[CannedReply]:
    """Canned replies a manager saved in the console: every entry with a title and a text in
    both languages, only the known variables, within the limits; ValueError says what is wrong."""
    if not isinstance(data, list) or len(data) > MAX_CANNED:
        raise ValueError(f"expected a list of at most {MAX_CANNED} replies")
    replies = []
    for n, entry in enumerate(data, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"reply {n}: expected {{title, text: {{en, zh}}}}")
        title, texts = entry.get("title"), entry.get("text")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            raise ValueError(f"reply {n}: a title of 1 to {MAX_TITLE} characters")
        if not isinstance(texts, dict) or set(texts) != set(LANGUAGES):
            raise ValueError(f"reply {n}: a text in English and in Chinese (en, zh)")
        for lang in LANGUAGES:
            text = texts[lang]
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
                raise ValueError(f"reply {n} ({lang}): a text of 1 to {MAX_TEXT} characters")
            unknown = [m.group(0) for m in _ANY_VARIABLE.finditer(text) if m.group(1) not in VARIABLES]
            if unknown:
                raise ValueError(f"reply {n} ({lang}): {', '.join(unknown)} is not a variable "
                                 f"(known: {', '.join('{' + v + '}' for v in VARIABLES)})")
        replies.append(CannedReply(title.strip(), {lang: texts[lang].strip() for lang in LANGUAGES}))
    return replies


def save_canned(path: Path, replies: list[CannedReply]) -> None:
    """Write them where the gateway reads them at start (and every gateway of the shop, on a
    shared DATA_DIR, when told to)."""
    from bot.files import write_private

    text = yaml.safe_dump([r.to_dict() for r in replies], allow_unicode=True, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, "# Canned replies, edited by managers in the console.\n" + text)

