"""The after-sales conversations: what to ask next, how to read the answer, what to say.

Rasa runs the forms (rasa_project/domain.yml) and calls the custom actions; the actions
hand the shopper's message to the `FormLogic` of the active form here and send back
what it returns. Everything is plain Python over the order backend and the case store,
so the flows can be tested without Rasa.

A form step gets the shopper's message in one of three modes:
- `activation`: the message that started the flow ("I want to return AS10001"): details
  found in it are used, nothing is asked about yet.
- `answer`: the answer to the question the form asked (`requested`). A value that does
  not fit is re-asked with a hint; a message that is clearly something else (a FAQ,
  another flow, cancel) is *rejected* so Rasa's rules handle it and the form resumes.
- `resume`: the form comes back after such an interruption; it just asks again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

from flows import parsing
from flows.cases import Case, CaseStore
from flows.decisions import (COMPENSATION, EXCHANGE, EXCHANGE_FIRST, FAST_REFUND, REFUND, REFUSED, REPLACEMENT,
                             ReturnDecision, assess_complaint, decide_exchange, decide_return, pick_variant)
from flows.knowledge import KnowledgeBase, load_knowledge
from flows.orders import Order, OrderBackend, OrderBackendError, OrderItem, Variant, make_backend
from flows.policies import Policies, load_policies
from flows.texts import Texts, load_texts

log = logging.getLogger(__name__)

FORM_INTENTS = {"return_form": "request_return", "exchange_form": "request_exchange",
                "complaint_form": "file_complaint", "progress_form": "check_progress"}
FAQ_INTENTS = ("ask_return_policy", "ask_return_shipping", "ask_size_advice", "ask_shoe_care",
               "ask_skincare_ingredients", "ask_skincare_allergy")
CHITCHAT_INTENTS = ("greet", "thanks", "goodbye", "bot_challenge", "out_of_scope")
CONTROL_INTENTS = ("cancel", "request_human")
# Intents with a rule of their own: when a form cannot read its answer in such a message,
# the form lets the rule handle it and then resumes.
DIGRESSION_INTENTS = frozenset(FAQ_INTENTS + CHITCHAT_INTENTS + CONTROL_INTENTS + tuple(FORM_INTENTS.values()))

# Slots each form owns. Order and item are shared, so a shopper who changes their mind
# ("actually, an exchange") keeps them.
SHARED_SLOTS = ("order_number", "item_sku")
FORM_SLOTS = {
    "return_form": ("order_number", "item_sku", "return_reason", "item_opened", "photo_url", "resolution",
                    "return_method"),
    "exchange_form": ("order_number", "item_sku", "new_variant"),
    "complaint_form": ("complaint_category", "order_number", "complaint_description", "complaint_photo",
                       "complaint_severity"),
    "progress_form": ("case_reference",),
}
ALL_FLOW_SLOTS = tuple(dict.fromkeys(s for slots in FORM_SLOTS.values() for s in slots))
NO_ORDER = "none"


# -- messages ---------------------------------------------------------------------------------


@dataclass
class Reply:
    text: str | None = None
    buttons: list[dict[str, str]] = field(default_factory=list)
    custom: dict[str, Any] | None = None


def choice_payload(value: str) -> str:
    """A button payload that answers the current question with `value`, whatever the NLU thinks."""
    return "/choose" + json.dumps({"choice": value}, ensure_ascii=False, separators=(",", ":"))


def intent_payload(intent: str, value: str | None = None) -> str:
    if value is None:
        return f"/{intent}"
    return f"/{intent}" + json.dumps({"choice": value}, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Inbound:
    """The shopper's latest message as the flows see it."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    choice: str | None = None  # value of a pressed /choose button (or a payload's `choice` entity)
    attachments: Sequence[Mapping[str, Any]] = ()

    @property
    def is_payload(self) -> bool:
        return self.text.startswith("/")

    @property
    def free_text(self) -> str:
        return "" if self.is_payload else self.text

    def digresses(self, own_intent: str | None, min_confidence: float = 0.0) -> bool:
        return (self.intent in DIGRESSION_INTENTS and self.intent != own_intent
                and (self.is_payload or self.confidence >= min_confidence))


@dataclass
class Context:
    lang: str
    customer_id: str | None = None
    conversation_id: str | None = None


@dataclass
class StepResult:
    updates: dict[str, Any] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    next_slot: str | None = None
    reject: bool = False


@dataclass
class Parsed:
    """One slot read from a message: `value`, or a `hint` (it was an attempt but wrong), or neither."""

    value: Any = None
    hint: Reply | None = None
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.value is not None


NOTHING = Parsed()


# -- formatting -----------------------------------------------------------------------------------


def money(amount: Decimal | str | None) -> str:
    return f"¥{Decimal(str(amount or 0)):,.2f}"


_WEEKDAYS = {"en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), "zh": ("一", "二", "三", "四", "五", "六", "日")}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fmt_date(d: dt.date | None, lang: str) -> str:
    if d is None:
        return "-"
    if lang == "zh":
        return f"{d.month}月{d.day}日（周{_WEEKDAYS['zh'][d.weekday()]}）"
    return f"{_WEEKDAYS['en'][d.weekday()]} {d.day} {_MONTHS[d.month - 1]}"


def fmt_datetime(t: dt.datetime, lang: str) -> str:
    return f"{fmt_date(t.date(), lang)} {t:%H:%M}"


# -- the service ------------------------------------------------------------------------------------


class AfterSales:
    """Policies, knowledge base, texts, order backend and case store, plus the four forms."""

    def __init__(self, policies: Policies | None = None, kb: KnowledgeBase | None = None, texts: Texts | None = None,
                 orders: OrderBackend | None = None, cases: CaseStore | None = None,
                 clock: Any = None) -> None:
        self.policies = policies or load_policies()
        self.kb = kb or load_knowledge(policies=self.policies)
        self.t = texts or load_texts()
        self._clock = clock  # () -> aware datetime; tests may freeze time
        self.orders = orders or make_backend(self.today())
        self.cases = cases or CaseStore()
        self.forms: dict[str, FormLogic] = {
            "return_form": ReturnForm(self), "exchange_form": ExchangeForm(self),
            "complaint_form": ComplaintForm(self), "progress_form": ProgressForm(self),
        }

    def now(self) -> dt.datetime:
        return self._clock() if self._clock else self.policies.now()

    def today(self) -> dt.date:
        return self.now().date()

    # shared helpers

    async def order(self, number: str | None) -> Order | None:
        if not number or number == NO_ORDER:
            return None
        try:
            return await self.orders.get_order(number)
        except OrderBackendError:
            log.exception("order backend failed")
            return None

    def menu_buttons(self, lang: str) -> list[dict[str, str]]:
        return [{"title": self.t(f"menu.{key}", lang), "payload": f"/{intent}"} for key, intent in
                (("return", "request_return"), ("exchange", "request_exchange"), ("complaint", "file_complaint"),
                 ("progress", "check_progress"), ("human", "request_human"))]

    def human_button(self, lang: str) -> dict[str, str]:
        return {"title": self.t("menu.human", lang), "payload": "/request_human"}

    def alternative_buttons(self, alternatives: Sequence[str], lang: str) -> list[dict[str, str]]:
        payloads = {"swap_duplicate": "/request_exchange", "repair": "/ask_shoe_care", "care_tips": "/ask_shoe_care",
                    "skin_advice": "/ask_skincare_ingredients", "human": "/request_human"}
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for alt in alternatives:
            payload = payloads.get(alt)
            if payload is None or payload in seen:
                continue
            seen.add(payload)
            out.append({"title": self.t(f"alternative.{alt}", lang), "payload": payload})
        if "/request_human" not in seen:
            out.append(self.human_button(lang))
        return out

    def category_name(self, category: str, lang: str) -> str:
        return self.policies.category(category).names[lang]

    def reason_name(self, reason: str | None, lang: str) -> str:
        r = self.policies.reasons.get(reason or "")
        return r.names[lang] if r else (reason or "")

    async def recent_orders_buttons(self, ctx: Context) -> list[dict[str, str]]:
        if not ctx.customer_id:
            return []
        try:
            orders = await self.orders.recent_orders(ctx.customer_id, 5)
        except OrderBackendError:
            return []
        buttons = []
        for o in orders:
            first = o.items[0].name[ctx.lang] if o.items else ""
            more = f" +{len(o.items) - 1}" if len(o.items) > 1 else ""
            when = (self.t("order.delivered_on", ctx.lang, date=fmt_date(o.delivered_on, ctx.lang)) if o.delivered
                    else self.t("order.on_its_way", ctx.lang))
            buttons.append({"title": f"{o.number} · {first}{more} · {when}", "payload": choice_payload(o.number)})
        return buttons

    # reading slots shared by several forms

    async def parse_order(self, inbound: Inbound, ctx: Context, allow_none: bool = False,
                          opportunistic: bool = False) -> Parsed:
        lang = ctx.lang
        candidate = None
        if inbound.choice:
            candidate = parsing.find_order_number(inbound.choice) or (inbound.choice if inbound.choice == NO_ORDER else None)
        if candidate is None:
            candidate = parsing.find_order_number(inbound.free_text)
        if candidate == NO_ORDER:
            return Parsed(NO_ORDER) if allow_none else NOTHING
        if candidate is None:
            if allow_none and not opportunistic and (parsing.is_skip(inbound.free_text)
                                                     or parsing.says_no_order(inbound.free_text)):
                return Parsed(NO_ORDER)
            if not opportunistic and parsing.looks_like_order_attempt(inbound.free_text):
                return Parsed(hint=Reply(self.t("hint.order_format", lang)))
            return NOTHING
        try:
            order = await self.orders.get_order(candidate)
        except OrderBackendError:
            log.exception("order backend failed")
            return Parsed(hint=Reply(self.t("hint.order_system_down", lang), [self.human_button(lang)]))
        if order is None:
            return Parsed(hint=Reply(self.t("hint.order_unknown", lang, number=candidate)))
        if ctx.customer_id and order.customer_id and order.customer_id != ctx.customer_id:
            return Parsed(hint=Reply(self.t("hint.order_not_yours", lang, number=candidate)))
        derived = {"item_sku": order.items[0].sku if len(order.items) == 1 else None}
        return Parsed(order.number, derived=derived)

    def parse_item(self, inbound: Inbound, order: Order, lang: str) -> Parsed:
        if inbound.choice and order.item(inbound.choice):
            return Parsed(inbound.choice)
        text = parsing.normalize(inbound.free_text)
        if not text:
            return NOTHING
        ordinals = {"1": 0, "first": 0, "第一": 0, "一": 0, "2": 1, "second": 1, "第二": 1, "二": 1,
                    "3": 2, "third": 2, "第三": 2, "三": 2}
        for word, index in ordinals.items():
            if (text == word or text.startswith(word + " ") or text.startswith(word + "个")) and index < len(order.items):
                return Parsed(order.items[index].sku)
        scored = []
        for item in order.items:
            names = [parsing.normalize(n) for n in (*item.name.values(), *item.variant_label.values())]
            score = 0
            for name in names:
                if name and (name in text or text in name):
                    score = max(score, len(name) if name in text else len(text))
                words = [w for w in name.replace("(", " ").split() if len(w) > 3]
                score = max(score, sum(len(w) for w in words if parsing.keyword_score(text, {"en": (w,)})))
                score = max(score, sum(3 for ch in set(name) if parsing.has_chinese(ch) and ch in text) // 2)
            scored.append((score, item))
        scored.sort(key=lambda s: -s[0])
        if scored and scored[0][0] > 0 and (len(scored) == 1 or scored[0][0] > scored[1][0]):
            return Parsed(scored[0][1].sku)
        return NOTHING

    def item_buttons(self, order: Order, lang: str) -> list[dict[str, str]]:
        return [{"title": i.title(lang), "payload": choice_payload(i.sku)} for i in order.items]

    # answers outside the forms

    def faq(self, intent: str, lang: str) -> list[Reply]:
        found = self.kb.answer(intent, lang)
        if found is None:
            return [Reply(self.t("fallback.rephrase", lang), self.menu_buttons(lang))]
        text, buttons = found
        return [Reply(text, buttons)]

    def handoff(self, reason: str, lang: str, context: Mapping[str, Any]) -> list[Reply]:
        payload = {"reason": reason, "language": lang, **{k: v for k, v in context.items() if v is not None}}
        return [Reply(self.t(f"handoff.{reason}", lang), custom={"handoff": payload})]

    def cancel(self, form: str | None, lang: str) -> list[Reply]:
        if form in FORM_INTENTS:
            return [Reply(self.t("cancel.done", lang, flow=self.t(f"flow.{form}", lang)), self.menu_buttons(lang))]
        return [Reply(self.t("cancel.nothing", lang), self.menu_buttons(lang))]

    def fallback(self, stage: int, inbound: Inbound, lang: str) -> list[Reply]:
        """Two stages: ask to rephrase (with the menu), then offer a person instead of guessing.
        A message that is only an order number or a case id gets a question about it instead."""
        text = inbound.free_text
        case_id = parsing.find_case_id(text)
        if case_id:
            return [Reply(self.t("fallback.case_id", lang, ref=case_id),
                          [{"title": self.t("menu.progress", lang), "payload": intent_payload("check_progress", case_id)},
                           self.human_button(lang)])]
        number = parsing.find_order_number(text)
        if number:
            return [Reply(self.t("fallback.order_number", lang, number=number), [
                {"title": self.t(f"menu.{key}", lang), "payload": intent_payload(intent, number)}
                for key, intent in (("return", "request_return"), ("exchange", "request_exchange"),
                                    ("progress", "check_progress"), ("complaint", "file_complaint"))])]
        if stage >= 2:
            return [Reply(self.t("fallback.offer_human", lang),
                          [self.human_button(lang), {"title": self.t("menu.start_over", lang), "payload": "/greet"}])]
        key = {"out_of_scope": "fallback.out_of_scope", "choose": "fallback.stale_button"}.get(
            inbound.intent or "", "fallback.rephrase")
        return [Reply(self.t(key, lang), self.menu_buttons(lang))]


# -- forms ----------------------------------------------------------------------------------------


class FormLogic:
    name = ""

    def __init__(self, app: AfterSales) -> None:
        self.app = app
        self.t = app.t

    @property
    def slots(self) -> tuple[str, ...]:
        return FORM_SLOTS[self.name]

    @property
    def own_intent(self) -> str:
        return FORM_INTENTS[self.name]

    async def step(self, mode: str, requested: str | None, inbound: Inbound, values: Mapping[str, Any],
                   ctx: Context) -> StepResult:
        state = {s: values.get(s) for s in ALL_FLOW_SLOTS}
        result = StepResult()
        if mode == "activation":
            for slot in ALL_FLOW_SLOTS:  # leftovers of a flow the shopper switched away from
                if slot not in self.slots and state.get(slot) is not None:
                    result.updates[slot] = state[slot] = None
            if state.get("order_number") == NO_ORDER and "order_number" in self.slots and self.name != "complaint_form":
                result.updates["order_number"] = state["order_number"] = None
            await self.on_activation(inbound, state, ctx, result)
        elif mode == "answer" and requested in self.slots:
            parsed = await self.parse(requested, inbound, state, ctx)
            if parsed.found:
                result.updates[requested] = state[requested] = parsed.value
                for k, v in parsed.derived.items():
                    result.updates[k] = state[k] = v
            else:
                if parsed.hint is None and self.rejects(requested, inbound):
                    return StepResult(reject=True)
                result.replies.append(parsed.hint or Reply(self.t(f"hint.{requested}", ctx.lang)))
                result.updates[requested] = state[requested] = None
            await self.on_answer(requested, inbound, state, ctx, result)
        result.next_slot = await self.next_slot(state, ctx, result)
        return result

    def rejects(self, requested: str, inbound: Inbound) -> bool:
        """Whether an unreadable answer is really something else for Rasa's rules."""
        return inbound.digresses(self.own_intent)

    async def on_activation(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        return None

    async def on_answer(self, requested: str, inbound: Inbound, state: dict[str, Any], ctx: Context,
                        result: StepResult) -> None:
        return None

    async def parse(self, slot: str, inbound: Inbound, state: dict[str, Any], ctx: Context) -> Parsed:
        raise NotImplementedError

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        raise NotImplementedError

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        raise NotImplementedError

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        raise NotImplementedError

    # helpers shared by the order-based forms

    async def _activate_with_order(self, inbound: Inbound, state: dict[str, Any], ctx: Context,
                                   result: StepResult, allow_none: bool = False) -> None:
        if state.get("order_number"):
            order = await self.app.order(state["order_number"])
            if order is None and state["order_number"] != NO_ORDER:
                result.updates["order_number"] = state["order_number"] = None
                result.updates["item_sku"] = state["item_sku"] = None
            return
        parsed = await self.app.parse_order(inbound, ctx, allow_none=allow_none, opportunistic=True)
        if parsed.found:
            result.updates["order_number"] = state["order_number"] = parsed.value
            for k, v in parsed.derived.items():
                result.updates[k] = state[k] = v
        elif parsed.hint:
            result.replies.append(parsed.hint)

    async def _order_and_item(self, state: dict[str, Any], result: StepResult) -> tuple[str | None, Order | None,
                                                                                        OrderItem | None]:
        """(slot to ask, order, item) for the order/item part of a form."""
        if not state.get("order_number"):
            return "order_number", None, None
        order = await self.app.order(state["order_number"])
        if order is None:
            result.updates["order_number"] = state["order_number"] = None
            return "order_number", None, None
        item = order.item(state["item_sku"]) if state.get("item_sku") else None
        if item is None:
            if len(order.items) == 1:
                item = order.items[0]
                result.updates["item_sku"] = state["item_sku"] = item.sku
            else:
                if state.get("item_sku"):
                    result.updates["item_sku"] = state["item_sku"] = None
                return "item_sku", order, None
        return None, order, item

    async def _ask_order(self, key: str, ctx: Context, allow_none: bool = False) -> list[Reply]:
        lang = ctx.lang
        buttons = await self.app.recent_orders_buttons(ctx)
        if buttons:
            text = self.t(f"ask.order_number.{key}", lang) + "\n" + self.t("ask.order_number.pick", lang)
        else:
            text = self.t(f"ask.order_number.{key}", lang) + "\n" + self.t("ask.order_number.type", lang)
        if allow_none:
            buttons.append({"title": self.t("complaint.no_order", lang), "payload": choice_payload(NO_ORDER)})
        return [Reply(text, buttons)]

    async def _chosen_or_ask(self, key: str, slot: str, values: Mapping[str, Any],
                             ctx: Context) -> tuple[Order, OrderItem] | list[Reply]:
        """The order and item chosen so far, or the question that still has to get them."""
        if slot == "order_number":
            return await self._ask_order(key, ctx)
        if slot == "item_sku":
            return await self._ask_item(values, ctx)
        order = await self.app.order(values.get("order_number"))
        item = order.item(values.get("item_sku") or "") if order else None
        if order is None or item is None:
            return await self._ask_order(key, ctx)
        return order, item

    async def _ask_item(self, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        order = await self.app.order(values.get("order_number"))
        if order is None:
            return [Reply(self.t("hint.order_number", ctx.lang))]
        return [Reply(self.t("ask.item_sku", ctx.lang, order=order.number), self.app.item_buttons(order, ctx.lang))]

    async def _parse_item(self, inbound: Inbound, state: Mapping[str, Any], ctx: Context) -> Parsed:
        order = await self.app.order(state.get("order_number"))
        if order is None:
            return NOTHING
        parsed = self.app.parse_item(inbound, order, ctx.lang)
        if not parsed.found and inbound.choice:
            return Parsed(hint=Reply(self.t("hint.item_sku", ctx.lang)))
        return parsed

    def reset(self) -> dict[str, Any]:
        return {slot: None for slot in ALL_FLOW_SLOTS}


# -- return / refund ----------------------------------------------------------------------------------


class ReturnForm(FormLogic):
    name = "return_form"

    async def decision(self, state: Mapping[str, Any], order: Order, item: OrderItem) -> ReturnDecision:
        return decide_return(self.app.policies, order, item, state.get("return_reason"), today=self.app.today(),
                             opened=state.get("item_opened"), photo=state.get("photo_url"),
                             resolution=state.get("resolution"), return_method=state.get("return_method"))

    async def on_activation(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        await self._activate_with_order(inbound, state, ctx, result)
        if not state.get("return_reason"):
            reason = self._reason_from(inbound.free_text)
            if reason:
                result.updates["return_reason"] = state["return_reason"] = reason
        if not state.get("photo_url"):
            photo = parsing.photo_from(inbound.attachments, inbound.free_text)
            if photo:
                result.updates["photo_url"] = state["photo_url"] = photo

    async def on_answer(self, requested: str, inbound: Inbound, state: dict[str, Any], ctx: Context,
                        result: StepResult) -> None:
        # details given before they were asked for ("AS10001, it's too small")
        if requested != "return_reason" and not state.get("return_reason") and not inbound.is_payload:
            reason = self._reason_from(inbound.free_text)
            if reason and requested in ("order_number", "item_sku"):
                result.updates["return_reason"] = state["return_reason"] = reason
        if requested != "photo_url" and not state.get("photo_url"):
            photo = parsing.photo_from(inbound.attachments, "")
            if photo:
                result.updates["photo_url"] = state["photo_url"] = photo

    def _reason_from(self, text: str) -> str | None:
        candidates = {k: r.keywords for k, r in self.app.policies.reasons.items()}
        return parsing.best_keyword_match(text, candidates)

    async def parse(self, slot: str, inbound: Inbound, state: dict[str, Any], ctx: Context) -> Parsed:
        lang = ctx.lang
        if slot == "order_number":
            return await self.app.parse_order(inbound, ctx)
        if slot == "item_sku":
            return await self._parse_item(inbound, state, ctx)
        if slot == "return_reason":
            reasons = self.app.policies.reasons
            value = inbound.choice if inbound.choice in reasons else None
            if value is None:
                value = parsing.exact_choice(inbound.free_text, {k: r.names.values() for k, r in reasons.items()})
            if value is None:
                value = self._reason_from(inbound.free_text)
            if value is None:
                return NOTHING
            order = await self.app.order(state.get("order_number"))
            item = order.item(state.get("item_sku") or "") if order else None
            if item is not None:
                cat = self.app.policies.category(item.category)
                if value not in cat.accepted_reasons:
                    names = "、".join if lang == "zh" else ", ".join
                    return Parsed(hint=Reply(self.t("hint.reason_not_accepted", lang, reason=self.app.reason_name(value, lang),
                                                    category=cat.names[lang],
                                                    reasons=names(self.app.reason_name(r, lang)
                                                                  for r in cat.accepted_reasons))))
            return Parsed(value, derived={"item_opened": None, "photo_url": state.get("photo_url"),
                                          "resolution": None, "return_method": None})
        if slot == "item_opened":
            value = inbound.choice if inbound.choice in ("opened", "unopened") else parsing.parse_opened(inbound.free_text)
            return Parsed(value) if value else NOTHING
        if slot == "photo_url":
            photo = parsing.photo_from(inbound.attachments, inbound.free_text)
            if photo:
                return Parsed(photo)
            if parsing.is_skip(inbound.free_text) or inbound.choice == "none":
                return Parsed(hint=Reply(self.t("hint.photo_required", lang), [self.app.human_button(lang)]))
            return NOTHING
        if slot == "resolution":
            order = await self.app.order(state.get("order_number"))
            item = order.item(state.get("item_sku") or "") if order else None
            if order is None or item is None:
                return NOTHING
            d = await self.decision(state, order, item)
            options = [o for o in d.options if o not in (EXCHANGE, "swap_duplicate")]
            value = inbound.choice if inbound.choice in options else None
            if value is None:
                words = {"refund": ("refund", "money back", "my money", "refund please", "退款", "退钱", "退货退款", "还是退"),
                         "coupon": ("coupon", "voucher", "discount code", "优惠券", "代金券", "券"),
                         "second_draw": ("second draw", "draw again", "another draw", "another box", "redraw",
                                         "re-draw", "再抽", "二次抽", "再来一抽", "重抽", "半价")}
                value = parsing.best_keyword_match(inbound.free_text, {k: {"any": w} for k, w in words.items()},
                                                   allowed=options)
            return Parsed(value, derived={"item_opened": state.get("item_opened")}) if value else NOTHING
        if slot == "return_method":
            value = inbound.choice if inbound.choice in ("pickup", "dropoff") else None
            if value is None:
                words = {"pickup": ("pick up", "pickup", "pick-up", "collect", "collection", "courier", "come and get",
                                    "上门", "取件", "来取", "快递员", "上门取件", "揽收"),
                         "dropoff": ("drop off", "drop-off", "dropoff", "drop it", "myself", "post it", "send it myself",
                                     "parcel locker", "自己寄", "自行", "驿站", "网点", "自己送", "丰巢", "快递柜")}
                value = parsing.best_keyword_match(inbound.free_text, {k: {"any": w} for k, w in words.items()})
            return Parsed(value) if value else NOTHING
        return NOTHING

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        ask, order, item = await self._order_and_item(state, result)
        if ask:
            return ask
        assert order is not None and item is not None
        reason = state.get("return_reason")
        if reason and reason not in self.app.policies.category(item.category).accepted_reasons:
            result.updates["return_reason"] = state["return_reason"] = None
            cat = self.app.policies.category(item.category)
            sep = "、" if ctx.lang == "zh" else ", "
            result.replies.append(Reply(self.t("hint.reason_not_accepted", ctx.lang,
                                               reason=self.app.reason_name(reason, ctx.lang), category=cat.names[ctx.lang],
                                               reasons=sep.join(self.app.reason_name(r, ctx.lang)
                                                                for r in cat.accepted_reasons))))
        d = await self.decision(state, order, item)
        return d.missing

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        lang = ctx.lang
        found = await self._chosen_or_ask("return", slot, values, ctx)
        if isinstance(found, list):
            return found
        order, item = found
        name = item.title(lang)
        cat = self.app.policies.category(item.category)
        if slot == "return_reason":
            buttons = [{"title": self.app.reason_name(r, lang), "payload": choice_payload(r)} for r in cat.accepted_reasons]
            return [Reply(self.t("ask.return_reason", lang, item=name, order=order.number), buttons)]
        d = await self.decision(values, order, item)
        if slot == "item_opened":
            key = "ask.item_opened.shoes" if item.category == "shoes" else "ask.item_opened"
            return [Reply(self.t(key, lang, item=name), [
                {"title": self.t("opened.unopened", lang), "payload": choice_payload("unopened")},
                {"title": self.t("opened.opened", lang), "payload": choice_payload("opened")}])]
        if slot == "photo_url":
            return [Reply(self.t("ask.photo_url", lang, item=name), [self.app.human_button(lang)])]
        if slot == "resolution":
            if d.why == EXCHANGE_FIRST:
                return [Reply(self.t("ask.resolution.exchange_first", lang, item=name), [
                    {"title": self.t("resolution.exchange", lang), "payload": "/request_exchange"},
                    {"title": self.t("resolution.refund", lang), "payload": choice_payload(REFUND)}])]
            buttons = []
            for option in d.options:
                if option == "swap_duplicate":
                    buttons.append({"title": self.t("resolution.swap_duplicate", lang), "payload": "/request_exchange"})
                else:
                    buttons.append({"title": self.t(f"resolution.{option}", lang, amount=money(cat.coupon_amount),
                                                    discount=cat.second_draw_discount),
                                    "payload": choice_payload(option)})
            return [Reply(self.t("ask.resolution.compensation", lang, item=name, category=cat.names[lang]), buttons)]
        if slot == "return_method":
            why = self._why(d, item, lang)
            fee = self.t("refund.fee_note", lang, fee=money(d.fee)) if d.fee else self.t("refund.free_shipping", lang)
            text = self.t("ask.return_method", lang, why=why, amount=money(d.refund_amount),
                          method=order.payment_method[lang], fee_note=fee)
            return [Reply(text, [{"title": self.t("method.pickup", lang), "payload": choice_payload("pickup")},
                                 {"title": self.t("method.dropoff", lang), "payload": choice_payload("dropoff")}])]
        return [Reply(self.t(f"hint.{slot}", lang))]

    def _why(self, d: ReturnDecision, item: OrderItem, lang: str) -> str:
        return self.t(f"why.{d.why}", lang, category=d.category.names[lang], item=item.title(lang), days=d.days,
                      window=d.window, deadline=fmt_date(d.deadline, lang), reason=self.app.reason_name(d.reason, lang))

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        order = await self.app.order(values.get("order_number"))
        item = order.item(values.get("item_sku") or "") if order else None
        if order is None or item is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        d = await self.decision(values, order, item)
        now = self.app.now()
        name = item.title(lang)
        details: dict[str, Any] = {"item_sku": item.sku, "item": {l: item.title(l) for l in ("en", "zh")},
                                   "category": item.category,
                                   "reason": d.reason, "decision": d.why, "days_since_delivery": d.days}
        common = {"order_number": order.number, "customer_id": ctx.customer_id or order.customer_id,
                  "conversation_id": ctx.conversation_id, "language": lang}
        if d.outcome == REFUSED:
            case = await self.app.cases.create("return", ["submitted", ("refused", d.why)], details=details, **common)
            updates.update(last_case_id=case.id, last_outcome="refused")
            return [self._refusal(d, order, item, lang)], updates
        if not d.final:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        if d.outcome in (REFUND, FAST_REFUND):
            details.update(refund_amount=str(d.refund_amount), refund_method=dict(order.payment_method),
                           return_fee=str(d.fee), return_method=values.get("return_method") if d.return_item else None,
                           photo=values.get("photo_url"))
            if d.outcome == FAST_REFUND:
                statuses: list[Any] = ["submitted", "refund_approved"]
                if d.expert_follow_up:
                    statuses.append("expert_assigned")
            else:
                statuses = ["submitted", "pickup_scheduled" if values.get("return_method") == "pickup" else "awaiting_dropoff"]
            case = await self.app.cases.create("return", statuses, details=details, **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            if d.outcome == FAST_REFUND:
                reply = Reply(self.t("accepted.fast_refund", lang, case_id=case.id, amount=money(d.refund_amount),
                                     method=order.payment_method[lang], hours=self.app.policies.refund.fast_hours,
                                     item=name))
                replies = [reply]
                if d.expert_follow_up:
                    replies.append(Reply(self.t("handoff.allergy", lang), custom={"handoff": {
                        "reason": "allergy", "case_id": case.id, "queue": "product_expert", "language": lang,
                        "order_number": order.number, "photo": values.get("photo_url")}}))
                return replies, updates
            next_step = self._next_step(values.get("return_method"), case.id, lang)
            text = self.t("accepted.refund", lang, case_id=case.id, why=self._why(d, item, lang),
                          amount=money(d.refund_amount), method=order.payment_method[lang],
                          days=self.app.policies.refund.standard_days, next_step=next_step)
            return [Reply(text)], updates
        if d.outcome == REPLACEMENT:
            details.update(replacement_sku=item.sku)
            case = await self.app.cases.create("replacement", ["submitted", "replacement_shipping"], details=details,
                                               **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            return [Reply(self.t("accepted.replacement", lang, case_id=case.id, item=name))], updates
        if d.outcome == COMPENSATION:
            choice = values.get("resolution")
            cat = d.category
            code = f"{'BBC' if choice == 'coupon' else 'BBD'}-{secrets.token_hex(3).upper()}"
            details.update(compensation=choice, code=code, coupon_amount=str(cat.coupon_amount),
                           discount_percent=cat.second_draw_discount)
            status = "coupon_issued" if choice == "coupon" else "second_draw_offered"
            case = await self.app.cases.create("compensation", ["submitted", status], details=details, **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            key = "accepted.coupon" if choice == "coupon" else "accepted.second_draw"
            return [Reply(self.t(key, lang, case_id=case.id, code=code, amount=money(cat.coupon_amount),
                              discount=cat.second_draw_discount, item=item.name[lang]))], updates
        return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates

    def _next_step(self, method: str | None, case_id: str, lang: str) -> str:
        refund = self.app.policies.refund
        if method == "dropoff":
            by = self.app.today() + dt.timedelta(days=refund.dropoff_days)
            return self.t("next.dropoff", lang, date=fmt_date(by, lang), case_id=case_id)
        tomorrow = self.app.today() + dt.timedelta(days=1)
        return self.t("next.pickup", lang, date=fmt_date(tomorrow, lang), slot=refund.pickup_slot)

    def _refusal(self, d: ReturnDecision, order: Order, item: OrderItem, lang: str) -> Reply:
        name = item.title(lang)
        reason = self.app.policies.reasons.get(d.reason or "")
        kind = reason.kind if reason else "quality"
        text = self.t(f"refused.{d.why}", lang, item=name, order=order.number, days=d.days, window=d.window,
                      deadline=fmt_date(d.deadline, lang), category=d.category.names[lang],
                      reason=self.app.reason_name(d.reason, lang),
                      kind=self.t(f"kind.{kind}", lang),
                      reasons=("、" if lang == "zh" else ", ").join(
                          self.app.reason_name(r, lang) for r in (d.category.opened_accepted_reasons or ())))
        if d.quality_deadline:
            text += "\n" + self.t("refused.quality_still_open", lang, date=fmt_date(d.quality_deadline, lang))
        text += "\n" + self.t("refused.alternatives", lang)
        return Reply(text, self.app.alternative_buttons(d.alternatives, lang))


# -- exchange ---------------------------------------------------------------------------------------------


class ExchangeForm(FormLogic):
    name = "exchange_form"

    async def on_activation(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        await self._activate_with_order(inbound, state, ctx, result)

    async def _variants(self, item: OrderItem) -> list[Variant]:
        try:
            return await self.app.orders.variants(item.product_id)
        except OrderBackendError:
            log.exception("order backend failed")
            return []

    async def parse(self, slot: str, inbound: Inbound, state: dict[str, Any], ctx: Context) -> Parsed:
        lang = ctx.lang
        if slot == "order_number":
            return await self.app.parse_order(inbound, ctx)
        if slot == "item_sku":
            return await self._parse_item(inbound, state, ctx)
        if slot == "new_variant":
            order = await self.app.order(state.get("order_number"))
            item = order.item(state.get("item_sku") or "") if order else None
            if item is None:
                return NOTHING
            variants = await self._variants(item)
            current = next((v for v in variants if v.sku == item.sku), None)
            if inbound.choice:
                chosen = [v for v in variants if v.sku == inbound.choice]
            else:
                chosen = parsing.variant_match(inbound.free_text, variants, lang)
            if not chosen:
                if inbound.choice or parsing.mentions_variant(inbound.free_text):
                    return Parsed(hint=Reply(self.t("hint.variant_unknown", lang)))
                return NOTHING
            chosen = pick_variant(item, chosen, current)
            if all(v.sku == item.sku for v in chosen):
                return Parsed(hint=Reply(self.t("hint.variant_same", lang, variant=item.variant_label[lang])))
            chosen = [v for v in chosen if v.sku != item.sku]
            usable = [v for v in chosen if v.swappable]
            if not usable:
                return Parsed(hint=Reply(self.t("hint.variant_not_swappable", lang, variant=chosen[0].label[lang])))
            in_stock = [v for v in usable if v.in_stock]
            if len(in_stock) == 1 or (in_stock and len(usable) == len(in_stock) == 1):
                return Parsed(in_stock[0].sku)
            if not in_stock:
                return Parsed(hint=Reply(self.t("hint.variant_out_of_stock", lang, variant=usable[0].label[lang])))
            return Parsed(hint=Reply(self.t("hint.variant_ambiguous", lang,
                                            variants=" / ".join(v.label[lang] for v in in_stock))))
        return NOTHING

    async def _decide(self, order: Order, item: OrderItem) -> Any:
        return decide_exchange(self.app.policies, order, item, await self._variants(item), today=self.app.today())

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        ask, order, item = await self._order_and_item(state, result)
        if ask:
            return ask
        assert order is not None and item is not None
        decision = await self._decide(order, item)
        if not decision.ok:
            return None
        if state.get("new_variant") and not any(v.sku == state["new_variant"] for v in decision.options):
            result.updates["new_variant"] = state["new_variant"] = None
        return None if state.get("new_variant") else "new_variant"

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        lang = ctx.lang
        found = await self._chosen_or_ask("exchange", slot, values, ctx)
        if isinstance(found, list):
            return found
        order, item = found
        decision = await self._decide(order, item)
        buttons = [{"title": v.label[lang], "payload": choice_payload(v.sku)} for v in decision.options[:10]]
        buttons.append({"title": self.t("exchange.refund_instead", lang), "payload": "/request_return"})
        key = "ask.new_variant.blind_box" if item.category == "blind_box" else "ask.new_variant"
        sold_out = ("、" if lang == "zh" else ", ").join(v.label[lang] for v in decision.sold_out)
        text = self.t(key, lang, item=item.name[lang], current=item.variant_label[lang],
                      in_stock=("、" if lang == "zh" else ", ").join(v.label[lang] for v in decision.options))
        if sold_out:
            text += "\n" + self.t("exchange.sold_out", lang, variants=sold_out)
        return [Reply(text, buttons)]

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        order = await self.app.order(values.get("order_number"))
        item = order.item(values.get("item_sku") or "") if order else None
        if order is None or item is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        decision = await self._decide(order, item)
        common = {"order_number": order.number, "customer_id": ctx.customer_id or order.customer_id,
                  "conversation_id": ctx.conversation_id, "language": lang}
        if not decision.ok:
            updates.update(last_outcome="refused", last_case_id=None)
            text = self.t(f"exchange.refused.{decision.why}", lang, item=item.title(lang), order=order.number,
                          days=decision.days, window=decision.window, deadline=fmt_date(decision.deadline, lang),
                          category=decision.category.names[lang])
            alternatives = ["human"]
            buttons = self.app.alternative_buttons(alternatives, lang)
            if decision.why == "no_stock":
                buttons.insert(0, {"title": self.t("exchange.refund_instead", lang), "payload": "/request_return"})
            return [Reply(text, buttons)], updates
        new = next((v for v in decision.options if v.sku == values.get("new_variant")), None)
        if new is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        details = {"item_sku": item.sku, "item": {l: item.title(l) for l in ("en", "zh")}, "category": item.category,
                   "new_sku": new.sku, "new_variant": dict(new.label)}
        case = await self.app.cases.create("exchange", ["submitted", "pickup_scheduled"], details=details, **common)
        updates.update(last_case_id=case.id, last_outcome="exchange")
        tomorrow = fmt_date(self.app.today() + dt.timedelta(days=1), lang)
        key = "accepted.swap" if item.category == "blind_box" else "accepted.exchange"
        text = self.t(key, lang, case_id=case.id, new=new.label[lang], old=item.variant_label[lang],
                      item=item.name[lang], date=tomorrow, slot=self.app.policies.refund.pickup_slot)
        if item.category == "shoes":
            text += "\n" + self.t("exchange.shoe_tip", lang)
        return [Reply(text)], updates


# -- complaint ----------------------------------------------------------------------------------------------


class ComplaintForm(FormLogic):
    name = "complaint_form"

    def _category_from(self, text: str) -> str | None:
        cats = self.app.policies.complaints.categories
        return parsing.best_keyword_match(text, {k: c.keywords for k, c in cats.items() if k != "other"})

    def _is_severe(self, text: str) -> bool:
        return parsing.keyword_score(text or "", self.app.policies.complaints.severe_keywords) > 0

    async def on_activation(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        await self._activate_with_order(inbound, state, ctx, result, allow_none=True)
        if not state.get("complaint_category"):
            cat = self._category_from(inbound.free_text)
            if cat:
                result.updates["complaint_category"] = state["complaint_category"] = cat
        if self._is_severe(inbound.free_text):
            result.updates["complaint_severity"] = state["complaint_severity"] = "high"

    async def on_answer(self, requested: str, inbound: Inbound, state: dict[str, Any], ctx: Context,
                        result: StepResult) -> None:
        if requested == "complaint_description" and state.get("complaint_description") and \
                self._is_severe(state["complaint_description"]):
            result.updates["complaint_severity"] = state["complaint_severity"] = "high"
        if requested != "complaint_photo" and not state.get("complaint_photo"):
            photo = parsing.photo_from(inbound.attachments, "")
            if photo:
                result.updates["complaint_photo"] = state["complaint_photo"] = photo

    def rejects(self, requested: str, inbound: Inbound) -> bool:
        if requested == "complaint_description":  # free text: only clear digressions are not descriptions
            return inbound.digresses(self.own_intent, min_confidence=0.7)
        return super().rejects(requested, inbound)

    async def parse(self, slot: str, inbound: Inbound, state: dict[str, Any], ctx: Context) -> Parsed:
        cp = self.app.policies.complaints
        if slot == "complaint_category":
            value = inbound.choice if inbound.choice in cp.categories else None
            value = value or parsing.exact_choice(inbound.free_text, {k: c.names.values() for k, c in cp.categories.items()})
            value = value or parsing.best_keyword_match(inbound.free_text, {k: c.keywords for k, c in cp.categories.items()})
            return Parsed(value) if value else NOTHING
        if slot == "order_number":
            parsed = await self.app.parse_order(inbound, ctx, allow_none=True)
            if parsed.found:
                parsed.derived = {}
            elif parsed.hint is None and not inbound.digresses(self.own_intent):
                return Parsed(hint=Reply(self.t("hint.order_number_or_none", ctx.lang)))
            return parsed
        if slot == "complaint_description":
            text = inbound.free_text.strip()
            if not text or (inbound.intent in CONTROL_INTENTS and inbound.digresses(self.own_intent, 0.7)):
                return NOTHING
            # A description mentions broken heels and late parcels, which the NLU may take
            # for a FAQ; only a question is treated as one.
            question = text.endswith(("?", "？")) or parsing.is_question(text)
            if parsing.text_is_substantial(text) and not (question and inbound.digresses(self.own_intent, 0.7)):
                return Parsed(text[:2000])
            if inbound.digresses(self.own_intent, min_confidence=0.7):
                return NOTHING
            return Parsed(hint=Reply(self.t("hint.complaint_description", ctx.lang)))
        if slot == "complaint_photo":
            photo = parsing.photo_from(inbound.attachments, inbound.free_text)
            if photo:
                return Parsed(photo)
            if inbound.choice == "none" or parsing.is_skip(inbound.free_text):
                return Parsed("none")
            return NOTHING
        if slot == "complaint_severity":
            value = inbound.choice if inbound.choice in cp.severities else None
            value = value or parsing.exact_choice(inbound.free_text, {k: v.values() for k, v in cp.severities.items()})
            if value is None:
                words = {"low": ("low", "minor", "small", "not serious", "a bit", "1", "轻微", "一般", "还好", "不严重", "小问题"),
                         "medium": ("medium", "serious", "quite", "moderate", "2", "较严重", "比较严重", "挺严重", "中等"),
                         "high": ("high", "severe", "very serious", "critical", "urgent", "3", "非常严重", "很严重",
                                  "特别严重", "严重", "紧急")}
                value = parsing.best_keyword_match(inbound.free_text, {k: {"any": w} for k, w in words.items()})
            return Parsed(value) if value else NOTHING
        return NOTHING

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        for slot in ("complaint_category", "order_number", "complaint_description", "complaint_photo",
                     "complaint_severity"):
            if not state.get(slot):
                return slot
        return None

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        lang = ctx.lang
        cp = self.app.policies.complaints
        if slot == "complaint_category":
            return [Reply(self.t("ask.complaint_category", lang),
                          [{"title": c.names[lang], "payload": choice_payload(k)} for k, c in cp.categories.items()])]
        if slot == "order_number":
            return await self._ask_order("complaint", ctx, allow_none=True)
        if slot == "complaint_description":
            return [Reply(self.t("ask.complaint_description", lang))]
        if slot == "complaint_photo":
            return [Reply(self.t("ask.complaint_photo", lang),
                          [{"title": self.t("complaint.skip_photo", lang), "payload": choice_payload("none")}])]
        if slot == "complaint_severity":
            return [Reply(self.t("ask.complaint_severity", lang),
                          [{"title": names[lang], "payload": choice_payload(k)} for k, names in cp.severities.items()])]
        return [Reply(self.t(f"hint.{slot}", lang))]

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        cp = self.app.policies.complaints
        now = self.app.now()
        order_number = values.get("order_number")
        order_number = None if order_number in (None, NO_ORDER) else order_number
        since = (now - dt.timedelta(days=cp.repeat_window_days)).timestamp()
        earlier = await self.app.cases.count_complaints(since, customer_id=ctx.customer_id, order_number=order_number,
                                                        conversation_id=ctx.conversation_id)
        category = values.get("complaint_category") or "other"
        assessment = assess_complaint(self.app.policies, category, values.get("complaint_severity"), earlier, now)
        details = {"category": category, "description": values.get("complaint_description"),
                   "photo": None if values.get("complaint_photo") in (None, "none") else values.get("complaint_photo"),
                   "severity": assessment.severity, "queue": assessment.queue, "repeated": assessment.repeated,
                   "first_response_due": assessment.first_response_due.isoformat(),
                   "closure_due": assessment.closure_due.isoformat()}
        statuses: list[Any] = ["open"]
        if assessment.handoff_reason:
            statuses.append(("escalated", assessment.handoff_reason))
        case = await self.app.cases.create("complaint", statuses, order_number=order_number,
                                           customer_id=ctx.customer_id, conversation_id=ctx.conversation_id,
                                           language=lang, details=details)
        updates.update(last_case_id=case.id, last_outcome="complaint")
        cat = cp.categories.get(category) or next(iter(cp.categories.values()))
        text = self.t("accepted.complaint", lang, case_id=case.id, category=cat.names[lang],
                      queue=self.t.get(f"queue.{assessment.queue}", lang, assessment.queue),
                      first_due=fmt_datetime(assessment.first_response_due, lang),
                      closure_due=fmt_datetime(assessment.closure_due, lang),
                      first_minutes=cp.first_response_minutes, closure_hours=cp.closure_hours)
        replies = [Reply(text)]
        if assessment.handoff_reason:
            replies.append(Reply(self.t(f"handoff.{assessment.handoff_reason}", lang), custom={"handoff": {
                "reason": assessment.handoff_reason, "ticket_id": case.id, "case_id": case.id, "queue": assessment.queue,
                "severity": assessment.severity, "language": lang, "order_number": order_number,
                "first_response_due": assessment.first_response_due.isoformat()}}))
        return replies, updates


# -- progress ------------------------------------------------------------------------------------------------


class ProgressForm(FormLogic):
    name = "progress_form"

    async def on_activation(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        text = inbound.choice or inbound.free_text
        ref = parsing.find_case_id(text) or parsing.find_order_number(text)
        if ref:
            parsed = await self._check(ref, ctx)
            if parsed.found:
                result.updates["case_reference"] = state["case_reference"] = parsed.value
            elif parsed.hint:
                result.replies.append(parsed.hint)

    async def _check(self, ref: str, ctx: Context) -> Parsed:
        lang = ctx.lang
        if parsing.find_case_id(ref):
            case = await self.app.cases.get(ref)
            if case is None:
                return Parsed(hint=Reply(self.t("hint.case_unknown", lang, ref=ref)))
            if ctx.customer_id and case.customer_id and case.customer_id != ctx.customer_id:
                return Parsed(hint=Reply(self.t("hint.case_not_yours", lang, ref=ref)))
            return Parsed(case.id)
        order = await self.app.order(ref)
        if order is None and not await self.app.cases.for_order(ref, 1):
            return Parsed(hint=Reply(self.t("hint.order_unknown", lang, number=ref)))
        if order is not None and ctx.customer_id and order.customer_id and order.customer_id != ctx.customer_id:
            return Parsed(hint=Reply(self.t("hint.order_not_yours", lang, number=ref)))
        return Parsed(ref)

    async def parse(self, slot: str, inbound: Inbound, state: dict[str, Any], ctx: Context) -> Parsed:
        text = inbound.choice or inbound.free_text
        ref = parsing.find_case_id(text) or parsing.find_order_number(text)
        if ref:
            return await self._check(ref, ctx)
        if parsing.looks_like_order_attempt(inbound.free_text) or parsing.looks_like_case_attempt(inbound.free_text):
            return Parsed(hint=Reply(self.t("hint.case_reference", ctx.lang)))
        return NOTHING

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        return None if state.get("case_reference") else "case_reference"

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        buttons = []
        last = values.get("last_case_id")
        if last:
            buttons.append({"title": f"{last} · {self.t('progress.latest', ctx.lang)}", "payload": choice_payload(last)})
        if ctx.customer_id:
            for case in await self.app.cases.for_customer(ctx.customer_id, 5):
                if case.id == last:
                    continue
                buttons.append({"title": f"{case.id} · {self.t(f'kind.{case.kind}', ctx.lang)}",
                                "payload": choice_payload(case.id)})
            if not buttons:
                buttons = await self.app.recent_orders_buttons(ctx)
        return [Reply(self.t("ask.case_reference", ctx.lang), buttons)]

    def describe(self, case: Case, lang: str) -> str:
        tz = self.app.policies.tzinfo()
        item = case.details.get("item")
        what = ""
        if isinstance(item, Mapping):
            what = item.get(lang) or item.get("en") or ""
        elif case.kind == "complaint":
            cats = self.app.policies.complaints.categories
            cat = cats.get(case.details.get("category", ""))
            what = cat.names[lang] if cat else ""
        history = " → ".join(
            f"{self.t.get(f'status.{h.status}', lang, h.status)} ({fmt_datetime(dt.datetime.fromtimestamp(h.at, tz), lang)})"
            for h in case.history)
        text = self.t("progress.case", lang, kind=self.t(f"kind.{case.kind}", lang), case_id=case.id, what=what,
                      order=case.order_number or "-", status=self.t.get(f"status.{case.status}", lang, case.status),
                      history=history)
        if case.details.get("refund_amount") and case.kind == "return" and case.status != "refused":
            text += "\n" + self.t("progress.refund", lang, amount=money(case.details["refund_amount"]))
        if case.kind == "complaint" and case.details.get("first_response_due"):
            due = dt.datetime.fromisoformat(case.details["closure_due"]).astimezone(tz)
            text += "\n" + self.t("progress.complaint_due", lang, closure_due=fmt_datetime(due, lang))
        nxt = self.t.get(f"next_status.{case.kind}.{case.status}", lang, "") or \
            self.t.get(f"next_status.{case.status}", lang, "")
        if nxt:
            text += "\n" + nxt
        return text

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        ref = values.get("case_reference") or ""
        if parsing.find_case_id(ref):
            case = await self.app.cases.get(ref)
            if case is None:
                return [Reply(self.t("hint.case_unknown", lang, ref=ref))], updates
            return [Reply(self.describe(case, lang))], updates
        cases = await self.app.cases.for_order(ref, 5)
        cases = [c for c in cases if c.status != "refused"] or cases
        if not cases:
            order = await self.app.order(ref)
            status = self.t.get(f"order_status.{order.status}", lang, order.status) if order else "-"
            when = fmt_date(order.delivered_on, lang) if order and order.delivered_on else "-"
            return [Reply(self.t("progress.no_cases", lang, order=ref, status=status, date=when),
                          self.app.menu_buttons(lang)[:3])], updates
        text = self.t("progress.order_cases", lang, order=ref, count=len(cases)) + "\n\n" + "\n\n".join(
            self.describe(c, lang) for c in cases)
        return [Reply(text)], updates
