"""Reading the whole message (flows/reading.py) and routing by what happened
(flows/routing.py), without Rasa: the facts a shopper's words carry and the flow they need.
The model's guess is passed in, as the NLU would give it."""

from __future__ import annotations

import pytest

from flows.reading import Reader, UnderstandingError, load_understanding
from flows.routing import route


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


@pytest.mark.parametrize("text, number", [
    ("my order is ＡＳ１０００６", "AS10006"), ("as 10006", "AS10006"), ("AS-10006 please", "AS10006"),
    ("order #10006", "AS10006"), ("订单号：10006", "AS10006"), ("订单AS10006的面霜", "AS10006"),
    ("call me on 13800138000", None), ("I paid 10006 yuan", None),
])
def test_order_numbers_in_any_common_format(reader: Reader, text: str, number: str | None) -> None:
    assert reader.read(text).order_number == number


@pytest.mark.parametrize("text, reason", [
    ("the lid cracked and the cream went everywhere", "damaged_in_transit"),
    ("面霜盖子裂了，漏得到处都是", "damaged_in_transit"),
    ("my cheeks went red and itchy after the serum", "allergic_reaction"),
    ("擦完脸上起了好多红疹", "allergic_reaction"),
    ("the stitching on the boot came apart after two walks", "defective"),
    ("it's not broken, I just don't like it anymore", "changed_mind"),  # a negated keyword does not count
    ("dont like the colour", "changed_mind"),  # apostrophes are optional
    ("the bag looks nothing like the photos online", "not_as_described"),
    ("they pinch my toes, a size too small", "wrong_size"),
    ("没坏，就是不喜欢", "changed_mind"),
])
def test_what_happened_is_read_from_the_words_and_negation_counts(reader: Reader, text: str, reason: str) -> None:
    assert reader.read(text).reason == reason


def test_feelings_and_health_or_legal_words_are_read(reader: Reader) -> None:
    assert "angry" in reader.read("This is RIDICULOUS, I'm so fed up with you").tones
    assert "waiting" in reader.read("three weeks and still no answer from anyone").tones
    assert "repeat" in reader.read("this is the second time I'm writing about this").tones
    assert reader.read("my skin burned and I ended up at the hospital").severe
    assert reader.read("我要找律师起诉你们").severe
    assert not reader.read("I'd like to return the scarf").tones


@pytest.mark.parametrize("text, model_guess, flow", [
    # what happened beats the words' intent
    ("the vitamin c cream leaked all over everything, order as 10006", "file_complaint", "request_return"),
    ("hi, the scarf looks nothing like the photos… AS10008", "greet", "request_return"),
    ("my star bunny figure arrived with its arm snapped off", "file_complaint", "request_return"),
    ("涂了面霜起红疹", "ask_skincare_ingredients", "request_return"),
    # a size wanted is an exchange; a size that doesn't fit with the money wanted back is a return
    ("换货 AS10001 换成 44 码", "request_return", "request_exchange"),
    ("these are too tight, I want my money back, not another pair", "request_exchange", "request_return"),
    # where is it now
    ("ok so when will I actually see the money?", "goodbye", "ask_refund_timing"),
    ("I have been waiting 2 weeks and nobody answers me", "goodbye", "check_progress"),
    ("any news on RT-900001?", "greet", "check_progress"),
    # general questions
    ("do opened blind boxes get refunded if I don't like the figure?", "request_return", "ask_return_policy"),
    ("退款多久到账？", "check_progress", "ask_refund_timing"),
    ("how long do refunds take usually", "request_return", "ask_refund_timing"),
    # delivery and service
    ("the courier left my parcel in the rain and never called", "request_return", "file_complaint"),
    ("快递员态度很差，直接把包裹扔在门口", "ask_return_shipping", "file_complaint"),
])
def test_route_by_what_happened(reader: Reader, text: str, model_guess: str, flow: str) -> None:
    decision = route(reader.read(text), model_guess, 0.6)
    assert (decision.intent if decision else model_guess) == flow, decision


def test_payloads_and_confident_control_intents_are_never_rerouted(reader: Reader) -> None:
    assert route(reader.read('/request_exchange{"order_number":"AS10001"}'), "request_exchange", 1.0) is None
    assert route(reader.read("cancel"), "cancel", 0.98) is None
    assert route(reader.read("talk to a human please"), "request_human", 0.95) is None


def test_a_broken_understanding_file_names_the_file_and_the_group(tmp_path) -> None:
    bad = tmp_path / "understanding.yml"
    bad.write_text("tones:\n  angry: {en: [ok]}\n  furious: {en: [grr]}\n", encoding="utf-8")
    with pytest.raises(UnderstandingError, match="furious"):
        load_understanding(bad)


@pytest.mark.parametrize("text, model_guess, flow", [
    # a confident model is overruled by what happened ...
    ("the vitamin c cream leaked all over everything, order as 10006", "file_complaint", "request_return"),
    ("I returned the sunscreen a month ago and still haven't seen the money", "request_return", "check_progress"),
    ("the courier threw my parcel over the fence and drove off", "ask_return_shipping", "file_complaint"),
    ("44 would be way too big, just refund me", "request_exchange", "request_return"),
    ("nobody has replied to my complaint for five days", "file_complaint", "check_progress"),
    # ... but not by words that only sound like a flow
    ("stop, I don't want this anymore", "cancel", "cancel"),
    ("are you a real person?", "bot_challenge", "bot_challenge"),
    ("how long do refunds take?", "ask_refund_timing", "ask_refund_timing"),
    ("can opened skincare be returned at all?", "ask_return_policy", "ask_return_policy"),
])
def test_a_confident_model_is_overruled_only_by_strong_facts(reader: Reader, text: str, model_guess: str,
                                                             flow: str) -> None:
    decision = route(reader.read(text), model_guess, 0.97)
    assert (decision.intent if decision else model_guess) == flow, decision
