"""The shop speaks first (flows/updates.py): the shop's order system posts a signed case event
to the gateway; the shopper whose conversation made the case is told once, in their language
and channel, with what happens next; a replayed, unsigned, forged, stale or malformed event
changes nothing; a shopper can switch the updates off (and on again) with the message's button.

Cases are made with the flows' own case store, as the return flow makes them, in this test
process's flows database (FLOWS_DB_PATH, tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bot.sealing import DataKeys
from flows.cases import Case, CaseStore
from flows.db import db_path
from flows.updates import EVENTS_PATH, MAX_BODY_BYTES, signature
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway
from tests.fake_rasa import FakeRasa

SECRET = "shop-events-secret-" + "s" * 24


def cases(gateway: RunningGateway) -> CaseStore:
    return CaseStore(db_path(), DataKeys.parse(gateway.settings.data_keys))


def new_return(gateway: RunningGateway, conversation_key: str, language: str) -> Case:
    return cases(gateway).create_sync("return", ["pickup_scheduled"], order_number="AS10001",
                                      conversation_id=conversation_key, language=language,
                                      details={"refund_amount": "599.00", "item": {"en": "Brown oxfords", "zh": "棕色牛津鞋"}})


async def post(gateway: RunningGateway, body: dict | bytes, *, secret: str = SECRET, timestamp: int | None = None,
               signed: bool = True) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json"}
    if signed:
        headers.update({"X-Shop-Timestamp": ts, "X-Shop-Signature": signature(secret, ts, raw)})
    async with aiohttp.ClientSession() as http, \
            http.post(gateway.url + EVENTS_PATH, data=raw, headers=headers) as resp:
        return resp.status, await resp.json()


def event(case: Case, status: str, event_id: str | None = None, **extra: str) -> dict:
    return {"event_id": event_id or f"evt-{time.monotonic_ns()}", "case_id": case.id, "status": status,
            "at": "2026-12-03T10:15:00+08:00", **extra}


async def test_the_shopper_is_told_once_in_their_language_with_what_happens_next(shop_gateway: RunningGateway) -> None:
    shopper = await ChatClient.connect(shop_gateway.ws_url, locale="zh-CN")
    case = new_return(shop_gateway, f"webchat:{shopper.conversation_id}", "zh")
    try:
        refund = event(case, "refund_issued", amount="¥599.00")
        assert await post(shop_gateway, refund) == (200, {"told": True})
        told = await shopper.next_frame("reply")
        assert f"{case.id}" in told["text"] and "¥599.00 退款已于" in told["text"]
        assert "1-7 个工作日内原路退回" in told["text"]  # what happens next
        assert "北京时间" in told["text"] and "10:15" in told["text"]  # the time with its zone
        assert [b["title"] for b in told["buttons"]] == ["不再接收进度通知"]
        assert cases(shop_gateway).get_sync(case.id).status == "refunded"  # recorded in the case's history

        # The same event again (the shop's retry): nothing changes, nothing is sent.
        assert await post(shop_gateway, refund) == (200, {"duplicate": True, "told": False})
        # Another event id with the status the case already has: not told twice.
        assert await post(shop_gateway, event(case, "refund_issued")) == (200, {"told": False, "reason": "unchanged"})
        assert await shopper.unread_replies(shop_gateway) == []
    finally:
        await shopper.close()


async def test_english_shopper_hears_in_english_and_can_switch_updates_off_and_on(shop_gateway: RunningGateway) -> None:
    shopper = await ChatClient.connect(shop_gateway.ws_url)
    case = new_return(shop_gateway, f"webchat:{shopper.conversation_id}", "en")
    try:
        assert (await post(shop_gateway, event(case, "parcel_received")))[0] == 200
        told = await shopper.next_frame("reply")
        assert "arrived at our warehouse" in told["text"] and "within 2 working days" in told["text"]
        assert "(China time)" in told["text"]
        await shopper.say("Stop these updates", payload="/updates_off")
        assert "won't get case updates" in (await shopper.next_frame("reply"))["text"]
        assert await post(shop_gateway, event(case, "refund_issued")) == (200, {"told": False, "reason": "opted_out"})
        assert cases(shop_gateway).get_sync(case.id).status == "refunded"  # still recorded
        await shopper.say("Send me updates again", payload="/updates_on")
        assert "let you know here" in (await shopper.next_frame("reply"))["text"]
        answered = event(case, "ticket_answered", message="We refunded the shipping too.")
        assert await post(shop_gateway, answered) == (200, {"told": True})
        assert "We refunded the shipping too." in (await shopper.next_frame("reply"))["text"]
    finally:
        await shopper.close()


async def test_unsigned_forged_stale_malformed_and_unknown_events_change_nothing(shop_gateway: RunningGateway) -> None:
    shopper = await ChatClient.connect(shop_gateway.ws_url)
    case = new_return(shop_gateway, f"webchat:{shopper.conversation_id}", "en")
    good = event(case, "refund_issued")
    try:
        assert (await post(shop_gateway, good, signed=False))[0] == 401
        assert (await post(shop_gateway, good, secret="not-the-shops-secret-" + "x" * 20))[0] == 401
        assert (await post(shop_gateway, good, timestamp=int(time.time()) - 3600))[0] == 401  # an old capture
        assert (await post(shop_gateway, {**good, "case_id": "../../etc/passwd"}))[0] == 400
        assert (await post(shop_gateway, {**good, "case_id": "RT-482913; DROP TABLE cases"}))[0] == 400
        assert (await post(shop_gateway, {**good, "status": "refund_everything"}))[0] == 400
        assert (await post(shop_gateway, {**good, "at": "2026-12-03 10:00"}))[0] == 400  # no zone
        assert (await post(shop_gateway, b"[" * 5000 + b"]" * 5000))[0] == 400  # deeply nested
        status, answer = await post(shop_gateway, b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}")
        assert status == 413 and answer["max_bytes"] == MAX_BODY_BYTES
        assert await post(shop_gateway, {**good, "case_id": "RT-000001"}) == (404, {"error": "unknown_case",
                                                                                   "case_id": "RT-000001"})
        assert cases(shop_gateway).get_sync(case.id).status == "pickup_scheduled"
        assert await shopper.unread_replies(shop_gateway) == []
        # The genuine event still works after all that, and only once.
        assert await post(shop_gateway, good) == (200, {"told": True})
        assert "refund" in (await shopper.next_frame("reply"))["text"]
    finally:
        await shopper.close()


async def test_without_a_secret_there_is_no_endpoint(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url))
    try:
        async with aiohttp.ClientSession() as http, http.post(gateway.url + EVENTS_PATH, json={}) as resp:
            assert resp.status == 404
    finally:
        await runner.cleanup()


async def test_the_demo_back_office_moves_a_return_on_and_the_shopper_hears_each_step_once(
        fake_rasa: FakeRasa, tmp_path: Path) -> None:
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url,
                                                        environ={"DEMO_CASE_STEP_MINUTES": "0.005"}))  # 0.3 s
    shopper = await ChatClient.connect(gateway.ws_url)
    try:
        case = new_return(gateway, f"webchat:{shopper.conversation_id}", "en")
        heard = [(await shopper.next_frame("reply", timeout=20))["text"] for _ in range(3)]
        assert "the courier has collected your parcel" in heard[0]
        assert "arrived at our warehouse" in heard[1]
        assert "your refund of ¥599.00 was issued" in heard[2]
        assert [c.status for c in cases(gateway).get_sync(case.id).history] == \
            ["pickup_scheduled", "picked_up", "received", "refunded"]
        await asyncio.sleep(0.8)  # refunded is the last step: nothing more (two more steps' time)
        assert await shopper.unread_replies(gateway) == []
    finally:
        await shopper.close()
        await runner.cleanup()
