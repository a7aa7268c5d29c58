"""The after-sales assistant's logic, as the Rasa custom actions call it.

`AfterSales` holds the policies, the knowledge base, the texts, the message reader, the
order backend and the case store, plus the four forms (flows/forms/). Everything is plain
Python, so the flows are tested without Rasa. Besides the forms it answers what happens
outside them: small talk, FAQ, a photo sent out of the blue, handoff, cancel, "that's not
what I meant", the two-stage fallback, and the acknowledgement a shopper's feelings get
before any question (`acknowledgement`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Callable, Mapping, Sequence

from bot.i18n import format_date
from bot.signals import HANDOFF, HandoffRequest
from flows import parsing
from flows.cases import Case, CaseStore
from flows.decisions import decide_exchange
from flows.forms import FORMS, FormLogic
from flows.knowledge import KnowledgeBase, load_knowledge
from flows.orders import Order, OrderBackend, OrderBackendError, OrderItem, Variant, make_backend
from flows.ownership import ProofLedger, Verdict, can_prove, find_proof
from flows.policies import Policies, load_policies
from flows.reading import Reader
from flows.replies import NO_ORDER, NOTHING, Context, Inbound, Parsed, Reply, choice_payload, intent_payload, money
from flows.rules import RuleSet, load_rules
from flows.texts import Texts, load_texts

log = logging.getLogger(__name__)

# What the fallback can suggest, by intent: the text key of its button title.
SUGGESTIONS = {
    "request_return": "menu.return", "request_exchange": "menu.exchange", "file_complaint": "menu.complaint",
    "check_progress": "menu.progress", "request_human": "menu.human", "ask_return_policy": "faq.ask_return_policy",
    "ask_return_shipping": "faq.ask_return_shipping", "ask_refund_timing": "faq.ask_refund_timing",
    "ask_size_advice": "faq.ask_size_advice", "ask_shoe_care": "faq.ask_shoe_care",
    "ask_skincare_ingredients": "faq.ask_skincare_ingredients", "ask_skincare_allergy": "faq.ask_skincare_allergy",
}
MENU = ("request_return", "request_exchange", "file_complaint", "check_progress", "request_human")
# Reasons whose first mention deserves a word of sympathy before any question.
SORRY_REASONS = ("allergic_reaction", "damaged_in_transit", "defective", "not_as_described")


class AfterSales:
    """Policies, knowledge base, texts, order backend and case store, plus the four forms.

    One AfterSales serves one version of the rules (`rules`, flows/rules.py; without one,
    the rules of `FLOWS_RULES_DIR` as they are now). `with_rules` makes the one of another
    version, sharing the orders, the cases and the proof ledger."""

    def __init__(self, policies: Policies | None = None, kb: KnowledgeBase | None = None, texts: Texts | None = None,
                 orders: OrderBackend | None = None, cases: CaseStore | None = None,
                 clock: Callable[[], dt.datetime] | None = None, reader: Reader | None = None,
                 ownership: ProofLedger | None = None, rules: RuleSet | None = None) -> None:
        if rules is None and policies is None and kb is None and texts is None and reader is None:
            rules = load_rules()
        self.rules_version = rules.version if rules is not None else ""  # "": parts given one by one (tests)
        self.policies = rules.policies if rules is not None else policies or load_policies()
        self.kb = rules.kb if rules is not None else kb or load_knowledge(policies=self.policies)
        self.t = rules.texts if rules is not None else texts or load_texts()
        self.reader = rules.reader if rules is not None else reader or Reader(self.policies)
        self._clock = clock  # () -> aware datetime; tests may freeze time
        self.orders = orders or make_backend(self.today())
        self.cases = cases or CaseStore()
        self.ownership = ownership or ProofLedger(self.cases.path)
        self.forms: dict[str, FormLogic] = {cls.name: cls(self) for cls in FORMS}
        self.flow_slots: tuple[str, ...] = tuple(dict.fromkeys(
            s.name for form in self.forms.values() for s in form.SLOTS))

    def with_rules(self, rules: RuleSet) -> "AfterSales":
        """The same assistant under another version of the rules."""
        return AfterSales(orders=self.orders, cases=self.cases, clock=self._clock, ownership=self.ownership,
                          rules=rules)

    def now(self) -> dt.datetime:
        return self._clock() if self._clock else self.policies.now()

    def today(self) -> dt.date:
        return self.now().date()

    def inbound(self, text: str, intent: str | None = None, confidence: float = 0.0, choice: str | None = None,
                attachments: Sequence[Mapping[str, Any]] = (), entities: Mapping[str, str] | None = None,
                ranking: Sequence[tuple[str, float]] = ()) -> Inbound:
        """The shopper's message, read whole once for everything that handles it this turn."""
        message = Inbound(text=text, intent=intent, confidence=confidence, choice=choice, attachments=attachments,
                          entities=dict(entities or {}), ranking=ranking)
        message.facts = self.reader.read(message.free_text)
        return message

    # -- orders -------------------------------------------------------------------------------------

    async def order(self, number: str | None) -> Order | None:
        if not number or number == NO_ORDER:
            return None
        try:
            return await self.orders.get_order(number)
        except OrderBackendError:
            log.exception("order backend failed")
            return None

    # -- whose order it is -------------------------------------------------------------------------

    @staticmethod
    def owns(order: Order, ctx: Context, proved: str | None = None) -> bool:
        """Whether this shopper may see and act on `order`: signed in as its customer, or
        proved it in this conversation (`proved`: the order the current flow just proved)."""
        if ctx.customer_id and order.customer_id == ctx.customer_id:
            return True
        return order.number == proved or order.number in ctx.verified_orders

    async def read_proof(self, order: Order, inbound: Inbound, ctx: Context, asked: bool) -> Parsed:
        """The phone's last four digits or the e-mail on `order`, checked (flows/ownership.py).
        Proved: the order number, and the conversation's proved orders grow by it."""
        proof = find_proof(inbound.free_text, asked=asked)
        if proof is None:
            return NOTHING
        lang = ctx.lang
        if not can_prove(order):
            return Parsed(hint=Reply(self.t("hint.order_proof_unavailable", lang), [self.human_button(lang)]))
        check = await self.ownership.check(order, proof, ctx.conversation_id or "")
        if check.verdict is Verdict.PROVED:
            proved = [n for n in ctx.verified_orders if n != order.number][-19:] + [order.number]
            log.info("order ownership proved", extra={"order": order.number})
            return Parsed(order.number, derived={"verified_orders": proved})
        log.info("order ownership not proved", extra={"order": order.number, "verdict": check.verdict.value})
        if check.verdict is Verdict.WRONG:
            return Parsed(hint=Reply(self.t("hint.order_proof_wrong", lang, left=check.attempts_left),
                                     [self.human_button(lang)]))
        return Parsed(hint=Reply(self.t(f"hint.order_proof_{check.verdict.value}", lang), [self.human_button(lang)]))

    async def proof_question(self, order: Order, ctx: Context, case_id: str | None = None) -> list[Reply]:
        """Ask for the proof, or say why none is taken here now."""
        lang = ctx.lang
        if not can_prove(order):
            return [Reply(self.t("hint.order_proof_unavailable", lang), [self.human_button(lang)])]
        blocked = await self.ownership.blocked(order.number, ctx.conversation_id or "")
        if blocked is not None:
            return [Reply(self.t(f"hint.order_proof_{blocked.value}", lang), [self.human_button(lang)])]
        if case_id:
            return [Reply(self.t("ask.order_proof.case", lang, ref=case_id))]
        return [Reply(self.t("ask.order_proof", lang, order=order.number))]

    async def variants(self, item: OrderItem) -> list[Variant]:
        try:
            return await self.orders.variants(item.product_id)
        except OrderBackendError:
            log.exception("order backend failed")
            return []

    async def can_exchange(self, order: Order, item: OrderItem) -> bool:
        """Whether an exchange (or a blind-box swap) would be accepted right now: in its window,
        with another variant in stock. Checked before an exchange is ever offered."""
        return decide_exchange(self.policies, order, item, await self.variants(item), today=self.today()).ok

    async def parse_order(self, inbound: Inbound, ctx: Context, allow_none: bool = False,
                          asked: bool = True) -> Parsed:
        """The order a message names (checked in the order system), or a hint why not."""
        lang = ctx.lang
        candidate = None
        if inbound.choice:
            candidate = parsing.find_order_number(inbound.choice) or (inbound.choice if inbound.choice == NO_ORDER else None)
        if candidate is None:
            candidate = inbound.read().order_number
        if candidate == NO_ORDER:
            return Parsed(NO_ORDER) if allow_none else NOTHING
        if candidate is None:
            if allow_none and asked and (parsing.is_skip(inbound.free_text) or parsing.says_no_order(inbound.free_text)):
                return Parsed(NO_ORDER)
            if asked and parsing.looks_like_order_attempt(inbound.free_text):
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
        return Parsed(order.number)

    def parse_item(self, inbound: Inbound, order: Order, lang: str, asked: bool = True) -> Parsed:
        """The item of `order` a message names ("the cream", "第二个", a pressed button)."""
        if inbound.choice and order.item(inbound.choice):
            return Parsed(inbound.choice)
        text = parsing.normalize(inbound.free_text)
        if not text:
            return NOTHING
        if asked:
            ordinal = re.sub(r"^(the|that|this|那个|这个)\s*", "", text).strip(" .!。！")
            ordinals = {"1": 0, "first": 0, "第一": 0, "一": 0, "2": 1, "second": 1, "第二": 1, "二": 1,
                        "3": 2, "third": 2, "第三": 2, "三": 2, "last": len(order.items) - 1,
                        "最后": len(order.items) - 1}
            for word, index in ordinals.items():
                if (ordinal == word or ordinal.startswith(word + " ") or ordinal.startswith(word + "个")
                        or ordinal.startswith(word + "件")) and index < len(order.items):
                    return Parsed(order.items[index].sku)
        scored = []
        for item in order.items:
            names = [parsing.normalize(n) for n in (*item.name.values(), *item.variant_label.values())]
            score = max((len(a) * (3 if parsing.has_chinese(a) else 1) for a in map(parsing.normalize, item.aliases)
                         if a and parsing.keyword_score(text, {"any": (a,)})), default=0)
            for name in names:
                if name and (name in text or (asked and text in name)):
                    score = max(score, len(name) if name in text else len(text))
                words = [w for w in name.replace("(", " ").split() if len(w) > 3]
                score = max(score, sum(len(w) for w in words if parsing.keyword_score(text, {"en": (w,)})))
                score = max(score, sum(3 for ch in set(name) if parsing.has_chinese(ch) and ch in text) // 2)
            scored.append((score, item))
        scored.sort(key=lambda s: -s[0])
        needed = 1 if asked else 4  # a message that was not answering "which item?" must name it clearly
        if scored and scored[0][0] >= needed and (len(scored) == 1 or scored[0][0] > scored[1][0]):
            return Parsed(scored[0][1].sku)
        return NOTHING

    # -- buttons --------------------------------------------------------------------------------------

    def switch_payload(self, intent: str, order: Order | None, item: OrderItem | None, **extra: str | None) -> str:
        """A button that starts another flow with the order and item already known."""
        return intent_payload(intent, order_number=order.number if order else None,
                              item_sku=item.sku if item else None, **extra)

    def menu_buttons(self, lang: str, order_number: str | None = None, item_sku: str | None = None) -> list[dict[str, str]]:
        return [{"title": self.t(SUGGESTIONS[intent], lang),
                 "payload": intent_payload(intent, order_number=order_number, item_sku=item_sku)
                 if intent != "request_human" else "/request_human"} for intent in MENU]

    def human_button(self, lang: str) -> dict[str, str]:
        return {"title": self.t("menu.human", lang), "payload": "/request_human"}

    async def alternative_buttons(self, alternatives: Sequence[str], lang: str, order: Order | None = None,
                                  item: OrderItem | None = None) -> list[dict[str, str]]:
        """What to offer instead of a refusal: only what the next step would accept."""
        payloads = {"swap_duplicate": self.switch_payload("request_exchange", order, item),
                    "repair": "/ask_shoe_care", "care_tips": "/ask_shoe_care",
                    "skin_advice": "/ask_skincare_ingredients", "human": "/request_human"}
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for alt in alternatives:
            payload = payloads.get(alt)
            if payload is None or payload in seen:
                continue
            if alt == "swap_duplicate" and (order is None or item is None or not await self.can_exchange(order, item)):
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
            when = (self.t("order.delivered_on", ctx.lang, date=format_date(o.delivered_on, ctx.lang)) if o.delivered
                    else self.t("order.on_its_way", ctx.lang))
            buttons.append({"title": f"{o.number} · {first}{more} · {when}", "payload": choice_payload(o.number)})
        return buttons

    def item_buttons(self, order: Order, lang: str) -> list[dict[str, str]]:
        return [{"title": i.title(lang), "payload": choice_payload(i.sku)} for i in order.items]

    # -- how the shopper feels ---------------------------------------------------------------------------

    def acknowledgement(self, inbound: Inbound, lang: str, starting: str | None = None) -> str | None:
        """A word for how the shopper feels, said before any question: health or legal
        trouble first, then anger, a long wait, having to come back, distress. When a flow
        is `starting`, also the sympathy a damaged or harmful product or a complaint deserves."""
        facts = inbound.read()
        if facts.severe:
            return self.t("ack.severe", lang)
        for tone in ("angry", "waiting", "repeat", "distressed", "corrected"):
            if tone in facts.tones:
                return self.t(f"ack.{tone}", lang)
        if starting == "return_form" and facts.reason in SORRY_REASONS:
            return self.t(f"ack.reason.{facts.reason}", lang)
        if starting == "complaint_form":
            return self.t("ack.complaint", lang)
        return None

    # -- answers outside the forms ---------------------------------------------------------------------

    def small_talk(self, intent: str, lang: str | None) -> list[Reply]:
        """Greeting, thanks, goodbye, "are you a bot?". `lang` None: nothing has said the
        shopper's language yet, so the greeting is in both."""
        if intent == "greet" and lang is None:
            zh, en = self.menu_buttons("zh"), self.menu_buttons("en")
            return [Reply(self.t("smalltalk.greet", "zh") + "\n" + self.t("smalltalk.greet", "en"),
                          [{"title": f"{z['title']} · {e['title']}", "payload": e["payload"]}
                           for z, e in zip(zh, en, strict=True)])]
        lang = lang or "en"
        if intent == "greet":
            return [Reply(self.t("smalltalk.greet", lang), self.menu_buttons(lang))]
        key = {"thanks": "smalltalk.thanks", "goodbye": "smalltalk.goodbye", "bot_challenge": "smalltalk.bot"}[intent]
        buttons = [self.human_button(lang)] if intent == "bot_challenge" else []
        return [Reply(self.t(key, lang), buttons)]

    async def faq(self, intent: str, lang: str, ctx: Context | None = None) -> list[Reply]:
        found = self.kb.answer(intent, lang)
        if found is None:
            return [Reply(self.t("fallback.rephrase", lang), self.menu_buttons(lang))]
        text, buttons = found
        replies = [Reply(text, buttons)]
        if intent == "ask_refund_timing" and ctx is not None and ctx.last_case_id:
            case = await self.cases.get(ctx.last_case_id)
            if case is not None:
                specific = self.refund_timing(case, lang)
                if specific:
                    replies.append(Reply(specific))
        return replies

    def refund_timing(self, case: Case, lang: str) -> str | None:
        """When the money of this case arrives, in words."""
        amount = case.details.get("refund_amount")
        if not amount or case.kind != "return" or case.status == "refused":
            return None
        refund = self.policies.refund
        if case.status in ("refund_approved", "expert_assigned"):
            return self.t("refund.when.fast", lang, case_id=case.id, amount=money(amount), hours=refund.fast_hours)
        if case.status == "refunded":
            return self.t("refund.when.done", lang, case_id=case.id, amount=money(amount))
        return self.t("refund.when.after_scan", lang, case_id=case.id, amount=money(amount), days=refund.standard_days)

    async def receive_attachment(self, inbound: Inbound, ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        """A photo or file sent outside a flow: evidence for the case just made, or kept for
        the flow the shopper starts next (and for the agent)."""
        lang = ctx.lang
        photo = parsing.photo_from(inbound.attachments, "")
        if ctx.last_case_id:
            case = await self.cases.get(ctx.last_case_id)
            if case is not None:
                await self.cases.add_evidence(case.id, [str(a.get("url")) for a in inbound.attachments if a.get("url")])
                return [Reply(self.t("evidence.added_to_case", lang, case_id=case.id))], {}
        return [Reply(self.t("evidence.what_for", lang), self.menu_buttons(lang))], {"pending_photo": photo}

    def handoff(self, reason: str, lang: str, context: Mapping[str, str | None]) -> list[Reply]:
        """A person joins; `context` is what the flow knew (flow, case_id, order_number, customer_id)."""
        request = HandoffRequest(reason=reason, language=lang, flow=context.get("flow"), case_id=context.get("case_id"),
                                 order_number=context.get("order_number"), customer_id=context.get("customer_id"))
        return [Reply(self.t(f"handoff.{reason}", lang), custom={HANDOFF: request.payload()})]

    def expert_handoff(self, case_id: str, lang: str, order_number: str, photo: str | None, urgent: bool) -> Reply:
        """A product expert (and, with health or legal words, a person at high priority) joins."""
        request = HandoffRequest(reason="allergy", case_id=case_id, queue="product_expert", language=lang,
                                 order_number=order_number, photo=photo, priority="high" if urgent else "normal")
        return Reply(self.t("handoff.allergy_urgent" if urgent else "handoff.allergy", lang),
                     custom={HANDOFF: request.payload()})

    def escalation(self, case_id: str, lang: str, order_number: str, queue: str) -> Reply:
        """Health or legal words in a case the bot settled: a person looks at it now."""
        request = HandoffRequest(reason="severe_complaint", case_id=case_id, queue=queue, language=lang,
                                 order_number=order_number, priority="high", severity="high")
        return Reply(self.t("handoff.urgent", lang, case_id=case_id), custom={HANDOFF: request.payload()})

    def cancel(self, form: str | None, lang: str) -> list[Reply]:
        if form in self.forms:
            return [Reply(self.t("cancel.done", lang, flow=self.t(f"flow.{form}", lang)), self.menu_buttons(lang))]
        return [Reply(self.t("cancel.nothing", lang), self.menu_buttons(lang))]

    def not_what_i_meant(self, lang: str, order_number: str | None, item_sku: str | None) -> list[Reply]:
        """The bot took the message the wrong way: offer the flows again, keeping the order and item."""
        return [Reply(self.t("reroute.ask", lang), self.menu_buttons(lang, order_number, item_sku))]

    def fallback(self, stage: int, inbound: Inbound, lang: str) -> list[Reply]:
        """Not understood. The first time: the three most likely things the shopper meant, as
        buttons. The second time in a row: a person, instead of guessing again. A message that
        is only an order number or a case id gets a question about it instead."""
        facts = inbound.read()
        if facts.case_id:
            return [Reply(self.t("fallback.case_id", lang, ref=facts.case_id),
                          [{"title": self.t("menu.progress", lang), "payload": intent_payload("check_progress",
                                                                                             facts.case_id)},
                           self.human_button(lang)])]
        if facts.order_number:
            return [Reply(self.t("fallback.order_number", lang, number=facts.order_number),
                          self.menu_buttons(lang, order_number=facts.order_number)[:4])]
        if stage >= 2:
            return [Reply(self.t("fallback.offer_human", lang),
                          [self.human_button(lang), {"title": self.t("menu.start_over", lang), "payload": "/greet"}])]
        if inbound.intent == "choose":
            return [Reply(self.t("fallback.stale_button", lang), self.menu_buttons(lang))]
        suggested = [name for name, _ in inbound.ranking if name in SUGGESTIONS and name != "request_human"][:3]
        for name in MENU:
            if len(suggested) >= 3:
                break
            if name not in suggested and name != "request_human":
                suggested.append(name)
        key = "fallback.out_of_scope" if inbound.intent == "out_of_scope" else "fallback.suggest"
        buttons = [{"title": self.t(SUGGESTIONS[name], lang), "payload": f"/{name}"} for name in suggested]
        return [Reply(self.t(key, lang), buttons + [self.human_button(lang)])]
