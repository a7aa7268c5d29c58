"""Route by what happened, not only by the words' intent.

The NLU model guesses an intent from the words; `route` corrects it with the facts of the
message (`flows/reading.py`) where the policy says what the shopper needs:

- something happened to the product (leaked, broken, not as described, a reaction) ->
  the return flow, which applies that category's rule (replacement, quality refund, fast
  refund and an expert), even when the words sound like a complaint or a greeting;
- a size or colour wanted, or "exchange" with a wrong size -> the exchange flow;
- a case id, "where is my refund", a long wait with nothing new -> progress;
- a general question (how long refunds take, shipping cost, care) -> the knowledge base;
- health or legal words with no product problem -> a complaint, which goes to a person.

Used by the Rasa server's `SituationRouter` NLU component (rasa_project/components), so
Rasa's rules see the corrected intent, in and outside forms. Button payloads are never
re-routed. Pure function: tests call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from flows.reading import Facts

FLOW_INTENTS = ("request_return", "request_exchange", "file_complaint", "check_progress")
FAQ_INTENTS = ("ask_return_policy", "ask_return_shipping", "ask_refund_timing", "ask_size_advice", "ask_shoe_care",
               "ask_skincare_ingredients", "ask_skincare_allergy")
# Intents that say nothing about the problem: a message that carries one is routed by its facts.
CONTENTLESS = ("greet", "goodbye", "thanks", "out_of_scope", "nlu_fallback", "bot_challenge", "choose",
               "share_attachment", "not_what_i_meant")
CONFIDENT = 0.75
# Questions asking for advice: "what should I do about a rash?" is answered, not made a return.
ADVICE_INTENTS = ("ask_skincare_allergy", "ask_shoe_care", "ask_skincare_ingredients")
# A problem word this general, said as a complaint ("I'm complaining about the quality"),
# is a complaint: nothing in particular happened to ask a remedy for.
GENERIC_PROBLEM_WORDS = ("quality", "质量")
# Mentioning sizes is not saying that one did not fit.
GENERIC_SIZE_WORDS = ("尺码", "码数")


@dataclass(frozen=True)
class Route:
    intent: str
    why: str  # for the logs and the tests: which fact decided


def route(facts: Facts, intent: str | None, confidence: float,
          ranking: Sequence[tuple[str, float]] = ()) -> Route | None:
    """The intent the message should be handled as, or None to keep the model's.

    Strong facts decide whatever the model says: a product problem, a case id, asking
    where a case stands, an explicit complaint or request for a person, the size or colour
    wanted, a return asked for about the shopper's own order, a delivery gone wrong,
    shopping for something new. Softer ones (a general question, a long wait, "exchange")
    decide only when the model is unsure or heard nothing but a greeting. The rules apply
    in order; the first that fits decides.
    """
    if not facts.text or facts.text.lstrip().startswith("/"):
        return None
    intent = intent or "nlu_fallback"
    sure = confidence >= CONFIDENT
    wants, tones, around = facts.wants, facts.tones, facts.situations
    own = bool(facts.order_number or facts.case_id)
    asking = facts.is_question and not own  # a question that is not about one named order or case
    wanting = bool(wants & {"exchange", "progress", "complaint", "person"})  # an ask beyond a question
    followup = "followup" in wants and ("waiting" in tones or facts.is_question)
    about_order = own or facts.reason not in (None, "changed_mind")
    if intent in ("request_human", "cancel", "not_what_i_meant", "bot_challenge") and sure and not about_order \
            and not (wants & {"exchange", "progress", "followup", "complaint", "refund"}) \
            and not around & {"delivery", "service"} \
            and not (intent == "bot_challenge" and "person" in wants and not facts.is_question):
        return None  # about the conversation itself ("stop, I don't want this anymore", "are you a human?")

    # -- strong facts -------------------------------------------------------------------------
    if facts.order_number and not (facts.reason or wants or facts.question or tones or around or facts.names_variant) \
            and intent in FLOW_INTENTS and not sure:
        return _changed(intent, "nlu_fallback", "names an order, nothing else")  # "what would you like to do with it?"
    if facts.has_problem and not facts.product_ok:
        if facts.case_id or "progress" in wants or followup:
            return _changed(intent, "check_progress", "asks about an existing case")
        if "complaint" in wants and facts.reason_word in GENERIC_PROBLEM_WORDS:
            return _changed(intent, "file_complaint", "complains about quality in general")
        if asking and facts.hypothetical:
            topic = "ask_skincare_allergy" if facts.reason == "allergic_reaction" else facts.question or "ask_return_policy"
            return _changed(intent, topic, "asks what would happen")
        if asking and facts.reason == "allergic_reaction" and facts.question == "ask_skincare_allergy":
            return _changed(intent, "ask_skincare_allergy", "asks for advice about reactions")  # "how do I soothe it?"
        if asking and facts.reason == "defective" and (facts.question == "ask_shoe_care" or (
                sure and intent == "ask_shoe_care" and not wants & {"refund", "exchange"})):
            return _changed(intent, "ask_shoe_care", "asks about the repair service")
        return _changed(intent, "request_return", f"product problem: {facts.reason}")
    if facts.case_id:
        return _changed(intent, "check_progress", f"case id {facts.case_id}")
    if ("progress" in wants or followup or ("waiting" in tones and "refund" in wants)) \
            and not (facts.hypothetical and asking):
        return None if intent == "request_human" and sure else \
            _changed(intent, "check_progress", "asks where a case stands")
    if "complaint" in wants:
        return _changed(intent, "file_complaint", "wants to complain")
    if around & {"delivery", "service"} and "angry" in tones and not facts.is_question:
        return _changed(intent, "file_complaint", "angry about the delivery or the service")
    if "person" in wants and not ("service" in around and intent != "request_human"):
        return None if intent == "request_human" else _changed(intent, "request_human", "asks for a person")
    if facts.names_variant and "exchange" in wants and "refund" not in wants:
        return _changed(intent, "request_exchange", "names the size or colour wanted")
    if facts.reason == "wrong_size":
        if "exchange" not in wants and "refund" not in wants and (asking and (
                facts.question == "ask_size_advice" or (intent == "ask_size_advice" and sure and not facts.names_variant))
                or (facts.reason_word in GENERIC_SIZE_WORDS and sure and intent in FAQ_INTENTS)):
            return _changed(intent, "ask_size_advice", "asks how sizes run")
        if "refund" in wants and ("exchange" not in wants or not facts.names_variant):
            return _changed(intent, "request_return", "wrong size, wants the money back")
        if "exchange" in wants or facts.names_variant:
            return _changed(intent, "request_exchange", "wants another size")
        return None if intent in FLOW_INTENTS else _changed(intent, "request_return", "wrong size")
    if ("refund" in wants or facts.reason == "changed_mind") and not facts.names_variant \
            and not ("exchange" in wants and "refund" not in wants) and not (asking and facts.hypothetical) \
            and (facts.concrete or not (facts.is_question or (sure and intent in FAQ_INTENTS))):
        return _changed(intent, "request_return", "asks to send their own order back")
    if around & {"delivery", "service"} and (not facts.is_question or "angry" in tones or not sure):
        return _changed(intent, "file_complaint", "delivery or service went wrong")
    if "shopping" in around and not facts.concrete:
        return _changed(intent, "out_of_scope", "shopping for something new")
    if asking and facts.question and intent in FAQ_INTENTS and intent != facts.question and not wanting:
        return _changed(intent, facts.question, "the question's own words")
    if asking and facts.hypothetical and facts.question and not wanting:
        return _changed(intent, facts.question, "asks what would happen")

    # -- softer facts: only when the model is unsure, or heard only a greeting ------------------
    if sure and intent not in CONTENTLESS:
        return None
    if asking and not facts.concrete and not wanting and "waiting" not in tones:
        return None if facts.question is None or intent == facts.question else \
            _changed(intent, facts.question, "general question")
    if "waiting" in tones:
        return _changed(intent, "check_progress", "has waited for an answer")
    if "exchange" in wants:
        return _changed(intent, "request_exchange", "asks for an exchange")
    if "refund" in wants:
        return _changed(intent, "request_return", "wants to send it back")
    if "unrelated" in around and not facts.concrete:
        return _changed(intent, "out_of_scope", "not about after-sales")
    if facts.severe and intent not in FLOW_INTENTS:
        return _changed(intent, "file_complaint", "health or legal words")
    if facts.question and intent not in FAQ_INTENTS:
        return _changed(intent, facts.question, "question about the shopper's own order")
    if intent in ("greet", "goodbye", "thanks") and facts.greeting_first and not facts.greeting_only \
            and facts.substantial:
        # "hi there! ..." or "ok so ...": the model heard the greeting; the rest of the
        # message is what the shopper came for, so take the model's best real alternative.
        for name, score in ranking:
            if name not in CONTENTLESS and score >= 0.15:
                return _changed(intent, name, "greeting followed by a request")
    return None


def _changed(old: str, new: str, why: str) -> Route:
    """The decided intent; when the model said the same, the facts confirm it (the NLU
    component then marks it certain, so a form's question is not mistaken for a digression
    and a switch of flows the shopper asked for in words is made)."""
    return Route(new, why if old != new else f"confirms: {why}")
