"""The after-sales decisions, by policy. Pure functions: same facts, same answer.

`decide_return` is called as the conversation goes: with what is known so far it either
says which fact it still needs (`missing`) or gives the outcome and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Sequence

from flows.orders import Order, OrderItem, Variant
from flows.policies import CategoryPolicy, Policies

# outcomes
REFUND = "refund"
FAST_REFUND = "fast_refund"
REPLACEMENT = "replacement"
COMPENSATION = "compensation"
EXCHANGE_FIRST = "exchange_first"
REFUSED = "refused"
PENDING = "pending"  # more facts needed
EXCHANGE = "exchange"


@dataclass(frozen=True)
class ReturnDecision:
    outcome: str
    why: str  # a code; texts.yml explains it: why.<code> / refused.<code>
    category: CategoryPolicy
    reason: str | None = None
    missing: str | None = None  # the slot to ask next
    days: int | None = None  # days since delivery
    window: int | None = None  # the window that applied
    deadline: dt.date | None = None  # last day of that window
    quality_deadline: dt.date | None = None  # when a no-reason return is refused but a quality one is still open
    refund_amount: Decimal | None = None
    fee: Decimal = Decimal("0")
    return_item: bool = True
    options: tuple[str, ...] = ()  # choices offered (resolution slot)
    alternatives: tuple[str, ...] = ()  # offered when refused
    expert_follow_up: bool = False
    photo_required: bool = False

    @property
    def final(self) -> bool:
        return self.missing is None


def _deadline(order: Order, days: int) -> dt.date | None:
    return order.delivered_on + dt.timedelta(days=days) if order.delivered_on else None


def decide_return(policies: Policies, order: Order, item: OrderItem, reason: str | None, *, today: dt.date,
                  opened: str | None = None, photo: str | None = None, resolution: str | None = None,
                  return_method: str | None = None) -> ReturnDecision:
    """What happens to a return request, given what the shopper told us so far.

    `opened` is "opened"/"unopened"/None (the shop's own knowledge in `item.opened` wins);
    `resolution` is the shopper's pick among `options`; `return_method` "pickup"/"dropoff".
    """
    cat = policies.category(item.category)
    base: dict[str, Any] = {"category": cat}
    if not order.delivered:
        return ReturnDecision(REFUSED, "not_delivered", **base, alternatives=("human",))
    days = order.days_since_delivery(today) or 0
    longest = max(cat.quality_days, cat.no_reason_days)
    if days > longest:  # no reason can succeed any more: say so before asking anything
        return ReturnDecision(REFUSED, "out_of_window", **base, reason=reason, days=days, window=longest,
                              deadline=_deadline(order, longest), alternatives=cat.out_of_window_alternatives)
    if reason is None:
        return ReturnDecision(PENDING, "", **base, missing="return_reason", days=days)
    if reason not in cat.accepted_reasons or reason not in policies.reasons:
        return ReturnDecision(REFUSED, "reason_not_accepted", **base, reason=reason, days=days,
                              alternatives=("human",))
    if item.opened is not None:
        opened = "opened" if item.opened else "unopened"
    kind = policies.reasons[reason].kind
    rule = cat.rule(reason)
    base.update(reason=reason, days=days)

    if kind == "quality":
        window = cat.quality_days
        deadline = _deadline(order, window)
        if days > window:
            return ReturnDecision(REFUSED, "out_of_window", **base, window=window, deadline=deadline,
                                  alternatives=cat.out_of_window_alternatives)
        if cat.opened_accepted_reasons is not None and reason not in cat.opened_accepted_reasons:
            if opened is None:
                return ReturnDecision(PENDING, "", **base, missing="item_opened", window=window, deadline=deadline)
            if opened == "opened":
                return ReturnDecision(REFUSED, "opened_not_returnable", **base, window=window, deadline=deadline,
                                      alternatives=cat.opened_alternatives)
        if rule.photo_required and not photo:
            return ReturnDecision(PENDING, "", **base, missing="photo_url", window=window, deadline=deadline,
                                  photo_required=True)
        if rule.outcome == "replacement":
            return ReturnDecision(REPLACEMENT, "replacement", **base, window=window, deadline=deadline,
                                  return_item=rule.return_item)
        outcome, why = (FAST_REFUND, "fast_refund") if rule.fast_refund else (REFUND, "quality_window")
        decision = ReturnDecision(outcome, why, **base, window=window, deadline=deadline, refund_amount=item.total,
                                  return_item=rule.return_item, expert_follow_up=rule.expert_follow_up,
                                  photo_required=rule.photo_required)
        if rule.return_item and not return_method:
            return _pending(decision, "return_method")
        return decision

    # no-reason return
    window = cat.no_reason_days
    deadline = _deadline(order, window)
    if days > window:
        quality_deadline = _deadline(order, cat.quality_days) if days <= cat.quality_days else None
        return ReturnDecision(REFUSED, "out_of_window", **base, window=window, deadline=deadline,
                              quality_deadline=quality_deadline, alternatives=cat.out_of_window_alternatives)
    if rule.exchange_first and resolution != REFUND:
        return ReturnDecision(PENDING, EXCHANGE_FIRST, **base, missing="resolution", window=window, deadline=deadline,
                              options=(EXCHANGE, REFUND))
    if opened is None:
        return ReturnDecision(PENDING, "", **base, missing="item_opened", window=window, deadline=deadline)
    if opened == "opened":
        if cat.opened_compensation:
            choices = tuple(c for c in cat.opened_compensation if c != "swap_duplicate")
            if resolution not in choices:
                return ReturnDecision(PENDING, COMPENSATION, **base, missing="resolution", window=window,
                                      deadline=deadline, options=cat.opened_compensation)
            return ReturnDecision(COMPENSATION, "opened_compensation", **base, window=window, deadline=deadline,
                                  options=cat.opened_compensation, return_item=False)
        return ReturnDecision(REFUSED, "opened_not_returnable", **base, window=window, deadline=deadline,
                              alternatives=cat.opened_alternatives)
    fee = cat.no_reason_return_fee
    amount = max(Decimal("0.00"), item.total - fee)
    decision = ReturnDecision(REFUND, "no_reason_window", **base, window=window, deadline=deadline,
                              refund_amount=amount, fee=fee)
    if not return_method:
        return _pending(decision, "return_method")
    return decision


def _pending(decision: ReturnDecision, missing: str) -> ReturnDecision:
    from dataclasses import replace

    return replace(decision, missing=missing)


@dataclass(frozen=True)
class ExchangeDecision:
    ok: bool
    why: str  # "ok" | "not_delivered" | "out_of_window" | "no_stock"
    category: CategoryPolicy
    days: int | None = None
    window: int | None = None
    deadline: dt.date | None = None
    options: tuple[Variant, ...] = ()  # in-stock variants to choose from
    sold_out: tuple[Variant, ...] = field(default_factory=tuple)


def exchange_options(item: OrderItem, variants: Sequence[Variant]) -> tuple[list[Variant], list[Variant]]:
    """(in stock, sold out) variants the item can be exchanged for: same product, another variant."""
    others = [v for v in variants if v.sku != item.sku and v.swappable]
    return [v for v in others if v.in_stock], [v for v in others if not v.in_stock]


def decide_exchange(policies: Policies, order: Order, item: OrderItem, variants: Sequence[Variant], *,
                    today: dt.date) -> ExchangeDecision:
    cat = policies.category(item.category)
    if not order.delivered:
        return ExchangeDecision(False, "not_delivered", cat)
    days = order.days_since_delivery(today) or 0
    window = cat.exchange_days
    deadline = _deadline(order, window)
    if days > window:
        return ExchangeDecision(False, "out_of_window", cat, days=days, window=window, deadline=deadline)
    in_stock, sold_out = exchange_options(item, variants)
    if not in_stock:
        return ExchangeDecision(False, "no_stock", cat, days=days, window=window, deadline=deadline,
                                sold_out=tuple(sold_out))
    return ExchangeDecision(True, "ok", cat, days=days, window=window, deadline=deadline, options=tuple(in_stock),
                            sold_out=tuple(sold_out))


def pick_variant(item: OrderItem, matches: Sequence[Variant], current: Variant | None) -> list[Variant]:
    """Narrow several matching variants: prefer the ones that keep the current variant's
    other attributes ("43" for someone with black 42 means black 43)."""
    if len(matches) <= 1 or current is None:
        return list(matches)
    same = [m for m in matches if all(m.attributes.get(k) == v for k, v in current.attributes.items()
                                      if k != "size" and k in m.attributes)]
    return same or list(matches)


@dataclass(frozen=True)
class ComplaintAssessment:
    severity: str
    handoff_reason: str | None  # "severe_complaint" | "repeated_complaint" | None
    queue: str
    first_response_due: dt.datetime
    closure_due: dt.datetime
    repeated: bool


def assess_complaint(policies: Policies, category: str, severity: str | None, earlier_complaints: int,
                     now: dt.datetime) -> ComplaintAssessment:
    cp = policies.complaints
    sev: str = severity if severity is not None and severity in cp.severities else "medium"
    rank = {"low": 0, "medium": 1, "high": 2}
    severe = rank[sev] >= rank[cp.handoff_severity]
    repeated = earlier_complaints > 0
    reason = "severe_complaint" if severe else ("repeated_complaint" if repeated else None)
    cat = cp.categories.get(category) or next(iter(cp.categories.values()))
    return ComplaintAssessment(
        severity=sev, handoff_reason=reason, queue=cat.queue, repeated=repeated,
        first_response_due=now + dt.timedelta(minutes=cp.first_response_minutes),
        closure_due=now + dt.timedelta(hours=cp.closure_hours),
    )
