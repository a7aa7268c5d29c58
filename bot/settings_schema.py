"""How every part of the gateway declares its settings: one `Setting` per environment
variable (name, default, parser, what it is for, whether it is a secret), read with a
`SettingsReader` that collects every problem instead of stopping at the first, and
rendered into the README's settings tables (`settings_table`; `./aftersales settings`
prints them, tests/unit/test_settings_doc.py keeps the README equal to them).

A parser takes the stripped text and returns the value or raises `ValueError` with what
is wrong ("must be a positive number"); the reader reports `NAME='raw': what is wrong`,
with the value hidden for a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    name: str
    default: T
    parse: Callable[[str], T]
    doc: str
    secret: bool = False
    shown_default: str | None = None  # the default as the docs say it, when not the value itself

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default in ("", None, ()):
            return "—"
        if isinstance(self.default, tuple):
            return "`" + ",".join(map(str, self.default)) + "`"
        if isinstance(self.default, float) and self.default.is_integer():
            return f"`{int(self.default)}`"
        return f"`{self.default}`"


class SettingsReader:
    """Reads settings from one environment, collecting problems."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, setting: Setting[Any]) -> str:
        return (self.env.get(setting.name) or "").strip()

    def get(self, setting: Setting[T]) -> T:
        raw = self.raw(setting)
        if not raw:
            return setting.default
        try:
            return setting.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(raw)
            self.problems.append(f"{setting.name}={shown}: {exc}")
            return setting.default


def settings_table(settings: Iterable[Setting[Any]]) -> str:
    """The settings as a Markdown table: variable, default, what it is for."""
    rows = ["| variable | default | what it is for |", "| --- | --- | --- |"]
    for s in settings:
        rows.append(f"| `{s.name}` | {s.default_text()} | {s.doc} |")
    return "\n".join(rows)
