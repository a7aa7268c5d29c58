"""Return windows per product category, loaded from `policies.yml` and validated at load."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_PATH = Path(__file__).with_name("policies.yml")
LANGUAGES = ("en", "zh")


class PolicyError(ValueError):
    """policies.yml is malformed; the message names the file, the category and the field."""


@dataclass(frozen=True)
class CategoryPolicy:
    key: str
    names: Mapping[str, str]
    no_reason_days: int
    quality_days: int


def _days(where: str, raw: Mapping[str, Any], field: str) -> int:
    value = raw.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PolicyError(f"{where}: '{field}' must be a whole number of days (>= 0), got {value!r}")
    return value


def load_policies(path: Path = DEFAULT_PATH) -> dict[str, CategoryPolicy]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read policies: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("categories"), dict) or not data["categories"]:
        raise PolicyError(f"{path}: expected a 'categories' mapping with at least one category")
    policies: dict[str, CategoryPolicy] = {}
    for key, raw in data["categories"].items():
        where = f"{path}: category '{key}'"
        if not isinstance(raw, dict):
            raise PolicyError(f"{where}: expected a mapping")
        names = raw.get("names")
        if not isinstance(names, dict) or any(not isinstance(names.get(lang), str) for lang in LANGUAGES):
            raise PolicyError(f"{where}: 'names' needs a text for each of {', '.join(LANGUAGES)}")
        no_reason = _days(where, raw, "no_reason_days")
        quality = _days(where, raw, "quality_days")
        if quality < no_reason:
            raise PolicyError(f"{where}: 'quality_days' ({quality}) is shorter than 'no_reason_days' ({no_reason})")
        policies[key] = CategoryPolicy(key=key, names=names, no_reason_days=no_reason, quality_days=quality)
    return policies


def summary(policies: Mapping[str, CategoryPolicy], language: str) -> str:
    """The return-policy answer the bot gives, one line per category."""
    zh = language == "zh"
    lines = ["退货政策：" if zh else "Our return policy:"]
    for p in policies.values():
        name = p.names["zh" if zh else "en"]
        if zh:
            lines.append(f"• {name}：未拆封 {p.no_reason_days} 天无理由退货；质量问题 {p.quality_days} 天内可退")
        else:
            lines.append(f"• {name}: unopened, {p.no_reason_days} days no-reason return; "
                         f"quality problems, {p.quality_days} days")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        loaded = load_policies(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1)
    print(summary(loaded, "en"))
