"""Every after-sales branch, end to end through the web chat, against the real Rasa and
action server, in English and Chinese. Asserts what the shopper notices: the decision
and why, the case id quoted back (and found again by progress), the refund amount, the
handoff signal. Demo orders: flows/demo_data.py (docs/flows.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flows.orders import SqliteOrderBackend
from flows.policies import load_policies
from tests.flows.conftest import buttons, handoff, text

pytestmark = pytest.mark.e2e

CASE_ID = re.compile(r"\b(RT|EX|TK|RP|CP)-\d{6}\b")
LANGS = ["en", "zh"]

SAY = {
    "en": {
        "return": "I want to return my order", "changed_mind": "I just changed my mind", "unworn": "yes, still unworn",
        "defective": "the sole came off after a week", "opened": "I opened it", "too_small": "they're too small",
        "exchange": "actually I want an exchange", "where": "where is my refund {}", "leaked": "it leaked all over the box",
        "complain": "I want to make a complaint", "rude": "the courier was really rude",
        "description": "The courier threw my parcel over the fence and shouted at me when I asked why",
        "skip": "skip", "medium": "serious", "severe": "The heel snapped while I was walking and I injured my ankle, I had to go to hospital",
        "size_faq": "how do I know which size to take?", "cancel": "cancel", "track": "I want to check my case",
        "allergy": "I had an allergic reaction to the serum from AS10005, I want a refund", "photo": "here is the photo",
        "gibberish1": "xqzv plomk", "gibberish2": "what's the weather like on mars",
        "accepted": "Return accepted", "refund": "Refund", "refused": "can't accept a return",
    },
    "zh": {
        "return": "我要退货", "changed_mind": "不想要了", "unworn": "没穿过，鞋盒都在",
        "defective": "穿了一周鞋底就开胶了", "opened": "已经拆了", "too_small": "鞋子小了，挤脚",
        "exchange": "还是换货吧", "where": "我的退款到哪了 {}", "leaked": "面霜漏液了，盒子里全是",
        "complain": "我要投诉", "rude": "快递员态度太差了",
        "description": "快递员直接把包裹扔进院子，我问他还骂人", "skip": "跳过", "medium": "比较严重",
        "severe": "走路时鞋跟断了，我扭伤了脚踝，去了医院",
        "size_faq": "尺码怎么选", "cancel": "算了，取消", "track": "查询售后进度",
        "allergy": "用了AS10005的精华过敏了，要退款", "photo": "照片发你了",
        "gibberish1": "阿斯顿发", "gibberish2": "火星上天气怎么样",
        "accepted": "退货已受理", "refund": "退款", "refused": "无法退货",
    },
}


def days_since_delivery(number: str) -> str:
    """What the bot says of an order's delivery, read from the demo store it uses: the
    store was seeded when the action server started, so a run that passes midnight in the
    shop's time zone sees one day more than the seeding said."""
    order = SqliteOrderBackend(Path(os.environ["FLOWS_DB_PATH"]))._order_sync(number)
    assert order is not None and order.delivered_on is not None
    return str((load_policies().now().date() - order.delivered_on).days)


def case_id(replies: list[dict]) -> str:
    match = CASE_ID.search(text(replies))
    assert match, f"no case id in {text(replies)!r}"
    return match.group(0)


@pytest.mark.parametrize("lang", LANGS)
async def test_return_accepted_no_reason_unopened_then_found_by_progress(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    r = await s.say(w["return"])
    assert "AS10001" in text(r)  # asks for the order number, with the format as a hint
    r = await s.say("AS1001")  # a typo: re-asked with a hint, not accepted
    assert "AS10001" in text(r) and not CASE_ID.search(text(r))
    r = await s.say("AS99999")
    assert "AS99999" in text(r)  # "can't find order AS99999"
    r = await s.say("AS10001")
    assert '"changed_mind"' in "".join(buttons(r))  # the reasons, as buttons
    r = await s.say(w["changed_mind"])
    assert any("unopened" in p for p in buttons(r))
    r = await s.say(w["unworn"])
    assert "¥599.00" in text(r) and "30" in text(r)  # the refund and the 30-day no-reason window
    r = await s.press(r, "pickup")
    cid = case_id(r)
    assert cid.startswith("RT-") and w["accepted"] in text(r) and "¥599.00" in text(r)
    r = await s.say(w["where"].format(cid))
    assert cid in text(r) and "¥599.00" in text(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_quality_return_within_the_longer_window(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    await s.say("AS10002")
    r = await s.say(w["defective"])
    assert "90" in text(r) and days_since_delivery("AS10002") in text(r) and "¥799.00" in text(r)  # 45 days, 90-day window
    r = await s.press(r, "dropoff")
    assert case_id(r).startswith("RT-") and w["accepted"] in text(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_out_of_window_refused_politely_with_alternatives_and_a_person(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    r = await s.say("AS10003")
    assert w["refused"] in text(r) and days_since_delivery("AS10003") in text(r) and "90" in text(r)
    assert "/ask_shoe_care" in buttons(r) and "/request_human" in buttons(r)  # repair/care, and a person
    r = await s.press(r, "/request_human")
    assert handoff(r)["reason"] == "disputed_refusal"


@pytest.mark.parametrize("lang", LANGS)
async def test_no_reason_return_out_of_window_points_to_the_quality_window(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    await s.say("AS10002")
    r = await s.say(w["changed_mind"])
    assert w["refused"] in text(r) and "30" in text(r) and days_since_delivery("AS10002") in text(r)
    assert not CASE_ID.search(text(r))


@pytest.mark.parametrize("lang", LANGS)
async def test_blind_box_opened_not_defective_gets_swap_or_coupon_not_refund(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    r = await s.say("AS10004")
    assert len([p for p in buttons(r) if "BB-" in p]) == 2  # two blind boxes in the order: which one?
    r = await s.press(r, "BB-STAR-RND")
    r = await s.say(w["changed_mind"])
    r = await s.say(w["opened"])
    assert any(p.startswith("/request_exchange") for p in buttons(r))  # swap a duplicate within the series
    assert any('"coupon"' in p for p in buttons(r)) and any('"second_draw"' in p for p in buttons(r))
    assert "¥69.00" not in text(r)  # no refund offered
    r = await s.press(r, '"coupon"')
    assert case_id(r).startswith("CP-") and "¥20.00" in text(r) and re.search(r"BBC-[0-9A-F]{6}", text(r))


@pytest.mark.parametrize("lang", LANGS)
async def test_blind_box_duplicate_swapped_for_another_figure_of_the_series(shopper_factory, lang: str) -> None:
    s = await shopper_factory(lang, customer_id="C1001")
    r = await s.say(SAY[lang]["return"])
    assert "AS10004" in " ".join(buttons(r))  # the verified customer's recent orders, as buttons
    r = await s.press(r, "AS10004")
    r = await s.press(r, "BB-STAR-RND")
    r = await s.say(SAY[lang]["changed_mind"])
    r = await s.say(SAY[lang]["opened"])
    r = await s.press(r, "/request_exchange")
    assert "BB-STAR-SLP" in " ".join(buttons(r)) and "BB-STAR-MON" not in " ".join(buttons(r))  # no secret figure
    r = await s.press(r, "BB-STAR-SLP")
    assert case_id(r).startswith("EX-")


@pytest.mark.parametrize("lang", LANGS)
async def test_skincare_opened_allergic_reaction_photo_fast_refund_and_expert(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    r = await s.say(w["allergy"])
    assert "/request_human" in buttons(r) and not CASE_ID.search(text(r))  # a photo is asked for first
    r = await s.say(w["skip"])  # no photo: asked again, not accepted
    assert not CASE_ID.search(text(r)) and not handoff(r)
    r = await s.send(w["photo"], photos=["https://cdn.example/rash.jpg"])
    assert case_id(r).startswith("RT-") and "¥259.00" in text(r) and "24" in text(r)
    signal = handoff(r)
    assert signal["reason"] == "allergy" and signal["photo"] == "https://cdn.example/rash.jpg"


@pytest.mark.parametrize("lang", LANGS)
async def test_skincare_leaked_in_transit_is_replaced_at_once(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    r = await s.say("AS10006")
    r = await s.press(r, "SK-CRM-50")
    r = await s.say(w["leaked"])
    assert case_id(r).startswith("RP-") and not handoff(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_shoes_wrong_size_exchange_first_sold_out_then_in_stock(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    await s.say("AS10001")
    r = await s.say(w["too_small"])
    assert any(p.startswith("/request_exchange") for p in buttons(r)) and any('"refund"' in p for p in buttons(r))
    r = await s.say(w["exchange"])  # change of mind mid-form: the order is kept
    assert "SH-OXF-BLK-44" in " ".join(buttons(r)) and "SH-OXF-BLK-43" not in " ".join(buttons(r))
    r = await s.say("43")  # sold out: alternatives offered, including another colour and a refund
    assert "SH-OXF-BRN-43" in " ".join(buttons(r)) and any(p.startswith("/request_return") for p in buttons(r)) \
        and not CASE_ID.search(text(r))
    r = await s.say("44")
    assert case_id(r).startswith("EX-") and "44" in text(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_complaint_ticket_with_sla_then_repeated_complaint_goes_to_a_person(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["complain"])
    r = await s.say(w["rude"])
    r = await s.press(r, '"none"')  # not about an order
    r = await s.say("bad" if lang == "en" else "差")  # too short: asked for more
    assert not CASE_ID.search(text(r))
    r = await s.say(w["description"])
    r = await s.say(w["skip"])
    r = await s.say(w["medium"])
    ticket = case_id(r)
    assert ticket.startswith("TK-") and "30" in text(r) and "24" in text(r)
    assert len(re.findall(r"\d{1,2}:\d{2}", text(r))) >= 2  # first response and closure due times
    assert handoff(r) is None
    r = await s.say(w["where"].format(ticket))
    assert ticket in text(r)
    # The same shopper complains again: straight to a person.
    await s.say(w["complain"])
    r = await s.say(w["rude"])
    r = await s.press(r, '"none"')
    await s.say(w["description"])
    await s.say(w["skip"])
    r = await s.say(w["medium"])
    assert handoff(r)["reason"] == "repeated_complaint"


@pytest.mark.parametrize("lang", LANGS)
async def test_severe_complaint_goes_straight_to_a_person(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    r = await s.say(w["complain"])
    r = await s.press(r, '"quality"')
    r = await s.say("AS10002")
    r = await s.say(w["severe"])  # no photo or severity question: an injury goes to a person now
    signal = handoff(r)
    assert signal["reason"] == "severe_complaint" and signal["ticket_id"] == case_id(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_progress_by_case_id_and_by_order_number(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    r = await s.say(w["where"].format("RT-900001"))
    assert "RT-900001" in text(r) and "¥189.00" in text(r)  # a demo return, refunded
    r = await s.say(w["track"])
    r = await s.say("AS10008")
    assert "TK-900002" in text(r)
    r = await s.say(w["track"])
    r = await s.say("RT-999999")  # unknown: re-asked
    assert "RT-999999" in text(r)
    r = await s.say(w["cancel"])
    assert "/request_return" in buttons(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_faq_mid_form_then_back_and_cancel(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    await s.say(w["return"])
    r = await s.say(w["size_faq"])
    assert len(r) >= 2 and "40" in r[0]["text"] and "AS10001" in text(r[1:])  # the answer, then the question again
    r = await s.say("AS10001")
    assert '"changed_mind"' in "".join(buttons(r))
    r = await s.say(w["cancel"])
    assert "/request_return" in buttons(r) and not CASE_ID.search(text(r))
    r = await s.say("/ask_return_policy", payload="/ask_return_policy")
    assert ("Our return policy:" if lang == "en" else "退货政策：") in r[0]["text"]


async def test_language_switch_mid_conversation(shopper_factory) -> None:
    s = await shopper_factory("en")
    r = await s.say("I want to return something")
    assert "Which order" in text(r)
    r = await s.say("订单号是AS10001")  # switches to Chinese: the next question is in Chinese
    assert "原因" in text(r)
    r = await s.say("I changed my mind, sorry")  # and back
    assert "unworn" in text(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_two_stage_fallback_rephrase_then_a_person(shopper_factory, lang: str) -> None:
    s, w = await shopper_factory(lang), SAY[lang]
    r = await s.say(w["gibberish1"])
    suggestions = [p for p in buttons(r) if p != "/request_human"]
    assert len(suggestions) == 3 and handoff(r) is None  # stage 1: the three likeliest meanings
    r = await s.say(w["gibberish2"])
    assert buttons(r)[0] == "/request_human" and handoff(r) is None  # stage 2: a person is offered
    r = await s.press(r, "/request_human")
    assert handoff(r)["reason"] == "fallback"


async def test_talk_to_a_person_mid_form_carries_the_flow(shopper_factory) -> None:
    s = await shopper_factory("en")
    await s.say("I'd like to exchange my shoes")
    await s.say("AS10001")
    r = await s.say("let me talk to a real person please")
    signal = handoff(r)
    assert signal["reason"] == "shopper_request" and signal["flow"] == "exchange" and signal["order_number"] == "AS10001"


async def test_an_order_of_another_customer_is_not_shown(shopper_factory) -> None:
    s = await shopper_factory("en", customer_id="C1001")
    await s.say("I want to return an item")
    r = await s.say("AS10003")  # belongs to C1002
    assert "isn't linked to your account" in text(r) and "loafers" not in text(r).lower()


async def test_a_button_of_a_closed_question_is_explained_not_looped(shopper_factory) -> None:
    s = await shopper_factory("en")
    r = await s.say("Courier pick-up", payload='/choose{"choice":"pickup"}')
    assert "already closed" in text(r) and "/request_return" in buttons(r)
    r = await s.say("hello")
    assert "after-sales assistant" in r[0]["text"]


# -- proof of ownership (hardening item 3): a stranger learns nothing and changes nothing ----------


@pytest.mark.parametrize("lang", LANGS)
async def test_a_stranger_asking_about_someone_elses_refund_learns_nothing(shopper_factory, lang: str) -> None:
    s = await shopper_factory(lang, proves=False)
    r = await s.say(SAY[lang]["where"].format("RT-900001"))
    asked = text(r)
    assert "RT-900001" in asked and ("phone" in asked if lang == "en" else "手机号后四位" in asked)
    for secret in ("AS10007", "189", "SPF50", "防晒"):  # the order, the amount, the item
        assert secret not in asked
    for guess in ("1111", "2222"):
        r = await s.say(guess)
        assert "189" not in text(r) and ("doesn't match" in text(r) if lang == "en" else "不一致" in text(r))
    r = await s.say("3333")
    assert "189" not in text(r) and any(p == "/request_human" for p in buttons(r))
    r = await s.say("9163")  # even the right digits: this conversation has used its tries
    assert "189" not in text(r) and "AS10007" not in text(r)


@pytest.mark.parametrize("lang", LANGS)
async def test_the_buyer_proves_the_order_once_and_sees_their_refund(shopper_factory, lang: str) -> None:
    s = await shopper_factory(lang, proves=False)
    await s.say(SAY[lang]["where"].format("RT-900001"))
    r = await s.say("wang.fang@example.com")
    assert "RT-900001" in text(r) and "¥189.00" in text(r)
    r = await s.say(SAY[lang]["return"])  # another flow on an order already proved: not asked again
    r = await s.say("AS10007")
    assert "@" not in text(r) and ("phone" not in text(r) if lang == "en" else "手机号" not in text(r))


async def test_a_stranger_cannot_start_a_return_on_someone_elses_order(shopper_factory) -> None:
    s = await shopper_factory("en", proves=False)
    r = await s.say("return AS10002 please, the sole came off")
    assert "AS10002" in text(r) and "Chelsea" not in text(r) and "799" not in text(r)
    r = await s.say("pick up please")  # the general answer about pick-ups, then the proof again
    assert not CASE_ID.search(text(r)) and "799" not in text(r) and "Chelsea" not in text(r)
    assert "last 4 digits" in text(r)
