"""Custom actions run by `rasa run actions`. The business rules and the conversation
logic live in the repo's `flows/` package (on PYTHONPATH when ./aftersales starts the
action server); this module only adapts them to Rasa's tracker and dispatcher.

Importing it loads and validates flows/policies.yml, flows/knowledge_base.yml and
flows/texts.yml (a malformed file stops the action server with a clear error) and
(re)seeds the demo orders and cases with dates relative to today.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction, ValidationAction
from rasa_sdk.types import DomainDict

from flows import parsing
from flows.dialogue import ALL_FLOW_SLOTS, AfterSales, Context, Inbound, Reply
from flows.orders import SqliteOrderBackend

log = logging.getLogger(__name__)

APP = AfterSales()  # validates the YAML files; seeds the demo store unless ORDER_API_URL is set
if isinstance(APP.orders, SqliteOrderBackend):
    APP.cases.seed_demo_sync(APP.now())  # the demo cases belong to the demo orders

LANGUAGES = ("en", "zh")
NOT_UNDERSTOOD = ("nlu_fallback", "out_of_scope", "choose")  # intents whose rule runs action_fallback
FLOW_SLOTS = ALL_FLOW_SLOTS


# -- reading the tracker -------------------------------------------------------------------------


def _metadata(tracker: Tracker) -> Dict[Text, Any]:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def _language_from_metadata(tracker: Tracker) -> Optional[Text]:
    language = _metadata(tracker).get("language")
    return language if language in LANGUAGES else None


def language(tracker: Tracker) -> Text:
    slot = tracker.get_slot("language")
    if slot in LANGUAGES:
        return slot
    return (_language_from_metadata(tracker) or parsing.detect_language(tracker.latest_message.get("text") or "")
            or "en")


def context(tracker: Tracker) -> Context:
    customer = tracker.get_slot("customer_id")
    return Context(lang=language(tracker), customer_id=customer if isinstance(customer, str) else None,
                   conversation_id=tracker.sender_id)


def inbound(tracker: Tracker) -> Inbound:
    message = tracker.latest_message or {}
    intent = message.get("intent") or {}
    choice = next((e.get("value") for e in message.get("entities") or [] if e.get("entity") == "choice"), None)
    attachments = _metadata(tracker).get("attachments") or []
    return Inbound(text=message.get("text") or "", intent=intent.get("name"),
                   confidence=float(intent.get("confidence") or 0.0),
                   choice=str(choice) if choice is not None else None,
                   attachments=[a for a in attachments if isinstance(a, dict)])


def _since_last_user(tracker: Tracker) -> List[Dict[Text, Any]]:
    events = tracker.events or []
    for index in range(len(events) - 1, -1, -1):
        if events[index].get("event") == "user":
            return events[index + 1:]
    return list(events)


def previous_bot_action(tracker: Tracker) -> Optional[Text]:
    """The last action the bot ran before the shopper's latest message."""
    seen_user = False
    for event in reversed(tracker.events or []):
        kind = event.get("event")
        if kind == "user":
            if seen_user:
                return None
            seen_user = True
        elif seen_user and kind == "action" and event.get("name") not in ("action_listen", None):
            return event.get("name")
    return None


def send(dispatcher: CollectingDispatcher, replies: List[Reply]) -> None:
    for reply in replies:
        kwargs: Dict[Text, Any] = {}
        if reply.text is not None:
            kwargs["text"] = reply.text
        if reply.buttons:
            kwargs["buttons"] = reply.buttons
        if reply.custom is not None:
            kwargs["json_message"] = reply.custom
        dispatcher.utter_message(**kwargs)


def reset_events() -> List[EventType]:
    return [SlotSet(slot, None) for slot in FLOW_SLOTS] + [SlotSet(REQUESTED_SLOT, None)]


# -- every message -----------------------------------------------------------------------------------


class ValidateSlotMappings(ValidationAction):
    """Runs after every shopper message: keeps `language` on the shopper's language and
    `customer_id` on the customer the gateway vouched for."""

    def name(self) -> Text:
        return "action_validate_slot_mappings"

    async def extract_language(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Dict[Text, Any]:
        # Text the shopper typed wins (they switched language); else what the channel says.
        detected = parsing.detect_language(tracker.latest_message.get("text") or "")
        language = detected or _language_from_metadata(tracker)
        if language is None or language == tracker.get_slot("language"):
            return {}
        return {"language": language}

    async def extract_customer_id(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        ctx = _metadata(tracker).get("context")
        customer = ctx.get("customer_id") if isinstance(ctx, dict) else None
        if not isinstance(customer, str) or not customer.strip() or len(customer) > 64:
            return {}
        if customer == tracker.get_slot("customer_id"):
            return {}
        return {"customer_id": customer.strip()}


# -- forms -----------------------------------------------------------------------------------------------


class FlowFormValidation(FormValidationAction, ABC):
    """Hands each message to the form's logic in flows/dialogue.py (see its docstring for
    the activation / answer / resume modes) and returns its slot changes."""

    @property
    @abstractmethod
    def form(self) -> Text: ...

    def name(self) -> Text:
        return f"validate_{self.form}"

    def mode(self, tracker: Tracker) -> Text:
        since = _since_last_user(tracker)
        if any(e.get("event") == "active_loop" and e.get("name") == self.form for e in since):
            return "activation"
        if any(e.get("event") == "action" and e.get("name") not in (self.form, "action_listen", None) for e in since):
            return "resume"
        return "answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        mode = self.mode(tracker)
        requested = tracker.get_slot(REQUESTED_SLOT) if mode == "answer" else None
        result = await APP.forms[self.form].step(mode, requested, inbound(tracker), tracker.slots, context(tracker))
        if result.reject:
            log.debug("%s lets %r through to the rules", self.form, inbound(tracker).intent)
            return []
        send(dispatcher, result.replies)
        return [SlotSet(k, v) for k, v in result.updates.items()] + [SlotSet(REQUESTED_SLOT, result.next_slot)]


class ValidateReturnForm(FlowFormValidation):
    form = "return_form"


class ValidateExchangeForm(FlowFormValidation):
    form = "exchange_form"


class ValidateComplaintForm(FlowFormValidation):
    form = "complaint_form"


class ValidateProgressForm(FlowFormValidation):
    form = "progress_form"


class AskSlot(Action, ABC):
    """`action_ask_<slot>`: the active form's question for that slot."""

    @property
    @abstractmethod
    def slot(self) -> Text: ...

    def name(self) -> Text:
        return f"action_ask_{self.slot}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        logic = APP.forms.get(tracker.active_loop_name or "")
        if logic is None:
            return []
        send(dispatcher, await logic.ask(self.slot, tracker.slots, context(tracker)))
        return []


for _slot in FLOW_SLOTS:
    globals()[f"Ask_{_slot}"] = type(f"Ask_{_slot}", (AskSlot,), {"slot": _slot, "__module__": __name__})


class SubmitAction(Action, ABC):
    @property
    @abstractmethod
    def form(self) -> Text: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        replies, updates = await APP.forms[self.form].submit(tracker.slots, context(tracker))
        send(dispatcher, replies)
        return [SlotSet(k, v) for k, v in updates.items()] + [SlotSet(REQUESTED_SLOT, None)]


class SubmitReturn(SubmitAction):
    form = "return_form"

    def name(self) -> Text:
        return "action_submit_return"


class SubmitExchange(SubmitAction):
    form = "exchange_form"

    def name(self) -> Text:
        return "action_submit_exchange"


class SubmitComplaint(SubmitAction):
    form = "complaint_form"

    def name(self) -> Text:
        return "action_submit_complaint"


class ShowProgress(SubmitAction):
    form = "progress_form"

    def name(self) -> Text:
        return "action_show_progress"


# -- outside the forms ----------------------------------------------------------------------------------


class AnswerFaq(Action):
    def name(self) -> Text:
        return "action_answer_faq"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        send(dispatcher, APP.faq(intent, language(tracker)))
        return []


class Handoff(Action):
    """The shopper gets a person: the reply carries {"handoff": {"reason": ...}} for the
    handoff module, with what the flow knew so far."""

    def name(self) -> Text:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        previous = previous_bot_action(tracker)
        if previous == "action_fallback":
            reason = "fallback"
        elif previous in ("action_submit_return", "action_submit_exchange") and \
                tracker.get_slot("last_outcome") == "refused":
            reason = "disputed_refusal"
        else:
            reason = "shopper_request"
        flow = tracker.active_loop_name
        ctx = {"flow": flow.replace("_form", "") if flow else None,
               "case_id": tracker.get_slot("last_case_id"),
               "order_number": tracker.get_slot("order_number") if tracker.get_slot("order_number") != "none" else None,
               "customer_id": tracker.get_slot("customer_id")}
        send(dispatcher, APP.handoff(reason, language(tracker), ctx))
        return [ActiveLoop(None)] + reset_events()


class CancelFlow(Action):
    def name(self) -> Text:
        return "action_cancel_flow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        send(dispatcher, APP.cancel(tracker.active_loop_name, language(tracker)))
        return [ActiveLoop(None)] + reset_events()


class Goodbye(Action):
    def name(self) -> Text:
        return "action_goodbye"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        dispatcher.utter_message(response="utter_goodbye")
        return [ActiveLoop(None)] + reset_events()


class Fallback(Action):
    """Two-stage fallback: first ask to rephrase, then (the next time in a row) offer a
    person instead of guessing."""

    def name(self) -> Text:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        stage = 2 if previous_bot_action(tracker) == "action_fallback" else 1
        message = inbound(tracker)
        send(dispatcher, APP.fallback(stage, message, language(tracker)))
        if message.intent in NOT_UNDERSTOOD:
            return []
        # Run as Rasa's core fallback (no rule fits the conversation): forget the message,
        # as Rasa's own default fallback does, so the next one starts from a clean state.
        return [UserUtteranceReverted()]

