"""After-sales rules loaded from `policies.yml` and validated at load.

A malformed file fails loudly with a `PolicyError` naming the file, the place and the
field, so a bot designer's typo stops the action server at start instead of surfacing as
a wrong answer to a shopper. Check an edit by hand with `python -m flows.policies [path]`.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_PATH = Path(__file__).with_name("policies.yml")
LANGUAGES = ("en", "zh")
REASON_KINDS = ("no_reason", "quality")
ALTERNATIVES = ("swap_duplicate", "coupon", "second_draw", "repair", "care_tips", "skin_advice", "human")
COMPENSATIONS = ("swap_duplicate", "coupon", "second_draw")
OUTCOMES = ("refund", "replacement")
SEVERITIES = ("low", "medium", "high")


class PolicyError(ValueError):
    """policies.yml is malformed; the message names the file, the place and the field."""


@dataclass(frozen=True)
class Reason:
    key: str
    kind: str  # "no_reason" | "quality"
    names: Mapping[str, str]
    keywords: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class ReasonRule:
    photo_required: bool = False
    fast_refund: bool = False
    return_item: bool = True
    expert_follow_up: bool = False
    exchange_first: bool = False
    outcome: str = "refund"


@dataclass(frozen=True)
class CategoryPolicy:
    key: str
    names: Mapping[str, str]
    no_reason_days: int
    quality_days: int
    exchange_days: int = 7
    accepted_reasons: tuple[str, ...] = ()
    opened_accepted_reasons: tuple[str, ...] | None = None
    no_reason_return_fee: Decimal = Decimal("0")
    opened_compensation: tuple[str, ...] = ()
    coupon_amount: Decimal = Decimal("0")
    second_draw_discount: int = 0
    opened_alternatives: tuple[str, ...] = ("human",)
    out_of_window_alternatives: tuple[str, ...] = ("human",)
    reason_rules: Mapping[str, ReasonRule] = field(default_factory=dict)

    def rule(self, reason: str) -> ReasonRule:
        return self.reason_rules.get(reason, ReasonRule())


@dataclass(frozen=True)
class RefundPolicy:
    standard_days: int = 3
    fast_hours: int = 24
    pickup_slot: str = "9:00-18:00"
    dropoff_days: int = 7


@dataclass(frozen=True)
class ComplaintCategory:
    key: str
    names: Mapping[str, str]
    queue: str
    keywords: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class ComplaintPolicy:
    first_response_minutes: int
    closure_hours: int
    repeat_window_days: int
    handoff_severity: str
    categories: Mapping[str, ComplaintCategory]
    severities: Mapping[str, Mapping[str, str]]
    severe_keywords: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Policies:
    timezone: str
    reasons: Mapping[str, Reason]
    categories: Mapping[str, CategoryPolicy]
    refund: RefundPolicy
    complaints: ComplaintPolicy

    def category(self, key: str) -> CategoryPolicy:
        """The policy of a product category; unknown categories get `general`'s rules."""
        return self.categories.get(key) or self.categories.get("general") or next(iter(self.categories.values()))

    # Mapping-like access kept for older callers (`summary(policies.values())`).
    def values(self) -> Any:
        return self.categories.values()

    def tzinfo(self) -> dt.tzinfo:
        return tz_for(self.timezone)

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tzinfo())

    def today(self) -> dt.date:
        return self.now().date()


def tz_for(name: str) -> dt.tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # no tz database on this machine: the shop's zone is China time in the demo
        return dt.timezone(dt.timedelta(hours=8), name)


# -- validation helpers ------------------------------------------------------------------


def _check_keys(where: str, raw: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    for key in raw:
        if key not in allowed:
            raise PolicyError(f"{where}: unknown field '{key}' (known fields: {', '.join(allowed)})")
    for key in required:
        if key not in raw:
            raise PolicyError(f"{where}: missing field '{key}'")


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _int(where: str, raw: Mapping[str, Any], name: str, default: int | None = None, minimum: int = 0) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PolicyError(f"{where}: '{name}' must be a whole number (>= {minimum}), got {value!r}")
    return value


def _days(where: str, raw: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PolicyError(f"{where}: '{name}' must be a whole number of days (>= 0), got {value!r}")
    return value


def _money(where: str, raw: Mapping[str, Any], name: str, default: str = "0") -> Decimal:
    value = raw.get(name, default)
    if isinstance(value, bool):
        raise PolicyError(f"{where}: '{name}' must be an amount of money, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PolicyError(f"{where}: '{name}' must be an amount of money, got {value!r}") from None
    if amount < 0:
        raise PolicyError(f"{where}: '{name}' must not be negative, got {value!r}")
    return amount.quantize(Decimal("0.01"))


def _bool(where: str, raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: '{name}' must be true or false, got {value!r}")
    return value


def _names(where: str, value: Any, field_name: str = "names") -> Mapping[str, str]:
    if not isinstance(value, dict) or any(not isinstance(value.get(lang), str) or not str(value[lang]).strip()
                                          for lang in LANGUAGES):
        raise PolicyError(f"{where}: '{field_name}' needs a text for each of {', '.join(LANGUAGES)}")
    return {lang: value[lang] for lang in LANGUAGES}


def _keywords(where: str, value: Any) -> Mapping[str, tuple[str, ...]]:
    if value is None:
        return {lang: () for lang in LANGUAGES}
    value = _mapping(f"{where}: 'keywords'", value)
    out: dict[str, tuple[str, ...]] = {}
    for lang in LANGUAGES:
        words = value.get(lang, [])
        if not isinstance(words, list) or any(not isinstance(w, str) or not w.strip() for w in words):
            raise PolicyError(f"{where}: 'keywords.{lang}' must be a list of non-empty texts")
        out[lang] = tuple(w.strip().lower() for w in words)
    for lang in value:
        if lang not in LANGUAGES:
            raise PolicyError(f"{where}: 'keywords' has unknown language '{lang}' (use {', '.join(LANGUAGES)})")
    return out


def _key_list(where: str, raw: Mapping[str, Any], name: str, allowed: tuple[str, ...] | Mapping[str, Any],
              default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = raw.get(name, list(default))
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: '{name}' must be a list")
    for v in value:
        if v not in allowed:
            raise PolicyError(f"{where}: '{name}' has unknown value '{v}' (allowed: {', '.join(allowed)})")
    return tuple(value)


# -- loading ----------------------------------------------------------------------------

_CATEGORY_FIELDS = ("names", "no_reason_days", "quality_days", "exchange_days", "accepted_reasons",
                    "opened_accepted_reasons", "no_reason_return_fee", "opened_compensation", "coupon_amount",
                    "second_draw_discount", "opened_alternatives", "out_of_window_alternatives", "reason_rules")
_RULE_FIELDS = ("photo_required", "fast_refund", "return_item", "expert_follow_up", "exchange_first", "outcome")


def _reason(where: str, key: str, raw: Any) -> Reason:
    raw = _mapping(where, raw)
    _check_keys(where, raw, ("kind", "names", "keywords"), ("kind", "names"))
    if raw["kind"] not in REASON_KINDS:
        raise PolicyError(f"{where}: 'kind' must be one of {', '.join(REASON_KINDS)}, got {raw['kind']!r}")
    return Reason(key=key, kind=raw["kind"], names=_names(where, raw["names"]),
                  keywords=_keywords(where, raw.get("keywords")))


def _rule(where: str, raw: Any) -> ReasonRule:
    raw = _mapping(where, raw)
    _check_keys(where, raw, _RULE_FIELDS)
    outcome = raw.get("outcome", "refund")
    if outcome not in OUTCOMES:
        raise PolicyError(f"{where}: 'outcome' must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    return ReasonRule(
        photo_required=_bool(where, raw, "photo_required", False),
        fast_refund=_bool(where, raw, "fast_refund", False),
        return_item=_bool(where, raw, "return_item", True),
        expert_follow_up=_bool(where, raw, "expert_follow_up", False),
        exchange_first=_bool(where, raw, "exchange_first", False),
        outcome=outcome,
    )


def _category(where: str, key: str, raw: Any, reasons: Mapping[str, Reason]) -> CategoryPolicy:
    raw = _mapping(where, raw)
    _check_keys(where, raw, _CATEGORY_FIELDS, ("names", "no_reason_days", "quality_days"))
    names = _names(where, raw["names"])
    no_reason = _days(where, raw, "no_reason_days")
    quality = _days(where, raw, "quality_days")
    if quality < no_reason:
        raise PolicyError(f"{where}: 'quality_days' ({quality}) is shorter than 'no_reason_days' ({no_reason})")
    accepted = _key_list(where, raw, "accepted_reasons", reasons, tuple(reasons))
    opened_accepted: tuple[str, ...] | None = None
    if "opened_accepted_reasons" in raw:
        opened_accepted = _key_list(where, raw, "opened_accepted_reasons", reasons)
        for r in opened_accepted:
            if r not in accepted:
                raise PolicyError(f"{where}: 'opened_accepted_reasons' has '{r}', which is not in 'accepted_reasons'")
    rules_raw = _mapping(f"{where}: 'reason_rules'", raw.get("reason_rules") or {})
    rules: dict[str, ReasonRule] = {}
    for reason_key, rule_raw in rules_raw.items():
        if reason_key not in accepted:
            raise PolicyError(f"{where}: 'reason_rules' has '{reason_key}', which is not in 'accepted_reasons'")
        rules[reason_key] = _rule(f"{where}: reason_rules.{reason_key}", rule_raw)
    compensation = _key_list(where, raw, "opened_compensation", COMPENSATIONS)
    coupon = _money(where, raw, "coupon_amount")
    if "coupon" in compensation and coupon <= 0:
        raise PolicyError(f"{where}: 'opened_compensation' offers a coupon, so 'coupon_amount' must be more than 0")
    discount = _int(where, raw, "second_draw_discount", 0)
    if discount > 100:
        raise PolicyError(f"{where}: 'second_draw_discount' is a percentage (0-100), got {discount}")
    if "second_draw" in compensation and discount <= 0:
        raise PolicyError(f"{where}: 'opened_compensation' offers a second draw, so 'second_draw_discount' must be set")
    return CategoryPolicy(
        key=key, names=names, no_reason_days=no_reason, quality_days=quality,
        exchange_days=_days(where, raw, "exchange_days", no_reason),
        accepted_reasons=accepted, opened_accepted_reasons=opened_accepted,
        no_reason_return_fee=_money(where, raw, "no_reason_return_fee"),
        opened_compensation=compensation, coupon_amount=coupon, second_draw_discount=discount,
        opened_alternatives=_key_list(where, raw, "opened_alternatives", ALTERNATIVES, ("human",)),
        out_of_window_alternatives=_key_list(where, raw, "out_of_window_alternatives", ALTERNATIVES, ("human",)),
        reason_rules=rules,
    )


def _complaints(where: str, raw: Any) -> ComplaintPolicy:
    raw = _mapping(where, raw)
    _check_keys(where, raw, ("first_response_minutes", "closure_hours", "repeat_window_days", "handoff_severity",
                             "categories", "severities", "severe_keywords"),
                ("first_response_minutes", "closure_hours", "categories", "severities"))
    cats_raw = _mapping(f"{where}: 'categories'", raw["categories"])
    if not cats_raw:
        raise PolicyError(f"{where}: 'categories' needs at least one complaint category")
    cats: dict[str, ComplaintCategory] = {}
    for key, c in cats_raw.items():
        w = f"{where}: category '{key}'"
        c = _mapping(w, c)
        _check_keys(w, c, ("names", "queue", "keywords"), ("names", "queue"))
        if not isinstance(c["queue"], str) or not c["queue"].strip():
            raise PolicyError(f"{w}: 'queue' must be the name of a team queue")
        cats[key] = ComplaintCategory(key=key, names=_names(w, c["names"]), queue=c["queue"],
                                      keywords=_keywords(w, c.get("keywords")))
    sev_raw = _mapping(f"{where}: 'severities'", raw["severities"])
    if set(sev_raw) != set(SEVERITIES):
        raise PolicyError(f"{where}: 'severities' must name exactly {', '.join(SEVERITIES)}")
    severities = {k: _names(f"{where}: severities.{k}", sev_raw[k], k) for k in SEVERITIES}
    handoff = raw.get("handoff_severity", "high")
    if handoff not in SEVERITIES:
        raise PolicyError(f"{where}: 'handoff_severity' must be one of {', '.join(SEVERITIES)}, got {handoff!r}")
    first = _int(where, raw, "first_response_minutes", minimum=1)
    closure = _int(where, raw, "closure_hours", minimum=1)
    if closure * 60 < first:
        raise PolicyError(f"{where}: 'closure_hours' ({closure} h) is sooner than 'first_response_minutes' ({first} min)")
    return ComplaintPolicy(
        first_response_minutes=first, closure_hours=closure,
        repeat_window_days=_days(where, raw, "repeat_window_days", 30),
        handoff_severity=handoff, categories=cats, severities=severities,
        severe_keywords=_keywords(where, raw.get("severe_keywords")),
    )


def read_yaml_mapping(path: Path, error: type[PolicyError], what: str, text: str | None = None) -> dict[str, Any]:
    """A bot designer's YAML file as a mapping, or `error` naming the file and what is wrong.
    `text`: the file's content, already read (flows/rules.py validates exactly what it hashed)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8") if text is None else text)
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of {what}")
    return data


def load_policies(path: Path = DEFAULT_PATH, text: str | None = None) -> Policies:
    data = read_yaml_mapping(path, PolicyError, "policies", text)
    if not isinstance(data.get("categories"), dict) or not data["categories"]:
        raise PolicyError(f"{path}: expected a 'categories' mapping with at least one category")
    _check_keys(str(path), data, ("timezone", "reasons", "refund", "categories", "complaints"),
                ("reasons", "categories", "complaints"))
    timezone = data.get("timezone", "Asia/Shanghai")
    if not isinstance(timezone, str):
        raise PolicyError(f"{path}: 'timezone' must be a time zone name like Asia/Shanghai")
    reasons_raw = _mapping(f"{path}: 'reasons'", data["reasons"])
    reasons = {key: _reason(f"{path}: reason '{key}'", key, raw) for key, raw in reasons_raw.items()}
    if not reasons:
        raise PolicyError(f"{path}: 'reasons' needs at least one return reason")
    refund_raw = _mapping(f"{path}: 'refund'", data.get("refund") or {})
    _check_keys(f"{path}: 'refund'", refund_raw, ("standard_days", "fast_hours", "pickup_slot", "dropoff_days"))
    refund = RefundPolicy(
        standard_days=_days(f"{path}: 'refund'", refund_raw, "standard_days", 3),
        fast_hours=_int(f"{path}: 'refund'", refund_raw, "fast_hours", 24, minimum=1),
        pickup_slot=str(refund_raw.get("pickup_slot", "9:00-18:00")),
        dropoff_days=_days(f"{path}: 'refund'", refund_raw, "dropoff_days", 7),
    )
    categories = {key: _category(f"{path}: category '{key}'", key, raw, reasons)
                  for key, raw in data["categories"].items()}
    return Policies(timezone=timezone, reasons=reasons, categories=categories, refund=refund,
                    complaints=_complaints(f"{path}: 'complaints'", data["complaints"]))


def summary(policies: Policies | Mapping[str, CategoryPolicy], language: str) -> str:
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
    if isinstance(policies, Policies):
        if zh:
            lines.append("天数从签收当天算起。盲盒拆封后如无质量问题不退款，可换同系列重复款或领取优惠券；"
                         "护肤品拆封后仅过敏可退（极速退款）；运输漏液直接补发。")
        else:
            lines.append("Days count from delivery. Opened blind boxes without a defect are not refunded, but you "
                         "can swap a duplicate or get a coupon; opened skincare is refunded fast for an allergic "
                         "reaction; anything that leaked in transit is replaced right away.")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        loaded = load_policies(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(summary(loaded, "en"))
    print(f"{len(loaded.reasons)} reasons, {len(loaded.categories)} categories, "
          f"{len(loaded.complaints.categories)} complaint categories: OK")
