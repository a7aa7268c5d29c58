"""The exchange form: another size, colour or (blind boxes) figure of the same product,
within the category's exchange window, from what is in stock."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from bot.i18n import format_date
from flows import parsing
from flows.decisions import ExchangeDecision, decide_exchange, pick_variant
from flows.forms.base import ITEM_WHEN, PROOF_WHEN, FormLogic, Slot
from flows.orders import Order, OrderItem, Variant
from flows.recorded import INPUTS, exchange_inputs
from flows.replies import NOTHING, Context, Inbound, Parsed, Reply, StepResult, choice_payload


class ExchangeForm(FormLogic):
    name = "exchange_form"
    SLOTS = (
        Slot("order_number", "read_order", resets=("item_sku", "new_variant")),
        Slot("order_proof", "read_proof", when=PROOF_WHEN),
        Slot("item_sku", "read_item", resets=("new_variant",), when=ITEM_WHEN),
        Slot("new_variant", "read_variant"),
    )

    async def read_variant(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        lang = ctx.lang
        facts = inbound.read()
        if not inbound.choice and facts.wants & {"refund"} and "exchange" not in facts.wants:
            return NOTHING  # "44 would be too big, just refund me": not a size, a change of flow
        order = await self.app.order(state.get("order_number"))
        item = order.item(state.get("item_sku") or "") if order else None
        if item is None or (not asked and not inbound.choice and not inbound.read().names_variant
                            and not self._names_figure(inbound, item)):
            return NOTHING
        variants = await self.app.variants(item)
        current = next((v for v in variants if v.sku == item.sku), None)
        if inbound.choice:
            chosen = [v for v in variants if v.sku == inbound.choice]
        else:
            chosen = parsing.variant_match(inbound.free_text, variants, lang)
        if not chosen:
            if asked and (inbound.choice or parsing.mentions_variant(inbound.free_text)):
                return Parsed(hint=Reply(self.t("hint.variant_unknown", lang)))
            return NOTHING
        chosen = pick_variant(item, chosen, current)
        if all(v.sku == item.sku for v in chosen):
            return Parsed(hint=Reply(self.t("hint.variant_same", lang, variant=item.variant_label[lang]))) if asked \
                else NOTHING
        chosen = [v for v in chosen if v.sku != item.sku]
        usable = [v for v in chosen if v.swappable]
        if not usable:
            return Parsed(hint=Reply(self.t("hint.variant_not_swappable", lang, variant=chosen[0].label[lang])))
        in_stock = [v for v in usable if v.in_stock]
        if len(in_stock) == 1:
            return Parsed(in_stock[0].sku)
        if not in_stock:
            return Parsed(hint=Reply(self.t("hint.variant_out_of_stock", lang, variant=usable[0].label[lang])))
        return Parsed(hint=Reply(self.t("hint.variant_ambiguous", lang,
                                        variants=" / ".join(v.label[lang] for v in in_stock))))

    def _names_figure(self, inbound: Inbound, item: OrderItem) -> bool:
        return item.category == "blind_box" and bool(inbound.free_text)

    async def _decide(self, order: Order, item: OrderItem) -> ExchangeDecision:
        return decide_exchange(self.app.policies, order, item, await self.app.variants(item), today=self.app.today())

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        ask, order, item = await self.order_and_item(state, ctx, result)
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
        found = await self.chosen_or_ask("exchange", slot, values, ctx)
        if isinstance(found, list):
            return found
        order, item = found
        decision = await self._decide(order, item)
        buttons = [{"title": v.label[lang], "payload": choice_payload(v.sku)} for v in decision.options[:10]]
        buttons.append({"title": self.t("exchange.refund_instead", lang), "payload": self._refund_instead(order, item)})
        key = "ask.new_variant.blind_box" if item.category == "blind_box" else "ask.new_variant"
        sep = "、" if lang == "zh" else ", "
        text = self.t(key, lang, item=item.name[lang], current=item.variant_label[lang],
                      in_stock=sep.join(v.label[lang] for v in decision.options))
        sold_out = sep.join(v.label[lang] for v in decision.sold_out if v.swappable)
        if sold_out:
            text += "\n" + self.t("exchange.sold_out", lang, variants=sold_out)
        return [Reply(text, buttons)]

    def _refund_instead(self, order: Order, item: OrderItem) -> str:
        """A refund instead of the exchange: the return flow starts with the order, the item,
        the reason (the size did not fit, or the shopper changed their mind) and the refund chosen."""
        cat = self.app.policies.category(item.category)
        reason = "wrong_size" if "wrong_size" in cat.accepted_reasons else "changed_mind"
        return self.app.switch_payload("request_return", order, item, return_reason=reason, resolution="refund")

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        lang = ctx.lang
        updates = self.reset()
        order = await self.app.order(values.get("order_number"))
        item = order.item(values.get("item_sku") or "") if order else None
        if order is None or item is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        decision = await self._decide(order, item)
        common = {"order_number": order.number, "customer_id": ctx.customer_id or order.customer_id,
                  "conversation_id": ctx.conversation_id, "language": lang, "turn_id": ctx.turn_id}
        if not decision.ok:
            updates.update(last_outcome="refused", last_case_id=None)
            text = self.t(f"exchange.refused.{decision.why}", lang, item=item.title(lang), order=order.number,
                          days=decision.days, window=decision.window, deadline=format_date(decision.deadline, lang),
                          category=decision.category.names[lang])
            buttons = await self.app.alternative_buttons(self.app.policies.category(item.category)
                                                         .out_of_window_alternatives if decision.why == "out_of_window"
                                                         else ("human",), lang, order, item)
            if decision.why == "no_stock":
                buttons.insert(0, {"title": self.t("exchange.refund_instead", lang),
                                   "payload": self._refund_instead(order, item)})
            return [Reply(text, buttons)], updates
        new: Variant | None = next((v for v in decision.options if v.sku == values.get("new_variant")), None)
        if new is None:
            return [Reply(self.t("error.lost_track", lang), self.app.menu_buttons(lang))], updates
        details = {"item_sku": item.sku, "item": {lang: item.title(lang) for lang in ("en", "zh")}, "category": item.category,
                   "new_sku": new.sku, "new_variant": dict(new.label), "rules_version": self.app.rules_version,
                   "outcome": "exchange", INPUTS: exchange_inputs(order, item, self.app.today(), in_stock=True)}
        case = await self.app.cases.create("exchange", ["submitted", "pickup_scheduled"], details=details, **common)
        updates.update(last_case_id=case.id, last_outcome="exchange")
        tomorrow = format_date(self.app.today() + dt.timedelta(days=1), lang)
        key = "accepted.swap" if item.category == "blind_box" else "accepted.exchange"
        text = self.t(key, lang, case_id=case.id, new=new.label[lang], old=item.variant_label[lang],
                      item=item.name[lang], date=tomorrow, slot=self.app.policies.refund.pickup_slot)
        if item.category == "shoes":
            text += "\n" + self.t("exchange.shoe_tip", lang)
        return [Reply(text)], updates
