"""The return / refund form: what the category's policy needs to decide, and nothing more.

The policy (flows/decisions.py `decide_return`) says which fact it still needs, so the
questions follow the case: no "opened?" for a leaked parcel, a photo only for an allergic
reaction, an exchange offered first for shoes of the wrong size (only when one is in
stock and in its window), a choice of compensation for an opened blind box.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, Mapping

from bot.i18n import format_date
from flows import parsing
from flows.decisions import (
    COMPENSATION,
    EXCHANGE,
    EXCHANGE_FIRST,
    FAST_REFUND,
    REFUND,
    REFUSED,
    REPLACEMENT,
    ReturnDecision,
    decide_return,
    exchange_options,
)
from flows.forms.base import ITEM_WHEN, PROOF_WHEN, FormLogic, Slot
from flows.orders import Order, OrderItem
from flows.recorded import INPUTS, return_inputs
from flows.replies import NOTHING, Context, Inbound, Parsed, Reply, StepResult, choice_payload, money


class ReturnForm(FormLogic):
    name = "return_form"
    SLOTS = (
        Slot("order_number", "read_order", resets=("item_sku", "item_opened", "resolution", "return_method")),
        Slot("order_proof", "read_proof", when=PROOF_WHEN),
        Slot("item_sku", "read_item", resets=("item_opened", "resolution", "return_method"), when=ITEM_WHEN),
        Slot("return_reason", "read_reason", resets=("resolution", "return_method")),
        Slot("item_opened", "read_opened", when="only if the policy needs it and the shop does not know"),
        Slot("photo_url", "read_photo"),
        Slot("resolution", "read_resolution"),
        Slot("return_method", "read_method"),
        Slot("urgent", "read_urgent",  # health or legal words raise the case to a person
             when="never: health or legal words in any message make it yes (a person joins at high priority)"),
    )

    async def decision(self, state: Mapping[str, Any], order: Order, item: OrderItem) -> ReturnDecision:
        d = decide_return(self.app.policies, order, item, state.get("return_reason"), today=self.app.today(),
                          opened=state.get("item_opened"), photo=state.get("photo_url"),
                          resolution=state.get("resolution"), return_method=state.get("return_method"))
        if d.why == EXCHANGE_FIRST and d.missing == "resolution" and not await self.app.can_exchange(order, item):
            # No other size in stock or the exchange window is over: don't offer what the next step refuses.
            d = decide_return(self.app.policies, order, item, state.get("return_reason"), today=self.app.today(),
                              opened=state.get("item_opened"), photo=state.get("photo_url"), resolution=REFUND,
                              return_method=state.get("return_method"))
        return d

    async def _known(self, state: Mapping[str, Any]) -> tuple[Order, OrderItem] | None:
        order = await self.app.order(state.get("order_number"))
        item = order.item(state.get("item_sku") or "") if order else None
        return (order, item) if order is not None and item is not None else None

    # -- readers ----------------------------------------------------------------------------------

    async def read_reason(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        reasons = self.app.policies.reasons
        value = inbound.choice if inbound.choice in reasons else None
        if value is None and asked:
            value = parsing.exact_choice(inbound.free_text, {k: r.names.values() for k, r in reasons.items()})
        if value is None:
            value = inbound.read().reason
        if value is None:
            return NOTHING
        known = await self._known(state)
        if asked and known is not None:
            cat = self.app.policies.category(known[1].category)
            if value not in cat.accepted_reasons:
                return Parsed(hint=self._not_accepted(value, cat, ctx.lang))
        return Parsed(value)

    def _not_accepted(self, reason: str, cat: Any, lang: str) -> Reply:
        sep = "、" if lang == "zh" else ", "
        return Reply(self.t("hint.reason_not_accepted", lang, reason=self.app.reason_name(reason, lang),
                            category=cat.names[lang],
                            reasons=sep.join(self.app.reason_name(r, lang) for r in cat.accepted_reasons)))

    async def read_opened(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        if inbound.choice in ("opened", "unopened"):
            return Parsed(inbound.choice)
        value = parsing.parse_opened(inbound.free_text) if asked else inbound.read().opened
        return Parsed(value) if value else NOTHING

    async def read_photo(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        parsed = await super().read_photo(inbound, state, ctx, asked)
        if not parsed.found and asked and (parsing.is_skip(inbound.free_text) or inbound.choice == "none"):
            return Parsed(hint=Reply(self.t("hint.photo_required", ctx.lang), [self.app.human_button(ctx.lang)]))
        return parsed

    async def read_resolution(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        known = await self._known(state)
        if known is None or not state.get("return_reason"):
            return NOTHING
        d = await self.decision(state, *known)
        options = [o for o in d.options if o not in (EXCHANGE, "swap_duplicate")]
        if not options:
            return NOTHING
        value = inbound.choice if inbound.choice in options else None
        if value is None and (asked or d.missing == "resolution"):
            value = self.app.reader.understanding.answer("resolution", inbound.free_text, allowed=options)
        return Parsed(value) if value else NOTHING

    async def read_method(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        value = inbound.choice if inbound.choice in ("pickup", "dropoff") else None
        if value is None:
            value = self.app.reader.understanding.answer("return_method", inbound.free_text)
        return Parsed(value) if value else NOTHING

    async def read_urgent(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        return Parsed("yes") if inbound.read().severe else NOTHING

    # -- what to ask ----------------------------------------------------------------------------------

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        ask, order, item = await self.order_and_item(state, ctx, result)
        if ask:
            return ask
        assert order is not None and item is not None
        reason = state.get("return_reason")
        cat = self.app.policies.category(item.category)
        if reason and reason not in cat.accepted_reasons:
            result.updates["return_reason"] = state["return_reason"] = None
            result.replies.append(self._not_accepted(reason, cat, ctx.lang))
        return (await self.decision(state, order, item)).missing

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        lang = ctx.lang
        found = await self.chosen_or_ask("return", slot, values, ctx)
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
                    {"title": self.t("resolution.exchange", lang), "payload": self.app.switch_payload(
                        "request_exchange", order, item)},
                    {"title": self.t("resolution.refund", lang), "payload": choice_payload(REFUND)}])]
            buttons = []
            for option in d.options:
                if option == "swap_duplicate":
                    if await self.app.can_exchange(order, item):
                        buttons.append({"title": self.t("resolution.swap_duplicate", lang),
                                        "payload": self.app.switch_payload("request_exchange", order, item)})
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
                      window=d.window, deadline=format_date(d.deadline, lang), reason=self.app.reason_name(d.reason, lang))

    # -- the decision ---------------------------------------------------------------------------------------

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        known = await self._known(values)
        if known is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        order, item = known
        d = await self.decision(values, order, item)
        name = item.title(lang)
        details: dict[str, Any] = {"item_sku": item.sku, "item": {lang: item.title(lang) for lang in ("en", "zh")},
                                   "category": item.category, "reason": d.reason, "decision": d.why,
                                   "days_since_delivery": d.days, "photo": values.get("photo_url")}
        # What decided, so that ./aftersales whatif can decide it again under edited rules (flows/recorded.py).
        in_stock = bool(exchange_options(item, await self.app.variants(item))[0])
        details.update({"rules_version": self.app.rules_version, "outcome": d.outcome,
                        INPUTS: return_inputs(order, item, values, self.app.today(), in_stock)})
        common = {"order_number": order.number, "customer_id": ctx.customer_id or order.customer_id,
                  "conversation_id": ctx.conversation_id, "language": lang, "turn_id": ctx.turn_id}
        urgent = values.get("urgent") == "yes"
        if d.outcome == REFUSED:
            case = await self.app.cases.create("return", ["submitted", ("refused", d.why)], details=details, **common)
            updates.update(last_case_id=case.id, last_outcome="refused")
            refusal = [await self._refusal(d, order, item, lang)]
            if urgent:
                refusal.append(self.app.escalation(case.id, lang, order.number, queue="customer_care"))
            return refusal, updates
        if not d.final:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        replies: list[Reply] = []
        if d.outcome in (REFUND, FAST_REFUND):
            details.update(refund_amount=str(d.refund_amount), refund_method=dict(order.payment_method),
                           return_fee=str(d.fee), return_method=values.get("return_method") if d.return_item else None)
            if d.outcome == FAST_REFUND:
                statuses: list[Any] = ["submitted", "refund_approved"] + (["expert_assigned"] if d.expert_follow_up else [])
            else:
                statuses = ["submitted", "pickup_scheduled" if values.get("return_method") == "pickup" else "awaiting_dropoff"]
            case = await self.app.cases.create("return", statuses, details=details, **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            if d.outcome == FAST_REFUND:
                replies.append(Reply(self.t("accepted.fast_refund", lang, case_id=case.id, amount=money(d.refund_amount),
                                            method=order.payment_method[lang], hours=self.app.policies.refund.fast_hours,
                                            item=name)))
                if d.expert_follow_up or urgent:
                    replies.append(self.app.expert_handoff(case.id, lang, order.number, values.get("photo_url"),
                                                           urgent=urgent))
                return replies, updates
            next_step = self._next_step(values.get("return_method"), case.id, lang)
            replies.append(Reply(self.t("accepted.refund", lang, case_id=case.id, why=self._why(d, item, lang),
                                        amount=money(d.refund_amount), method=order.payment_method[lang],
                                        days=self.app.policies.refund.standard_days, next_step=next_step)))
        elif d.outcome == REPLACEMENT:
            details.update(replacement_sku=item.sku)
            case = await self.app.cases.create("replacement", ["submitted", "replacement_shipping"], details=details,
                                               **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            replies.append(Reply(self.t("accepted.replacement", lang, case_id=case.id, item=name)))
        elif d.outcome == COMPENSATION:
            choice = values.get("resolution")
            cat = d.category
            code = f"{'BBC' if choice == 'coupon' else 'BBD'}-{secrets.token_hex(3).upper()}"
            details.update(compensation=choice, code=code, coupon_amount=str(cat.coupon_amount),
                           discount_percent=cat.second_draw_discount)
            status = "coupon_issued" if choice == "coupon" else "second_draw_offered"
            case = await self.app.cases.create("compensation", ["submitted", status], details=details, **common)
            updates.update(last_case_id=case.id, last_outcome=d.outcome)
            key = "accepted.coupon" if choice == "coupon" else "accepted.second_draw"
            replies.append(Reply(self.t(key, lang, case_id=case.id, code=code, amount=money(cat.coupon_amount),
                                        discount=cat.second_draw_discount, item=item.name[lang])))
        else:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        if urgent:
            replies.append(self.app.escalation(case.id, lang, order.number, queue="quality_team"))
        return replies, updates

    def _next_step(self, method: str | None, case_id: str, lang: str) -> str:
        refund = self.app.policies.refund
        if method == "dropoff":
            by = self.app.today() + dt.timedelta(days=refund.dropoff_days)
            return self.t("next.dropoff", lang, date=format_date(by, lang), case_id=case_id)
        tomorrow = self.app.today() + dt.timedelta(days=1)
        return self.t("next.pickup", lang, date=format_date(tomorrow, lang), slot=refund.pickup_slot)

    async def _refusal(self, d: ReturnDecision, order: Order, item: OrderItem, lang: str) -> Reply:
        name = item.title(lang)
        reason = self.app.policies.reasons.get(d.reason or "")
        kind = reason.kind if reason else "quality"
        text = self.t(f"refused.{d.why}", lang, item=name, order=order.number, days=d.days, window=d.window,
                      deadline=format_date(d.deadline, lang), category=d.category.names[lang],
                      reason=self.app.reason_name(d.reason, lang),
                      kind=self.t(f"kind.{kind}", lang),
                      reasons=("、" if lang == "zh" else ", ").join(
                          self.app.reason_name(r, lang) for r in (d.category.opened_accepted_reasons or ())))
        if d.quality_deadline:
            text += "\n" + self.t("refused.quality_still_open", lang, date=format_date(d.quality_deadline, lang))
        buttons = await self.app.alternative_buttons(d.alternatives, lang, order, item)
        text += "\n" + self.t("refused.alternatives", lang)
        return Reply(text, buttons)
