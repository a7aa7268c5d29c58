"""The conversations shoppers had trouble with, end to end against the real Rasa and action
server, through the REST contract (payload-only buttons, as rasa-webchat and Botium send
them, no locale) and the web chat websocket: the language stays the shopper's, the whole
message is read, the flow follows what happened, feelings are acknowledged first, forms
survive questions and photos, and nothing offered is refused by the next step. The shoppers
here are not signed in: they answer "is this order yours?" (tests/ownership_proof.py), so
"one turn" means one turn besides that proof."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest

from flows.cases import CaseStore
from handoff import HANDOFF_KEY
from tests.conftest import RunningGateway
from tests.evaluation.harness import RestShopper, WebchatShopper, wrong_language
from tests.ownership_proof import Proving

pytestmark = pytest.mark.e2e

CASE_ID = re.compile(r"\b(RT|EX|TK|RP|CP)-\d{6}\b")


def text(replies: list[dict[str, Any]]) -> str:
    return "\n".join(r.get("text") or "" for r in replies)


def buttons(replies: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [b for r in replies for b in r.get("buttons") or []]


def button(replies: list[dict[str, Any]], payload_part: str) -> dict[str, str]:
    for b in buttons(replies):
        if payload_part in b["payload"]:
            return b
    raise AssertionError(f"no button with {payload_part!r} in {[b['payload'] for b in buttons(replies)]}")


def all_in(lang: str, replies: list[dict[str, Any]]) -> bool:
    shown = [r.get("text") or "" for r in replies] + [b["title"] for b in buttons(replies)]
    return not [s for s in shown if wrong_language(s, lang)]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def rest(gateway: RunningGateway, http: aiohttp.ClientSession) -> Callable[[], Proving]:
    return lambda: Proving(RestShopper(http, gateway.url))


def cases() -> CaseStore:
    return CaseStore(Path(os.environ["FLOWS_DB_PATH"]))


async def tracker(gateway: RunningGateway, http: aiohttp.ClientSession, key: str) -> dict[str, Any]:
    async with http.get(f"{gateway.settings.rasa_url}/conversations/{key}/tracker") as resp:
        return await resp.json()  # type: ignore[no-any-return]


# -- the shopper's language ------------------------------------------------------------------------


async def test_a_chinese_shopper_tapping_payload_only_buttons_is_answered_in_chinese_to_the_end(rest) -> None:
    s = rest()
    r = await s.say("我想退货")
    assert all_in("zh", r) and "订单" in text(r)
    r = await s.say("AS10001")  # an order number says nothing about the language
    assert all_in("zh", r)
    r = await s.press(button(r, '"changed_mind"'))  # only the payload is sent
    assert all_in("zh", r)
    r = await s.press(button(r, '"unopened"'))
    assert all_in("zh", r) and "¥599.00" in text(r)
    r = await s.press(button(r, '"pickup"'))
    assert all_in("zh", r) and "退货已受理" in text(r) and CASE_ID.search(text(r))
    r = await s.say("ok")
    assert all_in("zh", r)


async def test_the_whole_exchange_request_in_one_chinese_message_is_booked_in_chinese(rest) -> None:
    r = await rest().say("换货 AS10001 换成 44 码")
    assert "换货已受理" in text(r) and "44" in text(r) and all_in("zh", r)  # the 44 was not ignored
    [case] = [c for c in await cases().for_order("AS10001", 5) if c.kind == "exchange"][:1]
    assert case.details["new_sku"] == "SH-OXF-BLK-44"


async def test_rasa_webchat_custom_data_language_sets_the_language(gateway: RunningGateway) -> None:
    import socketio  # type: ignore[import-untyped]

    sio = socketio.AsyncClient()
    said: list[dict[str, Any]] = []
    confirmed: list[str] = []
    sio.on("bot_uttered", lambda data: said.append(data))
    sio.on("session_confirm", lambda data: confirmed.append(data))
    await sio.connect(gateway.url, socketio_path="socket.io", transports=["websocket"])
    try:
        await sio.emit("session_request", {"session_id": None})
        for _ in range(100):
            if confirmed:
                break
            await sio.sleep(0.05)
        await sio.emit("user_uttered", {"message": "/greet", "session_id": confirmed[0],
                                        "customData": {"language": "zh"}})
        for _ in range(200):
            if said:
                break
            await sio.sleep(0.05)
        assert said and "您好" in said[0]["text"]
    finally:
        await sio.disconnect()


# -- read the whole message; route by what happened --------------------------------------------------


async def test_a_leaked_parcel_gets_the_replacement_the_policy_promises_in_one_turn(rest) -> None:
    r = await rest().say("the vitamin c cream leaked all over everything, order as 10006")
    assert "Replacement" in text(r) and CASE_ID.search(text(r)).group(1) == "RP"  # type: ignore[union-attr]
    assert "sorry" in text(r).lower() and "ticket" not in text(r).lower()


async def test_a_greeting_followed_by_the_problem_handles_the_problem(rest) -> None:
    r = await rest().say("hi, the scarf looks nothing like the photos… AS10008")
    assert "accept this return" in text(r) and "¥299.00" in text(r)  # the scarf, quality return, one turn
    assert not any(b["payload"] == "/request_return" for b in buttons(r))  # not the greeting menu


async def test_a_broken_blind_box_figure_is_refunded_not_ticketed(rest) -> None:
    s = rest()
    r = await s.say("my star bunny figure from AS10004 arrived with its arm snapped off")
    assert "accept this return" in text(r) and "¥69.00" in text(r)
    r = await s.press(button(r, '"pickup"'))
    assert "Return accepted" in text(r)


async def test_an_allergic_reaction_gets_an_apology_a_photo_request_a_fast_refund_and_an_expert(
        gateway: RunningGateway, http) -> None:
    s = Proving(await WebchatShopper(http, gateway.url, "zh-CN").open())
    try:
        r = await s.say("涂了 AS10005 的精华脸上起红疹")
        assert "抱歉" in text(r) and "照片" in text(r)  # apology before the question
        r = await s.photo()
        assert "极速退款" in text(r) and "¥259.00" in text(r)
        handoff = await gateway.app[HANDOFF_KEY].store.get(s.key)
        assert handoff is not None and handoff.reason == "allergy"
    finally:
        await s.close()


async def test_health_and_legal_words_get_an_apology_and_a_person_at_high_priority(
        gateway: RunningGateway, rest) -> None:
    s = rest()
    r = await s.say("the vitamin c cream from AS10006 burned my face, I had to go to the hospital. "
                    "I'm talking to a lawyer")
    first = text(r)
    assert first.lower().index("sorry") < first.index("?") if "?" in first else "sorry" in first.lower()
    if "photo" in first.lower():
        r = await s.photo()
    handoff = await gateway.app[HANDOFF_KEY].store.get(s.key)
    assert handoff is not None and handoff.detail.get("priority") == "high"


async def test_money_and_waiting_questions_are_not_goodbyes(rest) -> None:
    s = rest()
    r = await s.say("I want to return AS10001, changed my mind, never worn, pick up please")
    case_id = CASE_ID.search(text(r)).group(0)  # type: ignore[union-attr]
    r = await s.say("ok so when will I actually see the money?")
    assert "Goodbye" not in text(r) and "3 days" in text(r) and case_id in text(r)
    r = await rest().say("I have been waiting 2 weeks and nobody answers me")
    assert "Goodbye" not in text(r)
    assert text(r).lower().index("sorry") < text(r).index("?")  # acknowledged before the question


async def test_anger_is_acknowledged_before_any_question_wherever_it_lands(rest) -> None:
    s = rest()
    await s.say("I want to make a complaint")
    r = await s.say("…I'm so fed up with you guys")
    assert "sorry" in text(r).lower().split("?")[0]


# -- forms survive questions; follow-ups use the case just discussed --------------------------------


async def test_a_question_in_the_middle_of_a_return_is_answered_and_the_return_resumes(rest, gateway, http) -> None:
    s = rest()
    await s.say("我要退货 AS10001")
    r = await s.say("退款多久到账？")
    assert "到账" in text(r) and "3 天" in text(r)
    state = await tracker(gateway, http, s.key)
    assert state["active_loop"]["name"] == "return_form"  # not abandoned for a case lookup
    assert "原因" in text(r)  # and the return's question is asked again


async def test_a_follow_up_about_the_case_just_shown_does_not_ask_for_its_number(rest) -> None:
    s = rest()
    r = await s.say("查一下 TK-900002")
    assert "TK-900002" in text(r)
    r = await s.say("大概什么时候能处理好？")
    assert "TK-900002" in text(r) and "单号" not in text(r).split("TK-900002")[0]


# -- never offer what the next step refuses; switching flows keeps the order ---------------------------


async def test_an_out_of_window_blind_box_is_not_offered_a_swap_that_would_be_refused(rest) -> None:
    s = rest()
    r = await s.say("return AS10009 please, I got a duplicate")
    assert "can't accept" in text(r)
    assert not any("request_exchange" in b["payload"] for b in buttons(r))
    for b in buttons(r):  # every offered option works
        follow = await rest().press(b)
        assert "ended" not in text(follow) and "can't be exchanged" not in text(follow)


async def test_switching_flows_by_button_keeps_the_order_and_the_item(rest) -> None:
    s = rest()
    r = await s.say("the oxfords from AS10001 are too small")
    r = await s.press(button(r, "request_exchange"))
    assert "Which one would you like instead" in text(r) and "order" not in text(r).lower()
    r = await s.press(button(r, "SH-OXF-BLK-44"))
    assert "Exchange booked" in text(r)


# -- attachments are evidence ----------------------------------------------------------------------------


async def test_a_photo_in_the_middle_of_a_return_is_evidence_not_a_goodbye(gateway: RunningGateway, http) -> None:
    s = Proving(await WebchatShopper(http, gateway.url, "en-GB").open())
    try:
        r = await s.say("I want to return the boots from AS10002")
        r = await s.photo()
        assert "Goodbye" not in text(r) and "shoe" not in text(r).lower().split("\n")[0]
        assert "photo" in text(r).lower() or "reason" in text(r).lower()
        r = await s.say("the sole came off after a week")
        assert "accept this return" in text(r)
        r = await s.say("pick up please")
        [case] = (await cases().for_conversation(s.key, 1))
        assert case.details.get("photo", "").startswith("http")  # the photo is on the case
    finally:
        await s.close()


async def test_a_photo_out_of_the_blue_is_kept_for_the_flow_that_follows(gateway: RunningGateway, http) -> None:
    s = Proving(await WebchatShopper(http, gateway.url, "en-GB").open())
    try:
        r = await s.photo()
        assert "What is it about" in text(r) and buttons(r)
        r = await s.say("my face is red and itchy after the serum from AS10005")
        assert "Fast refund" in text(r)  # the photo already sent was taken as the evidence
    finally:
        await s.close()


# -- the fallback is useful ----------------------------------------------------------------------------


async def test_not_understood_once_offers_three_likely_options_then_a_person(rest) -> None:
    s = rest()
    r = await s.say("blorp zzzt qwx")
    options = [b for b in buttons(r) if b["payload"] != "/request_human"]
    assert len(options) == 3
    r = await s.say("mmm vrrr plonk")
    assert any(b["payload"] == "/request_human" for b in buttons(r)) and "person" in text(r)
