"""Custom actions run by `rasa run actions`. The business rules and the conversation logic
live in the repo's `flows/` package (on PYTHONPATH when ./aftersales starts the action
server); this module only adapts them to Rasa's tracker and dispatcher.

The flows are loaded on the first action, not at import: policies.yml, knowledge_base.yml,
understanding.yml and texts.yml (from FLOWS_RULES_DIR, default flows/) are validated then
(a malformed file fails that action with a clear error in the log) and the demo orders and
cases are (re)seeded with dates relative to today. Every action of the flows then starts
with a cheap look at those files (flows/rules.py): a valid edit serves from that turn on, a
broken one is refused with its error in the log and the rules serving keep serving. A
conversation in the middle of a flow keeps the version it started the flow with
(`rules_version`, flows/live.py).

Every action speaks through `send`: the first reply of a turn is preceded by the
acknowledgement the shopper's message calls for (anger, a long wait, an injury), wherever
the message lands.
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

from bot.continuation import OFFER_PAYLOAD as CONTINUE_ELSEWHERE
from bot.i18n import LANGUAGES, LanguageState, follow_language, language_of_locale
from flows.live import RULES_VERSION_SLOT, LiveFlows
from flows.replies import Context, Inbound, Reply
from flows.service import AfterSales

log = logging.getLogger(__name__)

NOT_UNDERSTOOD = ("nlu_fallback", "out_of_scope", "choose")  # intents whose rule runs action_fallback
PAYLOAD_ENTITIES = ("order_number", "item_sku", "return_reason", "resolution")  # what a flow-switch button carries


class _Flows:
    """The live flows of this action server (the rules and an AfterSales per version in use),
    made on first use."""

    live: Optional[LiveFlows] = None

    @classmethod
    def get(cls) -> LiveFlows:
        if cls.live is None:
            cls.live = LiveFlows.start()
        return cls.live


async def flows(tracker: Tracker, starting: bool = False, in_flow: bool = False) -> AfterSales:
    """The assistant for this conversation's turn, after a look at the rules' files: the rules
    serving now, or, in the middle of a flow (`in_flow`: a form's question or its decision,
    which runs just after the form ended), the version the flow started with. `starting`: a
    form starts now, under the rules serving now."""
    live = _Flows.get()
    current = await live.refreshed()
    if starting:
        return current
    version = tracker.get_slot(RULES_VERSION_SLOT)
    if isinstance(version, str) and version and (in_flow or tracker.active_loop_name):
        return live.for_version(version)
    return current


# -- reading the tracker -------------------------------------------------------------------------


def _metadata(tracker: Tracker) -> Dict[Text, Any]:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def known_language(tracker: Tracker) -> Optional[Text]:
    """The conversation's language, if anything has said it: what the gateway decided for it
    (metadata), else the slot."""
    decided = _metadata(tracker).get("language")
    if decided in LANGUAGES:
        return decided
    slot = tracker.get_slot("language")
    return slot if slot in LANGUAGES else None


def language(tracker: Tracker) -> Text:
    return known_language(tracker) or "en"


def context(tracker: Tracker) -> Context:
    customer = tracker.get_slot("customer_id")
    verified = tracker.get_slot("verified_orders")
    return Context(lang=language(tracker), customer_id=customer if isinstance(customer, str) else None,
                   conversation_id=tracker.sender_id, last_case_id=tracker.get_slot("last_case_id"),
                   pending_photo=tracker.get_slot("pending_photo"),
                   turn_id=_turn_id(tracker),
                   verified_orders=tuple(v for v in verified if isinstance(v, str)) if isinstance(verified, list) else ())


def _turn_id(tracker: Tracker) -> Optional[Text]:
    turn = _metadata(tracker).get("message_id")
    return turn[:200] if isinstance(turn, str) and turn else None


def inbound(tracker: Tracker, app: AfterSales) -> Inbound:
    message = tracker.latest_message or {}
    intent = message.get("intent") or {}
    entities = {e.get("entity"): e.get("value") for e in message.get("entities") or []
                if isinstance(e, dict) and isinstance(e.get("value"), str)}
    attachments = _metadata(tracker).get("attachments") or []
    ranking = [(r.get("name"), float(r.get("confidence") or 0.0)) for r in message.get("intent_ranking") or []
               if isinstance(r, dict) and r.get("name")]
    return app.inbound(
        message.get("text") or "", intent=intent.get("name"), confidence=float(intent.get("confidence") or 0.0),
        choice=entities.get("choice"), attachments=[a for a in attachments if isinstance(a, dict)],
        entities={k: v for k, v in entities.items() if k in PAYLOAD_ENTITIES}, ranking=ranking)


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


def send(dispatcher: CollectingDispatcher, tracker: Tracker, replies: List[Reply], app: AfterSales) -> None:
    """Send the flow's replies; the first reply of the turn gets the acknowledgement the
    shopper's message calls for."""
    replies = list(replies)
    since = _since_last_user(tracker)
    if replies and not any(e.get("event") == "bot" for e in since):
        starting = next((e.get("name") for e in since if e.get("event") == "active_loop" and e.get("name")), None)
        ack = app.acknowledgement(inbound(tracker, app), language(tracker), starting)
        if ack and ack not in (replies[0].text or ""):
            first = replies[0]
            replies[0] = Reply(f"{ack}\n{first.text}" if first.text else ack, first.buttons, first.custom)
    for reply in replies:
        kwargs: Dict[Text, Any] = {}
        if reply.text is not None:
            kwargs["text"] = reply.text
        if reply.buttons:
            kwargs["buttons"] = reply.buttons
        if reply.custom is not None:
            kwargs["json_message"] = reply.custom
        dispatcher.utter_message(**kwargs)


def reset_events(app: AfterSales) -> List[EventType]:
    """A flow ends: its slots go, and with them the rules version it kept."""
    return ([SlotSet(slot, None) for slot in app.flow_slots]
            + [SlotSet(REQUESTED_SLOT, None), SlotSet(RULES_VERSION_SLOT, None)])


# -- every message -----------------------------------------------------------------------------------


class ValidateSlotMappings(ValidationAction):
    """Runs after every shopper message: keeps `language` on the conversation's language and
    `customer_id` on the customer the gateway vouched for."""

    def name(self) -> Text:
        return "action_validate_slot_mappings"

    async def extract_language(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Dict[Text, Any]:
        metadata = _metadata(tracker)
        decided = metadata.get("language")
        if decided not in LANGUAGES:
            # No gateway in front (Rasa called directly): follow the conversation the same way.
            state = LanguageState(tracker.get_slot("language"), language_of_locale(metadata.get("locale")))
            decided = follow_language(state, tracker.latest_message.get("text"), metadata.get("locale")).language
        if decided is None or decided == tracker.get_slot("language"):
            return {}
        return {"language": decided}

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
    """Hands each message to the form's logic in flows/forms/ (see flows/forms/base.py for
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
        app = await flows(tracker, starting=mode == "activation", in_flow=True)
        message = inbound(tracker, app)
        result = await app.forms[self.form].step(mode, requested, message, tracker.slots, context(tracker))
        if result.reject:
            log.debug("%s lets %r through to the rules", self.form, message.intent)
            return []
        send(dispatcher, tracker, result.replies, app)
        events: List[EventType] = [SlotSet(k, v) for k, v in result.updates.items()]
        if mode == "activation":  # the flow keeps these rules to its end
            events.append(SlotSet(RULES_VERSION_SLOT, app.rules_version))
        return events + [SlotSet(REQUESTED_SLOT, result.next_slot)]


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
        app = await flows(tracker, in_flow=True)
        logic = app.forms.get(tracker.active_loop_name or "")
        if logic is None:
            return []
        send(dispatcher, tracker, await logic.ask(self.slot, tracker.slots, context(tracker)), app)
        return []


class AskOrderNumber(AskSlot):
    slot = "order_number"


class AskOrderProof(AskSlot):
    slot = "order_proof"


class AskItemSku(AskSlot):
    slot = "item_sku"


class AskReturnReason(AskSlot):
    slot = "return_reason"


class AskItemOpened(AskSlot):
    slot = "item_opened"


class AskPhotoUrl(AskSlot):
    slot = "photo_url"


class AskResolution(AskSlot):
    slot = "resolution"


class AskReturnMethod(AskSlot):
    slot = "return_method"


class AskNewVariant(AskSlot):
    slot = "new_variant"


class AskComplaintCategory(AskSlot):
    slot = "complaint_category"


class AskComplaintDescription(AskSlot):
    slot = "complaint_description"


class AskComplaintPhoto(AskSlot):
    slot = "complaint_photo"


class AskComplaintSeverity(AskSlot):
    slot = "complaint_severity"


class AskCaseReference(AskSlot):
    slot = "case_reference"


class SubmitAction(Action, ABC):
    @property
    @abstractmethod
    def form(self) -> Text: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        app = await flows(tracker, in_flow=True)  # the rules the flow started with decide
        turn = context(tracker)
        replies, updates = await app.forms[self.form].submit(tracker.slots, turn)
        if updates.get("last_case_id") and replies and not replies[-1].custom:
            # A case was made: the shopper may carry on elsewhere (bot/continuation.py, in the gateway).
            replies[-1].buttons.append({"title": app.t("menu.continue_elsewhere", turn.lang),
                                        "payload": CONTINUE_ELSEWHERE})
        send(dispatcher, tracker, replies, app)
        return ([SlotSet(k, v) for k, v in updates.items()]
                + [SlotSet(REQUESTED_SLOT, None), SlotSet(RULES_VERSION_SLOT, None)])


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


class SmallTalk(Action):
    """Greeting, thanks, "are you a bot?": texts in flows/texts.yml, in the conversation's language."""

    def name(self) -> Text:
        return "action_small_talk"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "greet"
        # A first "hello" from a client that declares no locale: greeted in both languages.
        app = await flows(tracker)
        send(dispatcher, tracker, app.small_talk(intent if intent in ("greet", "thanks", "bot_challenge")
                                                 else "greet", known_language(tracker)), app)
        return []


class AnswerFaq(Action):
    def name(self) -> Text:
        return "action_answer_faq"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        app = await flows(tracker)
        send(dispatcher, tracker, await app.faq(intent, language(tracker), context(tracker)), app)
        return []


class ReceiveAttachment(Action):
    """A photo or file outside any flow: added to the case just made, or kept for the next flow."""

    def name(self) -> Text:
        return "action_receive_attachment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        app = await flows(tracker)
        replies, updates = await app.receive_attachment(inbound(tracker, app), context(tracker))
        send(dispatcher, tracker, replies, app)
        return [SlotSet(k, v) for k, v in updates.items()]


class NotWhatIMeant(Action):
    """"That's not what I meant": the flow stops, its order and item are kept for the next one."""

    def name(self) -> Text:
        return "action_not_what_i_meant"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        order, item = tracker.get_slot("order_number"), tracker.get_slot("item_sku")
        app = await flows(tracker)
        send(dispatcher, tracker, app.not_what_i_meant(language(tracker), order if order != "none" else None, item),
             app)
        return [ActiveLoop(None)] + reset_events(app)


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
        order = tracker.get_slot("order_number")
        ctx = {"flow": flow.replace("_form", "") if flow else None,
               "case_id": tracker.get_slot("last_case_id"),
               "order_number": order if order != "none" else None,
               "customer_id": tracker.get_slot("customer_id")}
        app = await flows(tracker)
        send(dispatcher, tracker, app.handoff(reason, language(tracker), ctx), app)
        return [ActiveLoop(None)] + reset_events(app)


class CancelFlow(Action):
    def name(self) -> Text:
        return "action_cancel_flow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        app = await flows(tracker)
        send(dispatcher, tracker, app.cancel(tracker.active_loop_name, language(tracker)), app)
        return [ActiveLoop(None)] + reset_events(app)


class Goodbye(Action):
    def name(self) -> Text:
        return "action_goodbye"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        app = await flows(tracker)
        send(dispatcher, tracker, app.small_talk("goodbye", language(tracker)), app)
        return [ActiveLoop(None)] + reset_events(app)


class Fallback(Action):
    """Two-stage fallback: first the three most likely meanings as buttons, then (the next
    time in a row) a person instead of guessing."""

    def name(self) -> Text:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        stage = 2 if previous_bot_action(tracker) == "action_fallback" else 1
        app = await flows(tracker)
        message = inbound(tracker, app)
        send(dispatcher, tracker, app.fallback(stage, message, language(tracker)), app)
        if message.intent in NOT_UNDERSTOOD:
            return []
        # Run as Rasa's core fallback (no rule fits the conversation): forget the message,
        # as Rasa's own default fallback does, so the next one starts from a clean state.
        return [UserUtteranceReverted()]
