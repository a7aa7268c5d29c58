"""Everything the flows say, in English and Chinese (`texts.yml`), checked at load:
every text has both languages, and both use the same {placeholders}."""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any, Mapping

from flows.policies import LANGUAGES, PolicyError, read_yaml_mapping

DEFAULT_PATH = Path(__file__).with_name("texts.yml")


class TextsError(PolicyError):
    """texts.yml is malformed."""


def _fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


class Texts:
    def __init__(self, texts: Mapping[str, Mapping[str, str]]) -> None:
        self.texts = dict(texts)

    def has(self, key: str) -> bool:
        return key in self.texts

    def __call__(self, key: str, lang: str, **values: Any) -> str:
        entry = self.texts.get(key)
        if entry is None:
            raise KeyError(f"texts.yml has no text '{key}'")
        template = entry.get(lang) or entry["en"]
        return template.format(**values) if values or "{" in template else template

    def get(self, key: str, lang: str, default: str, **values: Any) -> str:
        return self(key, lang, **values) if key in self.texts else default


def load_texts(path: Path = DEFAULT_PATH, text: str | None = None) -> Texts:
    data = read_yaml_mapping(path, TextsError, "text keys", text)
    texts: dict[str, dict[str, str]] = {}
    for key, entry in data.items():
        where = f"{path}: '{key}'"
        if not isinstance(entry, dict) or any(not isinstance(entry.get(lang), str) for lang in LANGUAGES):
            raise TextsError(f"{where}: needs a text for each of {', '.join(LANGUAGES)}")
        extra = set(entry) - set(LANGUAGES)
        if extra:
            raise TextsError(f"{where}: unknown language(s) {', '.join(sorted(extra))}")
        try:
            fields = {lang: _fields(entry[lang]) for lang in LANGUAGES}
        except ValueError as exc:
            raise TextsError(f"{where}: bad {{placeholder}}: {exc}") from exc
        if fields["en"] != fields["zh"]:
            raise TextsError(f"{where}: the languages use different placeholders: "
                             f"en {sorted(fields['en'])}, zh {sorted(fields['zh'])}")
        texts[key] = {lang: entry[lang].rstrip("\n") for lang in LANGUAGES}
    return Texts(texts)


if __name__ == "__main__":
    try:
        loaded = load_texts(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{len(loaded.texts)} texts: OK")
