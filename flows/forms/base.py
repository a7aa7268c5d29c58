"""What every form does with a message: read it whole, fill what it says, ask what is missing.

Each form declares its slots as a table (`SLOTS`): the slot, the method that reads it from
a message, whether a message may fill it before it is asked (`volunteered`), which slots a
new value makes stale (`resets`) and, for a step not asked simply while it is empty, when it
is (`when`); docs/flows.md draws the tables (`python -m flows.diagrams --write`). A step
gets the shopper's message in one of three modes:

- `activation`: the message that started the flow ("the cream from AS10006 leaked");
- `answer`: the answer to the question the form asked (`requested`): a value that does
  not fit gets a hint; a message that is clearly something else (a FAQ, another flow,
  cancel) is *rejected* so Rasa's rules handle it and the form then resumes;
- `resume`: the form comes back after such an interruption.

In every mode the whole message is read: an order number, an item, a reason, "unopened",
a wanted size or a photo given before it was asked for fills its slot, and a different one
given later replaces it (with the slots it makes stale). A message with files is evidence
for this form, never a digression.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from flows import parsing
from flows.orders import Order, OrderItem
from flows.replies import NO_ORDER, NOTHING, Context, Inbound, Parsed, Reply, StepResult, choice_payload
from flows.routing import FAQ_INTENTS

if TYPE_CHECKING:
    from flows.service import AfterSales

log = logging.getLogger(__name__)

FORM_INTENTS = {"return_form": "request_return", "exchange_form": "request_exchange",
                "complaint_form": "file_complaint", "progress_form": "check_progress"}
# "Out of scope" is not among them: in the middle of a form, a message the model cannot
# place ("我脸都这样了，好崩溃") gets the form's hint (and an acknowledgement), not "I can't help".
CHITCHAT_INTENTS = ("greet", "thanks", "goodbye", "bot_challenge")
CONTROL_INTENTS = ("cancel", "request_human", "not_what_i_meant")
# Intents with a rule of their own: when a form cannot read its answer in such a message,
# the form lets the rule handle it and then resumes.
DIGRESSION_INTENTS = frozenset(FAQ_INTENTS + CHITCHAT_INTENTS + CONTROL_INTENTS + tuple(FORM_INTENTS.values()))

PHOTO_SLOTS = ("photo_url", "complaint_photo")
# When the shared steps are asked (`Slot.when`).
PROOF_WHEN = "only if the shopper is not signed in as the order's customer and has not proved it yet"
ITEM_WHEN = "only if the order has several items"


@dataclass(frozen=True)
class Slot:
    """One row of a form's table."""

    name: str
    reader: str  # the form's method `(inbound, state, ctx, asked) -> Parsed`
    volunteered: bool = True  # read from any message, not only when asked
    resets: tuple[str, ...] = ()  # cleared when this slot gets a different value
    when: str = ""  # when it is asked, if not simply while it is empty (docs/flows.md's diagrams show it)


# Below this the model's guess that an answer is something else is not trusted: "不知道"
# ("I don't know") is an answer, not a question about allergies.
DIGRESSION_CONFIDENCE = 0.6


# Leaving the form for another flow takes more: a button, the situation router's decision
# (what the message says happened) or a model that is nearly sure. Venting in the middle of
# a complaint is not a request for a return.
FLOW_SWITCH_CONFIDENCE = 0.9


def digresses(inbound: Inbound, own_intent: str | None, min_confidence: float = DIGRESSION_CONFIDENCE) -> bool:
    if inbound.intent not in DIGRESSION_INTENTS or inbound.intent == own_intent:
        return False
    needed = max(min_confidence, FLOW_SWITCH_CONFIDENCE) if inbound.intent in FORM_INTENTS.values() else min_confidence
    return inbound.is_payload or inbound.confidence >= needed


class FormLogic:
    name = ""
    SLOTS: tuple[Slot, ...] = ()

    def __init__(self, app: "AfterSales") -> None:
        self.app = app
        self.t = app.t

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.SLOTS)

    @property
    def own_intent(self) -> str:
        return FORM_INTENTS[self.name]

    def spec(self, name: str) -> Slot:
        return next(s for s in self.SLOTS if s.name == name)

    async def read(self, name: str, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        parsed: Parsed = await getattr(self, self.spec(name).reader)(inbound, state, ctx, asked)
        return parsed

    # -- the step ------------------------------------------------------------------------------

    async def step(self, mode: str, requested: str | None, inbound: Inbound, values: Mapping[str, Any],
                   ctx: Context) -> StepResult:
        state = {s: values.get(s) for s in self.app.flow_slots}
        result = StepResult()
        if mode == "activation":
            self._start(inbound, state, ctx, result)
        answered, hint = False, None
        if mode == "answer" and requested in self.slot_names:
            parsed = await self.read(requested, inbound, state, ctx, asked=True)
            if parsed.found:
                self._set(requested, parsed, state, result)
                answered = True
            hint = parsed.hint
            control = inbound.intent in CONTROL_INTENTS and digresses(inbound, self.own_intent, 0.75)
            if not answered and (control or (hint is None and not inbound.has_files and self.rejects(requested, inbound))):
                return StepResult(reject=True)  # "a person", "cancel", a question, another flow: Rasa's rules take it
        # On resume the message was a question or small talk the rules already answered: not read
        # again. Nor is an answer to "is this order yours?": "it ends in 5821" describes nothing.
        proof_answer = requested == "order_proof" and (answered or hint is not None)
        changed = mode != "resume" and not proof_answer and await self._volunteered(
            inbound, state, ctx, result, skip=requested if mode == "answer" else None)
        if mode == "answer" and requested in self.slot_names and not answered:
            about_this_form = changed or inbound.has_files
            if hint is not None:
                result.replies.append(hint)
            elif not about_this_form:
                result.replies.append(Reply(self.t(f"hint.{requested}", ctx.lang)))
            if not state.get(requested):
                result.updates[requested] = state[requested] = None
        if inbound.has_files and not any(s in self.slot_names for s in PHOTO_SLOTS):
            # Evidence this flow does not ask for: kept for the case and the agent.
            result.updates["pending_photo"] = parsing.photo_from(inbound.attachments, "")
            result.replies.append(Reply(self.t("evidence.kept", ctx.lang)))
        result.next_slot = await self.next_slot(state, ctx, result)
        return result

    def _start(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult) -> None:
        """A flow starts: leftovers of another flow go (order and item stay), what the
        button carried and a photo sent before comes in."""
        for slot in state:
            if slot not in self.slot_names and state.get(slot) is not None:
                result.updates[slot] = state[slot] = None
        if state.get("order_number") == NO_ORDER and self.name != "complaint_form":
            result.updates["order_number"] = state["order_number"] = None
        for slot, value in inbound.entities.items():
            if slot in self.slot_names and value:
                result.updates[slot] = state[slot] = value
        if ctx.pending_photo:
            for slot in PHOTO_SLOTS:
                if slot in self.slot_names and not state.get(slot):
                    result.updates[slot] = state[slot] = ctx.pending_photo
            result.updates["pending_photo"] = None

    async def _volunteered(self, inbound: Inbound, state: dict[str, Any], ctx: Context, result: StepResult,
                           skip: str | None) -> bool:
        """Fill every slot the message speaks to; True when it changed anything (or was
        told why a value it gave cannot be used)."""
        changed = False
        for spec in self.SLOTS:
            if not spec.volunteered or spec.name == skip:
                continue
            parsed = await self.read(spec.name, inbound, state, ctx, asked=False)
            if parsed.hint is not None:
                result.replies.append(parsed.hint)
                changed = True
            if parsed.found and parsed.value != state.get(spec.name):
                self._set(spec.name, parsed, state, result)
                changed = True
        return changed

    def _set(self, name: str, parsed: Parsed, state: dict[str, Any], result: StepResult) -> None:
        if state.get(name) is not None and state.get(name) != parsed.value:
            for stale in self.spec(name).resets:
                if stale not in parsed.derived:
                    result.updates[stale] = state[stale] = None
        result.updates[name] = state[name] = parsed.value
        for k, v in parsed.derived.items():
            result.updates[k] = state[k] = v

    def rejects(self, requested: str, inbound: Inbound) -> bool:
        """Whether an unreadable answer is really something else for Rasa's rules."""
        return digresses(inbound, self.own_intent)

    # -- per form ------------------------------------------------------------------------------

    async def next_slot(self, state: dict[str, Any], ctx: Context, result: StepResult) -> str | None:
        for name in self.slot_names:
            if name == "order_proof" and await self.proof_target(state, ctx) is None:
                continue
            if not state.get(name):
                return name
        return None

    async def ask(self, slot: str, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        raise NotImplementedError

    async def submit(self, values: Mapping[str, Any], ctx: Context) -> tuple[list[Reply], dict[str, Any]]:
        raise NotImplementedError

    def reset(self) -> dict[str, Any]:
        return {slot: None for slot in self.app.flow_slots}

    # -- readers shared by the order-based forms ---------------------------------------------------

    async def read_order(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        parsed = await self.app.parse_order(inbound, ctx, allow_none=self.name == "complaint_form", asked=asked)
        if parsed.found and not asked and parsed.value == state.get("order_number"):
            return Parsed(parsed.value)  # the same order again: keep the item already chosen
        return parsed

    async def proof_target(self, state: Mapping[str, Any], ctx: Context) -> Order | None:
        """The order this shopper still has to prove is theirs before the flow goes on, if any."""
        number = state.get("order_number")
        if not number or number == NO_ORDER:
            return None
        order = await self.app.order(number)
        if order is None or self.app.owns(order, ctx, state.get("order_proof")):
            return None
        return order

    async def read_proof(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        order = await self.proof_target(state, ctx)
        return NOTHING if order is None else await self.app.read_proof(order, inbound, ctx, asked)

    async def ask_proof(self, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        order = await self.proof_target(values, ctx)
        if order is None:
            return [Reply(self.t("hint.order_proof", ctx.lang))]
        return await self.app.proof_question(order, ctx)

    async def read_item(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        order = await self.app.order(state.get("order_number"))
        if order is None:
            return NOTHING
        if len(order.items) == 1:
            return Parsed(order.items[0].sku)
        parsed = self.app.parse_item(inbound, order, ctx.lang, asked=asked)
        if not parsed.found and inbound.choice and asked:
            return Parsed(hint=Reply(self.t("hint.item_sku", ctx.lang)))
        return parsed

    async def order_and_item(self, state: dict[str, Any], ctx: Context,
                             result: StepResult) -> tuple[str | None, Order | None, OrderItem | None]:
        """(slot to ask, order, item) for the order/item part of a form."""
        if not state.get("order_number") or state["order_number"] == NO_ORDER:
            return "order_number", None, None
        order = await self.app.order(state["order_number"])
        if order is None:
            result.updates["order_number"] = state["order_number"] = None
            return "order_number", None, None
        if not self.app.owns(order, ctx, state.get("order_proof")):
            return "order_proof", None, None  # nothing of the order is shown or decided before
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

    async def ask_order(self, key: str, ctx: Context, allow_none: bool = False) -> list[Reply]:
        lang = ctx.lang
        buttons = await self.app.recent_orders_buttons(ctx)
        how = "ask.order_number.pick" if buttons else "ask.order_number.type"
        text = self.t(f"ask.order_number.{key}", lang) + "\n" + self.t(how, lang)
        if allow_none:
            buttons.append({"title": self.t("complaint.no_order", lang), "payload": choice_payload(NO_ORDER)})
        return [Reply(text, buttons)]

    async def ask_item(self, values: Mapping[str, Any], ctx: Context) -> list[Reply]:
        order = await self.app.order(values.get("order_number"))
        if order is None:
            return [Reply(self.t("hint.order_number", ctx.lang))]
        return [Reply(self.t("ask.item_sku", ctx.lang, order=order.number), self.app.item_buttons(order, ctx.lang))]

    async def chosen_or_ask(self, key: str, slot: str, values: Mapping[str, Any],
                            ctx: Context) -> tuple[Order, OrderItem] | list[Reply]:
        """The order and item chosen so far, or the question that still has to get them."""
        if slot == "order_number":
            return await self.ask_order(key, ctx, allow_none=self.name == "complaint_form")
        if slot == "order_proof":
            return await self.ask_proof(values, ctx)
        if slot == "item_sku":
            return await self.ask_item(values, ctx)
        order = await self.app.order(values.get("order_number"))
        item = order.item(values.get("item_sku") or "") if order else None
        if order is None or item is None:
            return await self.ask_order(key, ctx)
        if not self.app.owns(order, ctx, values.get("order_proof")):
            return await self.ask_proof(values, ctx)
        return order, item

    async def read_photo(self, inbound: Inbound, state: dict[str, Any], ctx: Context, asked: bool) -> Parsed:
        photo = parsing.photo_from(inbound.attachments, inbound.free_text if asked else "")
        return Parsed(photo) if photo else NOTHING
