"""What an edit of policies.yml would have changed: the decisions of recent cases made again
under the edited rules and compared with the rules serving now.

    ./aftersales whatif flows/policies.yml.new [--days 30]

Every case decided in the last N days (returns, replacements, compensation, exchanges,
complaint tickets; not the demo's) is decided twice from the facts it recorded
(flows/recorded.py): under the current rules and under the edited ones. Where the two
differ (outcome, reason for a refusal, refund amount, a question the shopper would be
asked first; for a ticket its escalation, queue and promised times) the case is reported,
grouped by flow, product category, change and the rule fields that caused it, with
examples:

    returns · shoes: 3 refunds would become refusals (no-reason window 30 -> 14 days): AS10001 RT-482913 ...

`whatif(cases, old, new)` is the pure part (cases and two policies in, a `Report` out);
`main` reads the database and the files for the command line.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from flows.cases import Case, CaseStore
from flows.db import db_path
from flows.decisions import (
    EXCHANGE_FIRST,
    REFUND,
    ReturnDecision,
    assess_complaint,
    decide_exchange,
    decide_return,
)
from flows.orders import Variant
from flows.policies import Policies, PolicyError, ReasonRule, load_policies
from flows.recorded import FLOW_OF_KIND, INPUTS, NotReplayable, decided_on, order_and_item
from flows.replies import money

EXAMPLES = 5  # cases named per line
FLOW_NAMES = {"return": "returns", "exchange": "exchanges", "complaint": "complaints"}
# (singular, plural) of each outcome, as the report says them.
WORDS = {
    "refund": ("refund", "refunds"), "fast_refund": ("fast refund", "fast refunds"),
    "replacement": ("replacement", "replacements"), "compensation": ("compensation offer", "compensation offers"),
    "refused": ("refusal", "refusals"), "exchange": ("exchange", "exchanges"), "ticket": ("ticket", "tickets"),
    "severe_complaint": ("escalation to a person (severe)", "escalations to a person (severe)"),
    "repeated_complaint": ("escalation to a person (repeated)", "escalations to a person (repeated)"),
}
SLOT_WORDS = {"item_opened": "whether it was opened", "photo_url": "a photo", "resolution": "a choice of resolution",
              "return_reason": "a reason", "return_method": "pick-up or drop-off"}
NO_INPUTS = "recorded before cases kept the facts of their decision"
REPEAT_WINDOW = "complaints whose repeat_window_days changed (the earlier complaints are not counted again)"


@dataclass(frozen=True)
class Verdict:
    """One decision, as whatif compares them."""

    outcome: str  # a key of WORDS, or "pending" (the shopper would be asked `missing` first)
    why: str = ""
    amount: Decimal | None = None
    missing: str | None = None
    terms: str = ""  # a ticket's queue and promised times

    def key(self) -> tuple[Any, ...]:
        return self.outcome, self.why, self.amount, self.missing, self.terms

    def words(self, n: int, article: bool = False) -> str:
        """"refund", "refunds", "a refund"."""
        if self.outcome == "pending":
            asks = SLOT_WORDS.get(self.missing or "", self.missing or "")
            one, many = f"question for {asks} first", f"questions for {asks} first"
        else:
            one, many = WORDS.get(self.outcome, (self.outcome, self.outcome))
            if self.outcome == "refused" and self.why:
                why = self.why.replace("_", " ")
                one, many = f"{one} ({why})", f"{many} ({why})"
        if n != 1:
            return many
        return f"{'an' if one[0] in 'aeiou' else 'a'} {one}" if article else one


@dataclass(frozen=True)
class Change:
    """A case whose decision the edited rules would change."""

    case_id: str
    order_number: str | None
    flow: str  # "return" | "exchange" | "complaint"
    category: str  # the product category (a complaint's: its complaint category)
    reason: str | None
    days: int | None  # days from delivery to the decision
    before: Verdict
    after: Verdict
    cause: str  # the rule fields that differ for this case, as the designer wrote them

    def example(self) -> str:
        facts = [f for f in (self.case_id, self.reason, f"day {self.days}" if self.days is not None else "") if f]
        text = f"{self.order_number or 'no order'} ({', '.join(facts)})"
        if self.before.outcome == self.after.outcome and self.before.amount != self.after.amount:
            text += f" {money(self.before.amount)} -> {money(self.after.amount)}"
        return text


@dataclass
class Report:
    replayed: Counter[str] = field(default_factory=Counter)  # flow -> cases decided again
    changes: list[Change] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # why -> cases not decided again
    drifted: int = 0  # decided under earlier rules, decided otherwise by the current ones already
    notes: list[str] = field(default_factory=list)

    def groups(self) -> list[tuple[tuple[str, str, str, str, str], list[Change]]]:
        grouped: dict[tuple[str, str, str, str, str], list[Change]] = defaultdict(list)
        for c in self.changes:
            grouped[(c.flow, c.category, c.before.words(1), c.after.words(1), c.cause)].append(c)
        order = list(FLOW_NAMES)
        return sorted(grouped.items(), key=lambda kv: (order.index(kv[0][0]), -len(kv[1]), kv[0][1]))

    def lines(self) -> list[str]:
        total = sum(self.replayed.values())
        counts = ", ".join(f"{n} {name if n != 1 else name[:-1]}" for flow, name in FLOW_NAMES.items()
                           if (n := self.replayed[flow]))
        out = [f"{total} decided case(s) replayed" + (f" ({counts})" if counts else "") + ": "
               + (f"{len(self.changes)} would be decided differently." if self.changes else "nothing would change.")]
        for (flow, category, before, after, cause), changes in self.groups():
            first = changes[0]
            n = len(changes)
            if before == after:  # the same outcome, another amount or ticket
                what = f"{n} {first.before.words(n)} would change"
            else:
                what = f"{n} {first.before.words(n)} would become {first.after.words(n, article=True)}"
            examples = ", ".join(c.example() for c in changes[:EXAMPLES])
            more = f" and {n - EXAMPLES} more" if n > EXAMPLES else ""
            out.append(f"{FLOW_NAMES[flow]} · {category}: {what} ({cause}): {examples}{more}")
        for why, n in sorted(self.skipped.items()):
            out.append(f"not replayed: {n} case(s) {why}")
        if self.drifted:
            out.append(f"{self.drifted} case(s) were decided under earlier rules and the rules serving now already "
                       "decide them otherwise; compared with the rules serving now")
        out.extend(self.notes)
        return out


# -- deciding again ------------------------------------------------------------------------------------


def _can_exchange(policies: Policies, inputs: Mapping[str, Any], in_stock: bool) -> bool:
    order, item = order_and_item(None, inputs)
    variants = [Variant(sku="another", product_id="", label={}, stock=1)] if in_stock else []
    return decide_exchange(policies, order, item, variants, today=decided_on(inputs)).ok


def _return_verdict(d: ReturnDecision) -> Verdict:
    if d.missing is not None and d.missing != "return_method":  # pick-up or drop-off does not change the decision
        return Verdict("pending", missing=d.missing)
    return Verdict(d.outcome, d.why if d.outcome == "refused" else "", d.refund_amount)


def decide_again(policies: Policies, case: Case) -> Verdict:
    """The decision `policies` make from what `case` recorded (`NotReplayable` if it recorded too little)."""
    inputs = case.details.get(INPUTS)
    if not isinstance(inputs, Mapping) or inputs.get("flow") != FLOW_OF_KIND.get(case.kind):
        raise NotReplayable(NO_INPUTS)
    flow = inputs["flow"]
    if flow == "return":
        order, item = order_and_item(case.order_number, inputs)
        today = decided_on(inputs)
        facts: dict[str, Any] = {"opened": inputs.get("opened"), "photo": "photo" if inputs.get("photo") else None,
                                 "resolution": inputs.get("resolution"), "return_method": inputs.get("return_method")}
        reason = inputs.get("reason")
        d = decide_return(policies, order, item, reason, today=today, **facts)
        if d.why == EXCHANGE_FIRST and d.missing == "resolution" and \
                not _can_exchange(policies, inputs, bool(inputs.get("exchange_in_stock"))):
            # As the return form does: no exchange is offered that the exchange would refuse.
            d = decide_return(policies, order, item, reason, today=today, **{**facts, "resolution": REFUND})
        return _return_verdict(d)
    if flow == "exchange":
        order, item = order_and_item(case.order_number, inputs)
        variants = [Variant(sku="another", product_id="", label={}, stock=1)] if inputs.get("in_stock") else []
        e = decide_exchange(policies, order, item, variants, today=decided_on(inputs))
        return Verdict("exchange") if e.ok else Verdict("refused", e.why)
    try:
        now = dt.datetime.fromisoformat(str(inputs.get("decided_at")))
    except ValueError:
        raise NotReplayable(NO_INPUTS) from None
    if inputs.get("repeat_window_days") != policies.complaints.repeat_window_days:
        raise NotReplayable(REPEAT_WINDOW)
    severity = inputs.get("severity")
    a = assess_complaint(policies, str(inputs.get("category") or "other"), severity if isinstance(severity, str) else None,
                         int(inputs.get("earlier_complaints") or 0), now)
    cp = policies.complaints
    return Verdict(a.handoff_reason or "ticket",
                   terms=f"queue {a.queue}, severity {a.severity}, first response {cp.first_response_minutes} min, "
                         f"closure {cp.closure_hours} h")


# -- why: the rule fields this case depends on -----------------------------------------------------------


def _rule_terms(prefix: str, rule: ReasonRule) -> dict[str, str]:
    return {f"{prefix}.{name}": str(getattr(rule, name)).lower() for name in
            ("photo_required", "fast_refund", "return_item", "expert_follow_up", "exchange_first", "outcome")}


def _terms(policies: Policies, case: Case, inputs: Mapping[str, Any]) -> dict[str, str]:
    """The rule fields (as policies.yml names them) the decision of `case` reads."""
    flow = inputs.get("flow")
    if flow == "complaint":
        cp = policies.complaints
        category = str(inputs.get("category") or "other")
        queue = cp.categories[category].queue if category in cp.categories else "(first category's)"
        return {"handoff_severity": cp.handoff_severity, "first_response_minutes": str(cp.first_response_minutes),
                "closure_hours": str(cp.closure_hours), f"complaints.categories.{category}.queue": queue}
    category = str(inputs.get("category") or "")
    cat = policies.category(category)
    terms = {"category": cat.key if cat.key == category else f"{cat.key} (for {category})",
             "quality_days": str(cat.quality_days), "no_reason_days": str(cat.no_reason_days),
             "exchange_days": str(cat.exchange_days)}
    if flow == "exchange":
        return {k: v for k, v in terms.items() if k in ("category", "exchange_days")}
    reason = str(inputs.get("reason") or "")
    known = policies.reasons.get(reason)
    terms.update({
        f"reasons.{reason}.kind": known.kind if known else "(none)",
        f"accepted_reasons has {reason}": str(reason in cat.accepted_reasons).lower(),
        "opened_accepted_reasons": "(not set)" if cat.opened_accepted_reasons is None
        else str(reason in cat.opened_accepted_reasons).lower(),
        "no_reason_return_fee": str(cat.no_reason_return_fee), "opened_compensation": ", ".join(cat.opened_compensation),
        **_rule_terms(f"reason_rules.{reason}", cat.rule(reason)),
    })
    return terms


_FRIENDLY = {"no_reason_days": "no-reason window {} -> {} days", "quality_days": "quality window {} -> {} days",
             "exchange_days": "exchange window {} -> {} days", "first_response_minutes": "first response {} -> {} min",
             "closure_hours": "closure {} -> {} h", "no_reason_return_fee": "return fee ¥{} -> ¥{}"}


def cause(old: Policies, new: Policies, case: Case) -> str:
    inputs = case.details.get(INPUTS)
    assert isinstance(inputs, Mapping)
    before, after = _terms(old, case, inputs), _terms(new, case, inputs)
    reason = str(inputs.get("reason") or "")
    if inputs.get("flow") == "return" and not any(
            p.category(str(inputs.get("category") or "")).rule(reason).exchange_first for p in (old, new)):
        before.pop("exchange_days"), after.pop("exchange_days")  # only an exchange offered first reads it
    parts = []
    for name in before:
        if before[name] == after.get(name):
            continue
        if name in _FRIENDLY:
            parts.append(_FRIENDLY[name].format(before[name], after[name]))
        elif name.startswith("accepted_reasons has "):
            parts.append(f"{name[len('accepted_reasons has '):]} {'now' if after[name] == 'true' else 'no longer'} "
                         "in accepted_reasons")
        elif name == "opened_accepted_reasons":
            parts.append(f"opened_accepted_reasons {before[name]} -> {after[name]} for {inputs.get('reason')}")
        else:
            parts.append(f"{name} {before[name] or '(none)'} -> {after[name] or '(none)'}")
    return ", ".join(parts) or "rules this case reads are the same; a rule elsewhere in the file"


# -- the report ------------------------------------------------------------------------------------------


def whatif(cases: Iterable[Case], old: Policies, new: Policies) -> Report:
    """The decisions of `cases` under `old` (the rules serving) and `new` (the edit), compared."""
    report = Report()
    for case in cases:
        flow = FLOW_OF_KIND.get(case.kind)
        if flow is None:
            continue
        try:
            before, after = decide_again(old, case), decide_again(new, case)
        except NotReplayable as exc:
            report.skipped[str(exc)] += 1
            continue
        report.replayed[flow] += 1
        recorded = case.details.get("outcome")
        if isinstance(recorded, str) and before.outcome != "pending" and recorded != before.outcome:
            report.drifted += 1
        if before.key() == after.key():
            continue
        inputs = case.details[INPUTS]
        delivered, decided = inputs.get("delivered_on"), inputs.get("decided_on")
        days = (dt.date.fromisoformat(decided) - dt.date.fromisoformat(delivered)).days if delivered and decided else None
        report.changes.append(Change(
            case_id=case.id, order_number=case.order_number, flow=flow, category=str(inputs.get("category") or ""),
            reason=inputs.get("reason") if flow == "return" else None, days=days, before=before, after=after,
            cause=cause(old, new, case)))
    longer = [k for k, c in new.categories.items() if k in old.categories and c.exchange_days > old.categories[k].exchange_days]
    if longer:
        report.notes.append(f"note: exchange_days is longer for {', '.join(longer)}; exchanges refused for being late "
                            "make no case, so they are not replayed")
    return report


def main(new_path: Path, days: int, *, say: Callable[[str], None] = print, store: CaseStore | None = None,
         current: Path | None = None, now: float | None = None) -> int:
    """`./aftersales whatif`: 0 when it reported, 2 when the edited file (or the current one) is invalid."""
    from flows.rules import rules_dir

    current = current or rules_dir() / "policies.yml"
    try:
        new, old = load_policies(new_path), load_policies(current)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = store or CaseStore(db_path())
    since = (time.time() if now is None else now) - days * 86400
    cases: Sequence[Case] = store.made_since_sync(since)
    say(f"What if {new_path} had decided the cases of the last {days} day(s), instead of {current}:")
    for line in whatif(cases, old, new).lines():
        say(line)
    return 0
