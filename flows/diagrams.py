"""The flows as Mermaid diagrams, for docs/flows.md, made from what runs.

Each form's steps are its `SLOTS` table (flows/forms/*), in order, with the question the
bot asks (flows/texts.yml, English) and when it is asked (`Slot.when`). The branches are
found by running the decisions themselves on the policy file (flows/policies.yml) over
every case that can make a difference: each category, each window of delivery age (the
thresholds are the category's windows), whether another variant is in stock, each answer
a question can get (the reasons a category accepts, opened or not, the compensation
offered, ...). Where two cases lead to the same thing they share one branch. The return
and exchange decisions are the forms' own (`ReturnForm.decision`, `ExchangeForm._decide`,
run against a shop of one made-up order per case), the complaint's `assess_complaint`.

`python -m flows.diagrams` prints the section; `--write` puts it into docs/flows.md between
`<!-- flows:begin -->` and `<!-- flows:end -->`; tests/unit/test_flow_diagrams.py fails
when the committed docs differ from what this makes.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

from flows.decisions import (
    COMPENSATION,
    EXCHANGE,
    FAST_REFUND,
    PENDING,
    REFUND,
    REFUSED,
    REPLACEMENT,
    ReturnDecision,
    assess_complaint,
)
from flows.forms import FORMS, ComplaintForm, ExchangeForm, ProgressForm, ReturnForm
from flows.forms.base import FormLogic, Slot
from flows.orders import Order, OrderBackend, OrderItem, Variant
from flows.policies import CategoryPolicy, Policies, load_policies
from flows.replies import money
from flows.service import AfterSales
from flows.texts import Texts, load_texts

DOC = Path(__file__).resolve().parent.parent / "docs" / "flows.md"
BEGIN, END = "<!-- flows:begin -->", "<!-- flows:end -->"
LANG = "en"  # the diagrams are for the designer: in English (texts.yml has both)
TODAY = dt.date(2026, 1, 1)  # any day: only the days between delivery and today count
# Answers to a question in the return form: the choices its buttons carry (ReturnForm.ask),
# named in texts.yml as `<group>.<choice>`.
CHOICE_TEXTS = {"item_opened": "opened", "return_method": "method"}
# The resolutions that are not chosen in the return form but start the exchange flow
# (ReturnForm.read_resolution leaves them out; ReturnForm.ask makes them exchange buttons).
TO_EXCHANGE = (EXCHANGE, "swap_duplicate")
QUESTION_CHARS = 120  # longer questions are cut

T = TypeVar("T")


# -- the picture ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One box of a diagram and the arrows out of it. Equal nodes are drawn once."""

    label: str
    shape: str  # start | step | ask | split | end
    tone: str  # step | ask | split | ok | no | person | flow
    edges: tuple[tuple[str, "Node"], ...] = ()


SHAPES = {"start": '(["{}"])', "step": '["{}"]', "ask": '[/"{}"/]', "split": '{{"{}"}}', "end": '(["{}"])'}
TONES = {
    "step": "fill:#f5f7fa,stroke:#8a94a6", "ask": "fill:#eef3fb,stroke:#4a6fa5", "split": "fill:#fffbe6,stroke:#b59b00",
    "ok": "fill:#e6f4ea,stroke:#2e7d32", "no": "fill:#fdecea,stroke:#c62828", "person": "fill:#fff1e0,stroke:#ef6c00",
    "flow": "fill:#f3e8fd,stroke:#6a1b9a",
}


def _escape(text: str) -> str:
    """A label as Mermaid reads it (it wraps long lines itself): entity codes, a new line a <br/>."""
    return text.replace("#", "#35;").replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;") \
        .replace(">", "#gt;").replace("\n", "<br/>")


def mermaid(root: Node) -> str:
    """A ```mermaid flowchart of the graph under `root`."""
    ids: dict[Node, str] = {}
    lines = ["```mermaid", "flowchart TD"]
    tones: dict[str, list[str]] = {}

    def draw(node: Node) -> str:
        if node in ids:
            return ids[node]
        ids[node] = nid = f"n{len(ids)}"
        lines.append(f"  {nid}{SHAPES[node.shape].format(_escape(node.label))}")
        tones.setdefault(node.tone, []).append(nid)
        for label, child in node.edges:
            target = draw(child)
            lines.append(f'  {nid} -->|"{_escape(label)}"| {target}' if label else f"  {nid} --> {target}")
        return nid

    draw(root)
    for tone, members in tones.items():
        lines.append(f"  classDef {tone} {TONES[tone]}")
        lines.append(f"  class {','.join(members)} {tone}")
    lines.append("```")
    return "\n".join(lines)


def _merge(edges: Iterable[tuple[str, Node]]) -> tuple[tuple[str, Node], ...]:
    """Answers that lead to the same node become one arrow ("a · b")."""
    out: dict[Node, list[str]] = {}
    for label, node in edges:
        out.setdefault(node, []).append(label)
    return tuple((" · ".join(labels), node) for node, labels in out.items())


# -- the cases that can make a difference -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One made-up situation: the item's category, how long ago it was delivered (a range of
    days: `None` not yet), whether another variant is in stock."""

    category: str
    delivered: tuple[int, int | None] | None  # (first day, last day or None: and later)
    in_stock: bool = True

    @property
    def days(self) -> int | None:
        if self.delivered is None:
            return None
        first, last = self.delivered
        return last if last is not None else first


def age_ranges(thresholds: Iterable[int]) -> list[tuple[int, int | None] | None]:
    """Not delivered, then the ranges of delivery age the windows cut: 0..a, a+1..b, ..., later."""
    cuts = sorted(set(thresholds))
    ranges: list[tuple[int, int | None] | None] = [None]
    first = 0
    for cut in cuts:
        ranges.append((first, cut))
        first = cut + 1
    ranges.append((first, None))
    return ranges


def describe_ages(ranges: Sequence[tuple[int, int | None] | None]) -> str:
    """`≤ 30 days`, `31-90 days`, `more than 90 days`, `not delivered yet` (joined ranges merged)."""
    parts: list[str] = []
    spans: list[list[int | None]] = []
    for r in sorted((r for r in ranges if r is not None), key=lambda r: r[0]):
        if spans and spans[-1][1] is not None and spans[-1][1] + 1 == r[0]:
            spans[-1][1] = r[1]
        else:
            spans.append([r[0], r[1]])
    if None in ranges:
        parts.append("not delivered yet")
    for first, last in spans:
        assert first is not None
        if last is None:
            parts.append(f"delivered more than {first - 1} days ago" if first else "any time after delivery")
        elif first == 0:
            parts.append(f"delivered ≤ {last} days ago")
        else:
            parts.append(f"delivered {first}-{last} days ago")
    return " or ".join(parts)


DIMENSIONS: dict[str, tuple[str, Callable[[Case], Any], Callable[[Sequence[Any]], str]]] = {
    # name: (the question, the case's value, how a set of values reads)
    "category": ("which category?", lambda c: c.category, lambda vs: ", ".join(vs)),
    "delivered": ("when was it delivered?", lambda c: c.delivered, describe_ages),
    "in_stock": ("another variant in stock?", lambda c: c.in_stock,
                 lambda vs: "yes" if all(vs) else "no" if not any(vs) else "either"),
}


def split(cases: Sequence[Case], head: Callable[[Case], Any], build: Callable[[list[Case]], Node],
          names: Mapping[str, str] | None = None) -> Node | None:
    """A split on the first dimension what `head` gives depends on, or None when it depends
    on none: cases whose values give the same everywhere else go down one branch."""
    heads = {c: head(c) for c in cases}
    if len(set(heads.values())) == 1:
        return None
    for dim, (question, value, describe) in DIMENSIONS.items():
        values = list(dict.fromkeys(value(c) for c in cases))
        if len(values) < 2:
            continue
        # What a value of this dimension gives, for each combination of the others.
        outcome = {v: tuple(sorted((repr(replace_dim(c, dim)), repr(heads[c])) for c in cases if value(c) == v))
                   for v in values}
        if len(set(outcome.values())) == 1:
            continue
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for v in values:
            groups.setdefault(outcome[v], []).append(v)
        named = (lambda vs: ", ".join(names.get(v, v) for v in vs)) if dim == "category" and names else describe
        return Node(question, "split", "split", tuple(
            (named(vs), build([c for c in cases if value(c) in vs])) for vs in groups.values()))
    raise AssertionError("the cases differ in nothing")


def replace_dim(case: Case, dim: str) -> Case:
    """The case with `dim` blanked: what the other dimensions say."""
    if dim == "category":
        return replace(case, category="")
    if dim == "delivered":
        return replace(case, delivered=None)
    return replace(case, in_stock=True)


# -- a shop of one made-up order, for the forms' own decisions ----------------------------------------------------


class _Backend(OrderBackend):
    def __init__(self, variants: list[Variant]) -> None:
        self._variants = variants

    async def get_order(self, number: str) -> Order | None:
        return None

    async def recent_orders(self, customer_id: str, limit: int = 5) -> list[Order]:
        return []

    async def variants(self, product_id: str) -> list[Variant]:
        return self._variants


class _Shop(AfterSales):
    """The part of AfterSales the decisions use (policies, texts, today, variants in stock),
    without its stores: nothing is read or written."""

    def __init__(self, policies: Policies, texts: Texts, case: Case) -> None:
        self.policies, self.t = policies, texts
        self._clock = lambda: dt.datetime.combine(TODAY, dt.time(12), policies.tzinfo())
        other = Variant("ITEM-2", "ITEM", {LANG: "another one"}, stock=1 if case.in_stock else 0)
        self.orders = _Backend([Variant("ITEM-1", "ITEM", {LANG: "this one"}, stock=1), other])


def _done(coro: Awaitable[T]) -> T:
    """The value of a coroutine that never waits (the made-up shop answers at once)."""
    step = coro.__await__()
    try:
        next(step)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    raise RuntimeError("a decision waited for something: the diagrams need one that answers at once")


def _order(case: Case) -> tuple[Order, OrderItem]:
    item = OrderItem(sku="ITEM-1", product_id="ITEM", name={LANG: "item"}, category=case.category,
                     variant_label={LANG: "this one"}, quantity=1, unit_price=Decimal("100.00"))
    delivered = None if case.days is None else TODAY - dt.timedelta(days=case.days)
    order = Order(number="AS00000", customer_id=None, placed_on=TODAY - dt.timedelta(days=(case.days or 0) + 2),
                  delivered_on=delivered, status="delivered" if delivered else "shipped",
                  payment_method={LANG: "the original payment method"}, items=(item,))
    return order, item


# -- the diagrams ------------------------------------------------------------------------------------------------


class Diagrams:
    def __init__(self, policies: Policies | None = None, texts: Texts | None = None,
                 forms: Sequence[type[FormLogic]] = FORMS) -> None:
        self.policies = policies or load_policies()
        self.t = texts or load_texts()
        self.forms = {form.name: form for form in forms}
        self.decided_slots: set[str] = set()  # the return form's steps its decision asks for

    # words

    def question(self, slot: str, *keys: str) -> str:
        """What the bot asks for `slot`: the line of its text that asks (texts.yml `ask.<slot>[.<key>]`)."""
        for key in (*(f"ask.{slot}.{k}" for k in keys if k), f"ask.{slot}"):
            if self.t.has(key):
                lines = [line.strip() for line in self.t.texts[key][LANG].splitlines() if line.strip()]
                text = next((line for line in lines if "?" in line), lines[0] if lines else "")
                return text if len(text) <= QUESTION_CHARS else text[:QUESTION_CHARS - 1].rstrip() + "…"
        return ""

    def step_label(self, form: type[FormLogic], spec: Slot) -> str:
        asks = self.question(spec.name, form.name.removesuffix("_form"))
        label = spec.name + (f': "{asks}"' if asks else "")
        return label + (f"\n({spec.when})" if spec.when else "")

    def reason(self, key: str | None) -> str:
        r = self.policies.reasons.get(key or "")
        return r.names[LANG] if r else str(key)

    def alternatives(self, shop: _Shop, alternatives: Sequence[str], order: Order, item: OrderItem) -> str:
        buttons = _done(shop.alternative_buttons(alternatives, LANG, order, item))
        return "offers: " + " · ".join(b["title"] for b in buttons)

    # steps

    def steps(self, form: type[FormLogic], slots: Sequence[Slot], then: Node) -> Node:
        """The form's steps in the order of its table, then `then`."""
        node = then
        for spec in reversed(slots):
            node = Node(self.step_label(form, spec), "step", "step", (("", node),))
        return node

    def table(self, form: type[FormLogic]) -> str:
        rows = ["| step (slot) | the bot asks | read from any message | a new value clears | asked |",
                "| --- | --- | --- | --- | --- |"]
        for spec in form.SLOTS:
            by_case = [f"`{k}`" for k in self.t.texts if k.startswith(f"ask.{spec.name}.")]
            asks = self.question(spec.name, form.name.removesuffix("_form")) or (
                f"depends on the case: {', '.join(by_case)}" if by_case else "—")
            rows.append(f"| `{spec.name}` | {asks} | {'yes' if spec.volunteered else 'no'} | "
                        f"{', '.join(f'`{s}`' for s in spec.resets) or '—'} | {spec.when or 'while unknown'} |")
        return "\n".join(rows)

    # return / refund

    def return_tree(self, cat: CategoryPolicy) -> Node:
        thresholds = (cat.no_reason_days, cat.quality_days, cat.exchange_days)
        cases = [Case(cat.key, age, stock) for age in age_ranges(thresholds) for stock in (True, False)]

        def decide(state: Mapping[str, Any], case: Case) -> tuple[_Shop, Order, OrderItem, ReturnDecision]:
            shop = _Shop(self.policies, self.t, case)
            order, item = _order(case)
            return shop, order, item, _done(ReturnForm(shop).decision(state, order, item))

        def head(state: Mapping[str, Any], case: Case) -> tuple[Any, ...]:
            shop, order, item, d = decide(state, case)
            if d.missing is None:
                return ("end", self.verdict(shop, order, item, d, state))
            return ("ask", d.missing, d.why, d.outcome, self.pending(d), tuple(self.answers(shop, order, item, d)))

        def build(state: Mapping[str, Any], cases: list[Case]) -> Node:
            node = split(cases, lambda c: head(state, c), lambda part: build(state, part))
            if node is not None:
                return node
            shop, order, item, d = decide(state, cases[0])
            if d.missing is None:
                label, tone = self.verdict(shop, order, item, d, state)
                return Node(label, "end", tone)
            self.decided_slots.add(d.missing)
            edges = []
            for value, title in self.answers(shop, order, item, d):
                if value in TO_EXCHANGE:
                    edges.append((title, Node("the exchange flow starts,\nwith the order and item", "end", "flow")))
                else:
                    edges.append((title, build({**state, d.missing: value}, cases)))
            asks = self.question(d.missing, d.why, cat.key)
            decided = self.pending(d)
            label = f'{decided}\nthen asks {d.missing}: "{asks}"' if decided else f'{d.missing}: "{asks}"'
            return Node(label, "ask", "ask", _merge(edges))

        return build({}, cases)

    def answers(self, shop: _Shop, order: Order, item: OrderItem, d: ReturnDecision) -> list[tuple[str, str]]:
        """(choice, button title) for the question the decision still needs answered."""
        slot = d.missing or ""
        if slot == "return_reason":
            return [(r, self.reason(r)) for r in d.category.accepted_reasons]
        if slot == "photo_url":
            return [("photo", "a photo")]
        if slot == "resolution":
            out = []
            for option in d.options:
                if option == "swap_duplicate" and not _done(shop.can_exchange(order, item)):
                    continue  # not offered when the swap would be refused
                out.append((option, self.t(f"resolution.{option}", LANG, amount=money(d.category.coupon_amount),
                                           discount=d.category.second_draw_discount)))
            return out
        group = CHOICE_TEXTS.get(slot)
        if group is None:
            raise AssertionError(f"the return decision asks for {slot!r}: flows/diagrams.py does not know its answers")
        return [(key.split(".", 1)[1], self.t(key, LANG)) for key in self.t.texts if key.startswith(group + ".")]

    def pending(self, d: ReturnDecision) -> str:
        """What is decided already when only a detail is missing (a refund, then: how to send it back?)."""
        return "" if d.outcome == PENDING else self.outcome(d)

    def outcome(self, d: ReturnDecision) -> str:
        refund = self.policies.refund
        if d.outcome == REFUND:
            why = {"no_reason_window": f"no-reason return within {d.window} days",
                   "quality_window": f"quality return within {d.window} days"}.get(d.why, d.why)
            fee = f"minus {money(d.fee)} return shipping" if d.fee else "return shipping free"
            return f"✅ refund ({why}), {fee}; paid within {refund.standard_days} days of the courier scan"
        if d.outcome == FAST_REFUND:
            keep = ", no need to send it back" if not d.return_item else ""
            return f"✅ fast refund within {refund.fast_hours} hours{keep}"
        if d.outcome == REPLACEMENT:
            return "✅ replacement sent at once" + (", nothing to send back" if not d.return_item else "")
        return f"{d.outcome} ({d.why})"

    def verdict(self, shop: _Shop, order: Order, item: OrderItem, d: ReturnDecision,
                state: Mapping[str, Any]) -> tuple[str, str]:
        """(label, tone) of a final decision."""
        if d.outcome == REFUSED:
            why = {"not_delivered": "not delivered yet: nothing to return",
                   "out_of_window": f"refused: out of the {d.window}-day window",
                   "opened_not_returnable": "refused: opened, and this reason needs it unopened",
                   "reason_not_accepted": "refused: not a reason this category accepts"}.get(d.why, f"refused ({d.why})")
            if d.quality_deadline:
                why += f"\n(a quality return stays open up to {d.category.quality_days} days)"
            return f"{why}\n{self.alternatives(shop, d.alternatives, order, item)}", "no"
        if d.outcome == COMPENSATION:
            cat = d.category
            what = {"coupon": f"a {money(cat.coupon_amount)} coupon",
                    "second_draw": f"a second draw at {cat.second_draw_discount}% off"}.get(state.get("resolution") or "")
            return f"✅ no refund (opened, not faulty): {what or state.get('resolution')}", "ok"
        label = self.outcome(d)
        if d.expert_follow_up:
            return label + "\n+ a skincare expert takes over (handoff: allergy)", "person"
        return label, "ok"

    # exchange

    def exchange_tree(self, then: Sequence[Slot]) -> Node:
        """After the shared steps: the exchange decision, then the form's next step(s) `then`."""
        cases = [Case(cat.key, age, stock) for cat in self.policies.categories.values()
                 for age in age_ranges((cat.exchange_days,)) for stock in (True, False)]

        def head(case: Case) -> tuple[str, str]:
            shop = _Shop(self.policies, self.t, case)
            order, item = _order(case)
            d = _done(ExchangeForm(shop)._decide(order, item))
            if d.ok:
                return "\n".join(f'{spec.name}: "{self.question(spec.name, case.category)}"' for spec in then) + \
                    f"\n(buttons: what is in stock, and {self.t('exchange.refund_instead', LANG)})", "ask"
            if d.why == "no_stock":
                return ("refused: nothing else in stock\n"
                        f"offers: {self.t('exchange.refund_instead', LANG)} (the return flow) · "
                        f"{self.t('menu.human', LANG)}"), "no"
            if d.why == "out_of_window":
                return (f"refused: out of the {d.window}-day exchange window\n"
                        f"{self.alternatives(shop, d.category.out_of_window_alternatives, order, item)}"), "no"
            return "not delivered yet: nothing to exchange", "no"

        booked = Node("✅ exchange booked: a courier collects the old one,\nthe new one is sent", "end", "ok")

        def build(part: list[Case]) -> Node:
            names = {c.key: c.names[LANG] for c in self.policies.categories.values()}
            node = split(part, head, build, names)
            if node is not None:
                return node
            label, tone = head(part[0])
            if tone == "ask":
                return Node(label, "ask", "ask", (("an option in stock", booked),))
            return Node(label, "end", tone)

        return build(cases)

    # complaint

    def complaint_tree(self) -> Node:
        cp = self.policies.complaints
        now = dt.datetime.combine(TODAY, dt.time(12), self.policies.tzinfo())

        def head(severity: str, earlier: int) -> str | None:
            return assess_complaint(self.policies, next(iter(cp.categories)), severity, earlier, now).handoff_reason

        ticket = Node(f"✅ ticket for the category's team: a person answers within {cp.first_response_minutes} "
                      f"minutes,\nclosed within {cp.closure_hours} hours", "end", "ok")

        def handoff(reason: str) -> Node:
            return Node(f"ticket, and a person takes over at once\n(handoff: {reason})", "end", "person")

        def after(severity: str) -> Node:
            by_earlier = {earlier: head(severity, earlier) for earlier in (0, 1)}
            if len(set(by_earlier.values())) == 1:
                reason = by_earlier[0]
                return handoff(reason) if reason else ticket
            return Node(f"an earlier complaint by this shopper, order or chat\nin the last {cp.repeat_window_days} "
                        "days?", "split", "split", tuple(
                            ("yes" if earlier else "no", handoff(r) if r else ticket)
                            for earlier, r in by_earlier.items()))

        branches: dict[Node, list[str]] = {}
        for severity in cp.severities:
            branches.setdefault(after(severity), []).append(severity)
        return Node("how serious?", "split", "split", tuple((" / ".join(s), n) for n, s in branches.items()))

    # the section

    @staticmethod
    def shared_steps(form: type[FormLogic]) -> list[Slot]:
        """The leading steps the form reads with the shared readers (order, proof, item: base.py)."""
        out = []
        for spec in form.SLOTS:
            if getattr(form, spec.reader) is not getattr(FormLogic, spec.reader, None):
                break
            out.append(spec)
        return out

    def section(self) -> str:
        out = [BEGIN, "<!-- Made by `python -m flows.diagrams --write` from flows/forms/* (the SLOTS tables) and "
                      "flows/policies.yml: edit those, then run it; do not edit this part by hand. -->", ""]
        out += ["Each diagram is drawn from the code that runs: the steps are the form's `SLOTS` table (a step "
                "is skipped when the shopper already said it: every message is read whole), the branches come "
                "from running the form's decision on `flows/policies.yml` for every category, window of "
                "delivery age, stock and answer. `python -m flows.diagrams --write` redraws them after an edit; "
                "`tests/unit/test_flow_diagrams.py` fails while they are not redrawn.", ""]
        ret = self.forms.get(ReturnForm.name)
        if ret is not None:
            per_category = [(cat, self.return_tree(cat)) for cat in self.policies.categories.values()]
            shared = self.shared_steps(ret)
            rest = [s.name for s in ret.SLOTS[len(shared):] if s.name not in self.decided_slots]
            overview = self.steps(ret, shared, Node(
                "the item's category and the decision ask the rest\n(one diagram per category below)"
                + (f"\nnever asked, read from every message: {', '.join(rest)}" if rest else ""), "end", "flow"))
            out += ["### Return / refund (`return_form`)", "", self.table(ret), "",
                    mermaid(Node("a return or refund", "start", "flow", (("", overview),))), ""]
            for cat, tree in per_category:
                out += [f"#### Return of {cat.names[LANG]} (`{cat.key}`: no-reason {cat.no_reason_days} days, "
                        f"quality {cat.quality_days} days, exchange {cat.exchange_days} days)", "",
                        mermaid(Node(f"return of {cat.names[LANG]}", "start", "flow", (("", tree),))), ""]
        exc = self.forms.get(ExchangeForm.name)
        if exc is not None:
            shared = self.shared_steps(exc)
            tree = self.exchange_tree(exc.SLOTS[len(shared):])
            out += ["### Exchange (`exchange_form`)", "", self.table(exc), "",
                    mermaid(Node("an exchange", "start", "flow", (("", self.steps(exc, shared, tree)),))), ""]
        com = self.forms.get(ComplaintForm.name)
        if com is not None:
            queues = " · ".join(f"{c.names[LANG]} → `{c.queue}`" for c in self.policies.complaints.categories.values())
            out += ["### Complaint (`complaint_form`)", "", self.table(com), "",
                    f"The categories and the team each goes to: {queues}.", "",
                    mermaid(Node("a complaint", "start", "flow",
                                 (("", self.steps(com, com.SLOTS, self.complaint_tree())),))), ""]
        pro = self.forms.get(ProgressForm.name)
        if pro is not None:
            shown = Node("the case's status, history and next step;\nfor an order number, every case of the order",
                         "end", "ok")
            out += ["### Progress (`progress_form`)", "", self.table(pro), "",
                    mermaid(Node("where is my refund / case?", "start", "flow",
                                 (("", self.steps(pro, pro.SLOTS, shown)),))), ""]
        out.append(END)
        return "\n".join(out)


def render_into(text: str, diagrams: Diagrams | None = None) -> str:
    """`text` (docs/flows.md) with the part between the markers made anew."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC} has no {BEGIN} ... {END} part for the diagrams")
    return text[:start] + (diagrams or Diagrams()).section() + text[end + len(END):]


def main(argv: Sequence[str]) -> int:
    if "--write" in argv:
        DOC.write_text(render_into(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"Flow diagrams written into {DOC}")
        return 0
    if "--check" in argv:
        if render_into(DOC.read_text(encoding="utf-8")) != DOC.read_text(encoding="utf-8"):
            print(f"{DOC}: the flow diagrams are stale; run python -m flows.diagrams --write", file=sys.stderr)
            return 1
        return 0
    print(Diagrams().section())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
