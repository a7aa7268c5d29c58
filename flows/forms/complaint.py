"""The complaint form: a ticket with a category, a severity, an owner team and promised
times. Severe or repeated complaints go to a person at once; then the handoff module, not
the ticket text, tells the shopper when a person answers (one promise, not two)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

from bot.i18n import format_datetime
from bot.signals import HANDOFF, HandoffRequest
from flows import parsing
from flows.decisions import assess_complaint
from flows.forms.base import CONTROL_INTENTS, PROOF_WHEN, FormLogic, Slot, digresses
from flows.recorded import INPUTS, complaint_inputs
from flows.replies import NO_ORDER, NOTHING, Context, Inbound, Parsed, Reply, StepResult, choice_payload

# What a message says beyond "I want to complain": enough words left for a description.
_COMPLAINT_WORDS = re.compile(r"\b(i\s+)?(want|would like|need|wanna|like)\s+to\s+(make|file|lodge|raise|submit)?\s*"
                              r"(a\s+)?(formal\s+)?complain(t)?\b|\bcomplain(t)?\b|我要投诉|我想投诉|投诉一下|投诉")


class ComplaintForm(FormLogic):
    name = "complaint_form"
    SLOTS = (
        Slot("complaint_category", "read_category"),
        Slot("order_number", "read_order"),
        Slot("order_proof", "read_proof", when=PROOF_WHEN),
        Slot("complaint_description", "read_description"),
        Slot("complaint_photo", "read_photo", when="not once the severity is high (a person asks the rest)"),
        Slot("complaint_severity", "read_severity", when="not if the shopper's words made it high (severe_keywords)"),
    )

    def rejects(self, requested: str, inbound: Inbound) -> bool:
        if requested == "complaint_description":  # free text: only clear digressions are not descriptions
            return digresses(inbound, self.own_intent, min_confidence=0.7)
        return super().rejects(requested, inbound)

    async def read_category(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        cats = self.app.policies.complaints.categories
        value = inbound.choice if inbound.choice in cats else None
        if value is None and asked:
            value = parsing.exact_choice(inbound.free_text, {k: c.names.values() for k, c in cats.items()})
        if value is None:
            value = parsing.best_keyword_match(inbound.free_text, {k: c.keywords for k, c in cats.items()
                                                                    if asked or k != "other"})
        return Parsed(value) if value else NOTHING

    async def read_order(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        parsed = await super().read_order(inbound, state, ctx, asked)
        if asked and not parsed.found and parsed.hint is None and not digresses(inbound, self.own_intent):
            return Parsed(hint=Reply(self.t("hint.order_number_or_none", ctx.lang)))
        return parsed

    async def read_description(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        text = inbound.free_text.strip()
        if not text or (inbound.intent in CONTROL_INTENTS and digresses(inbound, self.own_intent, 0.7)):
            return NOTHING
        if not asked:
            # Volunteered: the message that started the complaint, when it tells what happened.
            if state.get("complaint_description"):
                return NOTHING
            rest = _COMPLAINT_WORDS.sub(" ", parsing.normalize(text))
            return Parsed(text[:2000]) if parsing.text_is_substantial(rest, 4, 6) else NOTHING
        # A description mentions broken heels and late parcels, which the NLU may take for
        # a FAQ; only a question is treated as one.
        question = text.endswith(("?", "？")) or parsing.is_question(text)
        if parsing.text_is_substantial(text) and not (question and digresses(inbound, self.own_intent, 0.7)):
            return Parsed(text[:2000])
        if digresses(inbound, self.own_intent, min_confidence=0.7):
            return NOTHING
        return Parsed(hint=Reply(self.t("hint.complaint_description", ctx.lang)))

    async def read_photo(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        parsed = await super().read_photo(inbound, state, ctx, asked)
        if not parsed.found and asked and (inbound.choice == "none" or parsing.is_skip(inbound.free_text)):
            return Parsed("none")
        return parsed

    async def read_severity(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        cp = self.app.policies.complaints
        if inbound.read().severe:
            return Parsed("high")
        value = inbound.choice if inbound.choice in cp.severities else None
        if value is None and asked:
            value = parsing.exact_choice(inbound.free_text, {k: v.values() for k, v in cp.severities.items()})
            value = value or self.app.reader.understanding.answer("complaint_severity", inbound.free_text)
        return Parsed(value) if value else NOTHING

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        lang = ctx.lang
        cp = self.app.policies.complaints
        if slot == "complaint_category":
            return [Reply(self.t("ask.complaint_category", lang),
                          [{"title": c.names[lang], "payload": choice_payload(k)} for k, c in cp.categories.items()])]
        if slot == "order_number":
            return await self.ask_order("complaint", ctx, allow_none=True)
        if slot == "order_proof":
            return await self.ask_proof(values, ctx)
        if slot == "complaint_description":
            return [Reply(self.t("ask.complaint_description", lang))]
        if slot == "complaint_photo":
            return [Reply(self.t("ask.complaint_photo", lang),
                          [{"title": self.t("complaint.skip_photo", lang), "payload": choice_payload("none")}])]
        if slot == "complaint_severity":
            return [Reply(self.t("ask.complaint_severity", lang),
                          [{"title": names[lang], "payload": choice_payload(k)} for k, names in cp.severities.items()])]
        return [Reply(self.t(f"hint.{slot}", lang))]

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        if state.get("complaint_severity") == "high":
            # Severe: a person takes over as soon as we know what happened; they ask the rest.
            return None if state.get("complaint_description") else "complaint_description"
        return await super().next_slot(state, ctx, result)

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
        order = await self.app.order(order_number) if order_number else None
        # For the shop's analytics (complaints by product category): the order's categories.
        product_category = "+".join(sorted({i.category for i in order.items})) if order and order.items else None
        assessment = assess_complaint(self.app.policies, category, values.get("complaint_severity"), earlier, now)
        details = {"category": category, "product_category": product_category,
                   "description": values.get("complaint_description"),
                   "photo": None if values.get("complaint_photo") in (None, "none") else values.get("complaint_photo"),
                   "severity": assessment.severity, "queue": assessment.queue, "repeated": assessment.repeated,
                   "first_response_due": assessment.first_response_due.isoformat(),
                   "closure_due": assessment.closure_due.isoformat(), "rules_version": self.app.rules_version,
                   "outcome": assessment.handoff_reason or "ticket",
                   INPUTS: complaint_inputs(category, values.get("complaint_severity"), earlier, cp.repeat_window_days,
                                            now)}
        statuses: list[Any] = ["open"]
        if assessment.handoff_reason:
            statuses.append(("escalated", assessment.handoff_reason))
        case = await self.app.cases.create("complaint", statuses, order_number=order_number,
                                           customer_id=ctx.customer_id, conversation_id=ctx.conversation_id,
                                           language=lang, details=details, turn_id=ctx.turn_id)
        updates.update(last_case_id=case.id, last_outcome="complaint")
        cat = cp.categories.get(category) or next(iter(cp.categories.values()))
        queue = self.t.get(f"queue.{assessment.queue}", lang, assessment.queue)
        if assessment.handoff_reason:
            # The handoff module tells the shopper their place in the queue or the due time.
            return [Reply(self.t("accepted.complaint_escalated", lang, case_id=case.id, category=cat.names[lang],
                                 queue=queue)),
                    Reply(self.t(f"handoff.{assessment.handoff_reason}", lang), custom={HANDOFF: HandoffRequest(
                        reason=assessment.handoff_reason, ticket_id=case.id, case_id=case.id,
                        queue=assessment.queue, severity=assessment.severity, language=lang,
                        priority="high" if assessment.severity == "high" else "normal",
                        order_number=order_number,
                        first_response_due=assessment.first_response_due.isoformat()).payload()})], updates
        zone = self.app.policies.tzinfo()
        text = self.t("accepted.complaint", lang, case_id=case.id, category=cat.names[lang], queue=queue,
                      first_due=format_datetime(assessment.first_response_due, lang, now=now, zone=zone),
                      closure_due=format_datetime(assessment.closure_due, lang, now=now, zone=zone),
                      first_minutes=cp.first_response_minutes, closure_hours=cp.closure_hours)
        return [Reply(text)], updates
