"""Progress tracking: "where is my refund / return / ticket?". A case id or an order number
in the message is used at once; a follow-up about the case just discussed ("when will it
be done?") uses that case without asking for its number."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from bot.i18n import format_date, format_datetime
from flows import parsing
from flows.cases import Case
from flows.forms.base import FormLogic, Slot
from flows.orders import Order
from flows.replies import NOTHING, Context, Inbound, Parsed, Reply, StepResult, choice_payload, money

FINISHED = frozenset({"refunded", "resolved", "closed", "refused"})


class ProgressForm(FormLogic):
    name = "progress_form"
    SLOTS = (Slot("case_reference", "read_reference"),
             Slot("order_proof", "read_proof", when="only if the case or order is not the shopper's own: not made in "
                  "this chat, not the signed-in customer's, not proved yet"))

    async def read_reference(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        text = inbound.choice or inbound.free_text
        facts = inbound.read()
        ref = parsing.find_case_id(text) or parsing.find_order_number(text) or facts.case_id or facts.order_number
        if ref:
            return await self._check(ref, ctx)
        if asked and (parsing.looks_like_order_attempt(inbound.free_text)
                      or parsing.looks_like_case_attempt(inbound.free_text)):
            return Parsed(hint=Reply(self.t("hint.case_reference", ctx.lang)))
        return NOTHING

    def _start(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        super()._start(inbound, state, ctx, result)
        facts = inbound.read()
        if ctx.last_case_id and facts.is_question and not (facts.case_id or facts.order_number or inbound.choice):
            # "when will it be done?" right after a case was made or shown: that case.
            result.updates["case_reference"] = state["case_reference"] = ctx.last_case_id

    async def _check(self, ref: str, ctx: Context) -> Parsed:
        lang = ctx.lang
        if parsing.find_case_id(ref):
            case = await self.app.cases.get(ref)
            if case is None:
                return Parsed(hint=Reply(self.t("hint.case_unknown", lang, ref=ref)))
            if ctx.customer_id and case.customer_id and case.customer_id != ctx.customer_id:
                return Parsed(hint=Reply(self.t("hint.case_not_yours", lang, ref=ref)))
            if not self._made_here(case, ctx) and await self.app.order(case.order_number) is None:
                # Nothing to prove it with (a complaint without an order, from another chat).
                return Parsed(hint=Reply(self.t("hint.order_proof_unavailable", lang), [self.app.human_button(lang)]))
            return Parsed(case.id)
        order = await self.app.order(ref)
        if order is None:
            if await self.app.cases.for_order(ref, 1):
                return Parsed(hint=Reply(self.t("hint.order_proof_unavailable", lang), [self.app.human_button(lang)]))
            return Parsed(hint=Reply(self.t("hint.order_unknown", lang, number=ref)))
        if ctx.customer_id and order.customer_id and order.customer_id != ctx.customer_id:
            return Parsed(hint=Reply(self.t("hint.order_not_yours", lang, number=ref)))
        return Parsed(ref)

    @staticmethod
    def _made_here(case: Case, ctx: Context) -> bool:
        """The case was opened in this conversation, or by this signed-in customer."""
        return bool((ctx.conversation_id and case.conversation_id == ctx.conversation_id)
                    or (ctx.customer_id and case.customer_id == ctx.customer_id))

    async def proof_target(self, state: Mapping[str, Any], ctx: Context) -> Order | None:
        """The order behind the case or order asked about, while this shopper has not proved it."""
        ref = state.get("case_reference") or ""
        number: str | None = ref
        if parsing.find_case_id(ref):
            case = await self.app.cases.get(ref)
            if case is None or self._made_here(case, ctx):
                return None
            number = case.order_number
        order = await self.app.order(number)
        if order is None or self.app.owns(order, ctx, state.get("order_proof")):
            return None
        return order

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        if slot == "order_proof":
            order = await self.proof_target(values, ctx)
            ref = values.get("case_reference") or ""
            if order is None:
                return [Reply(self.t("hint.order_proof", ctx.lang))]
            return await self.app.proof_question(order, ctx, case_id=ref if parsing.find_case_id(ref) else None)
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
        now = self.app.now()
        item = case.details.get("item")
        what = ""
        if isinstance(item, Mapping):
            what = item.get(lang) or item.get("en") or ""
        elif case.kind == "complaint":
            cats = self.app.policies.complaints.categories
            cat = cats.get(case.details.get("category", ""))
            what = cat.names[lang] if cat else ""
        history = " → ".join(
            f"{self.t.get(f'status.{h.status}', lang, h.status)} "
            f"({format_date(dt.datetime.fromtimestamp(h.at, tz).date(), lang)})"
            for h in case.history)
        text = self.t("progress.case", lang, kind=self.t(f"kind.{case.kind}", lang), case_id=case.id, what=what,
                      order=case.order_number or "-", status=self.t.get(f"status.{case.status}", lang, case.status),
                      history=history)
        if case.details.get("refund_amount") and case.kind == "return" and case.status != "refused":
            text += "\n" + self.t("progress.refund", lang, amount=money(case.details["refund_amount"]))
        if case.kind == "complaint" and case.details.get("closure_due"):
            due = dt.datetime.fromisoformat(case.details["closure_due"])
            text += "\n" + self.t("progress.complaint_due", lang,
                                  closure_due=format_datetime(due, lang, now=now, zone=tz))
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
            updates["last_case_id"] = case.id  # follow-ups ("and when is it done?") are about this case
            return [Reply(self.describe(case, lang))], updates
        cases = await self.app.cases.for_order(ref, 100)
        cases = [c for c in cases if c.status != "refused"] or cases
        # What is still being handled first (newest first within each group); the first
        # three in full, every other one on a line of its own, so none goes unmentioned.
        cases = sorted(cases, key=lambda c: c.status in FINISHED)
        if not cases:
            order = await self.app.order(ref)
            status = self.t.get(f"order_status.{order.status}", lang, order.status) if order else "-"
            when = format_date(order.delivered_on, lang) if order and order.delivered_on else "-"
            return [Reply(self.t("progress.no_cases", lang, order=ref, status=status, date=when),
                          self.app.menu_buttons(lang, order_number=ref)[:3])], updates
        updates["last_case_id"] = cases[0].id
        text = self.t("progress.order_cases", lang, order=ref, count=len(cases)) + "\n\n" + "\n\n".join(
            self.describe(c, lang) for c in cases[:3])
        if cases[3:]:
            text += "\n\n" + self.t("progress.more_cases", lang) + "\n" + "\n".join(
                f"• {c.id} · {self.t(f'kind.{c.kind}', lang)} · {self.t.get(f'status.{c.status}', lang, c.status)}"
                for c in cases[3:])
        return [Reply(text)], updates
