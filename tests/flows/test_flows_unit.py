"""The flows package without Rasa: policy loading and its errors, the decisions for every
branch, reading free-text answers, the demo store, the case store and the HTTP order
backend."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from flows import demo_data, parsing
from flows.cases import CaseStore, analytics_facts, normalize_case_id
from flows.decisions import (
    COMPENSATION,
    FAST_REFUND,
    PENDING,
    REFUND,
    REFUSED,
    REPLACEMENT,
    decide_exchange,
    decide_return,
)
from flows.knowledge import KnowledgeError, load_knowledge
from flows.orders import HttpOrderBackend, OrderBackendError, SqliteOrderBackend, order_to_json
from flows.policies import DEFAULT_PATH, PolicyError, load_policies, summary
from flows.replies import Context
from flows.service import AfterSales
from flows.texts import TextsError, load_texts
from tests.flows.conftest import shipped_files

TODAY = dt.date(2026, 3, 10)


@pytest.fixture
def policies():
    return shipped_files()["policies"]  # the shipped file, loaded once (frozen)


@pytest.fixture
def store(tmp_path: Path) -> SqliteOrderBackend:
    backend = SqliteOrderBackend(tmp_path / "flows.sqlite3")
    backend.seed(TODAY)
    return backend


# -- policies.yml ------------------------------------------------------------------------------


def test_shipped_policies_load_and_the_summary_keeps_its_contract(policies) -> None:
    text = summary(policies, "en")
    assert text.startswith("Our return policy:")
    assert "leather shoes: unopened, 30 days no-reason return" in text
    assert summary(policies, "zh").startswith("退货政策：")
    assert policies.complaints.first_response_minutes == 30 and policies.complaints.closure_hours == 24


def _write_policies(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "policies.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["categories"]["shoes"].update(quality_dayz=90), "unknown field 'quality_dayz'"),
    (lambda d: d["categories"]["shoes"].update(quality_days=10), "'quality_days' (10) is shorter than 'no_reason_days' (30)"),
    (lambda d: d["categories"]["shoes"].update(no_reason_days="thirty"), "'no_reason_days' must be a whole number"),
    (lambda d: d["categories"]["skincare"]["accepted_reasons"].append("bored"), "unknown value 'bored'"),
    (lambda d: d["categories"]["shoes"].update(out_of_window_alternatives=["teleport"]), "unknown value 'teleport'"),
    (lambda d: d["categories"]["blind_box"].update(coupon_amount=0), "'coupon_amount' must be more than 0"),
    (lambda d: d["reasons"]["defective"].update(kind="sometimes"), "'kind' must be one of no_reason, quality"),
    (lambda d: d["categories"]["shoes"]["names"].pop("zh"), "'names' needs a text for each of en, zh"),
    (lambda d: d["complaints"].update(handoff_severity="extreme"), "'handoff_severity' must be one of"),
    (lambda d: d["categories"]["skincare"]["reason_rules"]["allergic_reaction"].update(outcome="hug"),
     "'outcome' must be one of refund, replacement"),
])
def test_a_malformed_policy_file_fails_with_a_clear_error(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        load_policies(_write_policies(tmp_path, change))
    assert message in str(error.value) and "policies.yml" in str(error.value)


def test_knowledge_base_and_texts_are_validated(tmp_path: Path, policies) -> None:
    kb = load_knowledge(policies=policies)
    assert kb.answer("ask_return_policy", "en")[0].startswith("Our return policy:")
    assert "鞋撑" in kb.answer("ask_shoe_care", "zh")[0]
    bad = tmp_path / "kb.yml"
    bad.write_text("entries:\n  a: {intent: x, answer: {en: hi, zh: 你好}}\n  b: {intent: x, answer: {en: hi, zh: 你好}}\n")
    with pytest.raises(KnowledgeError, match="already answered"):
        load_knowledge(bad, policies)
    texts = tmp_path / "texts.yml"
    texts.write_text('greeting: {en: "Hi {name}", zh: "你好 {nmae}"}\n', encoding="utf-8")
    with pytest.raises(TextsError, match="different placeholders"):
        load_texts(texts)


# -- decisions, one per branch ----------------------------------------------------------------------


async def _order_item(store: SqliteOrderBackend, number: str, sku: str | None = None):
    order = await store.get_order(number)
    assert order is not None
    return order, order.item(sku) if sku else order.items[0]


async def test_demo_orders_are_dated_relative_to_today(store: SqliteOrderBackend) -> None:
    for spec in demo_data.ORDERS:
        order = await store.get_order(spec["number"])
        assert order is not None
        assert order.days_since_delivery(TODAY) == spec["delivered_days_ago"]
    assert {o.number for o in await store.recent_orders("C1001")} == {"AS10001", "AS10002", "AS10004"}


@pytest.mark.parametrize("number, sku, reason, facts, outcome, why", [
    ("AS10001", None, "changed_mind", {}, PENDING, ""),  # asks: opened?
    ("AS10001", None, "changed_mind", {"opened": "unopened", "return_method": "pickup"}, REFUND, "no_reason_window"),
    ("AS10001", None, "changed_mind", {"opened": "opened"}, REFUSED, "opened_not_returnable"),
    ("AS10001", None, "wrong_size", {}, PENDING, "exchange_first"),
    ("AS10002", None, "defective", {"return_method": "dropoff"}, REFUND, "quality_window"),
    ("AS10002", None, "changed_mind", {}, REFUSED, "out_of_window"),
    ("AS10003", None, None, {}, REFUSED, "out_of_window"),
    ("AS10004", "BB-STAR-RND", "changed_mind", {"opened": "opened"}, PENDING, "compensation"),
    ("AS10004", "BB-STAR-RND", "changed_mind", {"opened": "opened", "resolution": "coupon"}, COMPENSATION,
     "opened_compensation"),
    ("AS10004", "BB-STAR-RND", "defective", {"return_method": "pickup"}, REFUND, "quality_window"),
    ("AS10005", None, "allergic_reaction", {"photo": "https://x/p.jpg"}, FAST_REFUND, "fast_refund"),
    ("AS10005", None, "changed_mind", {}, REFUSED, "out_of_window"),
    ("AS10006", "SK-CRM-50", "damaged_in_transit", {}, REPLACEMENT, "replacement"),
    ("AS10006", "SK-CRM-50", "changed_mind", {"opened": "opened"}, REFUSED, "opened_not_returnable"),
    ("AS10006", "SK-CLN-120", "not_as_described", {"opened": "opened"}, REFUSED, "opened_not_returnable"),
    ("AS10007", None, "defective", {}, REFUSED, "out_of_window"),
    ("AS10008", "GN-TOTE-NAT", "not_as_described", {"return_method": "pickup"}, REFUND, "quality_window"),
    ("AS10009", None, "changed_mind", {}, REFUSED, "out_of_window"),
    ("AS10010", None, "changed_mind", {}, REFUSED, "not_delivered"),
])
async def test_return_decisions(store, policies, number, sku, reason, facts, outcome, why) -> None:
    order, item = await _order_item(store, number, sku)
    decision = decide_return(policies, order, item, reason, today=TODAY, **facts)
    assert (decision.outcome, decision.why) == (outcome, why)


async def test_refund_amounts_and_what_is_asked_next(store, policies) -> None:
    order, item = await _order_item(store, "AS10004", "BB-STAR-RND")
    d = decide_return(policies, order, item, "changed_mind", today=TODAY, opened="unopened")
    assert d.missing == "return_method" and d.refund_amount == Decimal("59.00") and d.fee == Decimal("10.00")
    order, item = await _order_item(store, "AS10005")
    assert decide_return(policies, order, item, "allergic_reaction", today=TODAY).missing == "photo_url"
    d = decide_return(policies, order, item, "allergic_reaction", today=TODAY, photo="https://x/p.jpg")
    assert d.final and not d.return_item and d.expert_follow_up and d.refund_amount == Decimal("259.00")
    order, item = await _order_item(store, "AS10002")
    d = decide_return(policies, order, item, "changed_mind", today=TODAY)
    assert d.quality_deadline == order.delivered_on + dt.timedelta(days=90)  # "you can still return a defect until"


async def test_exchange_decisions(store, policies) -> None:
    order, item = await _order_item(store, "AS10001")
    d = decide_exchange(policies, order, item, await store.variants(item.product_id), today=TODAY)
    assert d.ok and "SH-OXF-BLK-44" in {v.sku for v in d.options} and "SH-OXF-BLK-43" in {v.sku for v in d.sold_out}
    order, item = await _order_item(store, "AS10002")
    assert decide_exchange(policies, order, item, [], today=TODAY).why == "out_of_window"
    order, item = await _order_item(store, "AS10010")
    assert decide_exchange(policies, order, item, [], today=TODAY).why == "not_delivered"


# -- reading answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("AS10001", "AS10001"), ("my order is as 10001 thanks", "AS10001"), ("订单号AS10001", "AS10001"),
    ("ＡＳ１０００１", "AS10001"), ("#as-10001", "AS10001"), ("AS1001", None), ("RT-123456", None),
])
def test_order_numbers_are_found_in_free_text(text: str, expected: str | None) -> None:
    assert parsing.find_order_number(text) == expected


def test_case_ids_opened_answers_and_language() -> None:
    assert normalize_case_id("where is rt 482913?") == "RT-482913"
    assert parsing.find_case_id("工单TK-654321怎么样了") == "TK-654321"
    assert parsing.parse_opened("not opened yet") == "unopened"
    assert parsing.parse_opened("yes") == "unopened"  # "is it still unopened?" - "yes"
    assert parsing.parse_opened("已经拆了") == "opened"
    assert parsing.parse_opened("没有") is None  # ambiguous in Chinese: asked again
    assert parsing.detect_language("我要退货") == "zh"
    assert parsing.detect_language("I want a refund") == "en"
    assert parsing.detect_language("AS10001") is None and parsing.detect_language("/request_return") is None


async def test_sizes_and_colours_are_matched_to_variants(store) -> None:
    variants = await store.variants("SHOE-OXF")
    assert {v.sku for v in parsing.variant_match("44", variants)} == {"SH-OXF-BLK-44"}
    assert {v.sku for v in parsing.variant_match("43", variants)} == {"SH-OXF-BLK-43", "SH-OXF-BRN-43"}
    assert {v.sku for v in parsing.variant_match("棕色43码", variants)} == {"SH-OXF-BRN-43"}
    assert parsing.variant_match("something nice", variants) == []


# -- the conversation logic -----------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, store: SqliteOrderBackend) -> AfterSales:
    tz = shipped_files()["policies"].tzinfo()
    return AfterSales(**shipped_files(), orders=store, cases=CaseStore(tmp_path / "flows.sqlite3"),
                      clock=lambda: dt.datetime.combine(TODAY, dt.time(10, 0), tz))


async def test_a_form_lets_a_faq_through_but_re_asks_a_bad_answer(app: AfterSales) -> None:
    form = app.forms["return_form"]
    ctx = Context("en")
    faq = await form.step("answer", "order_number", app.inbound("how do I pick a size?", "ask_size_advice", 0.95), {},
                          ctx)
    assert faq.reject
    bad = await form.step("answer", "order_number", app.inbound("blue", "nlu_fallback", 0.3), {}, ctx)
    assert not bad.reject and bad.next_slot == "order_number" and bad.replies
    ok = await form.step("answer", "order_number", app.inbound("it's AS10001", "nlu_fallback", 0.3), {}, ctx)
    assert ok.updates["order_number"] == "AS10001" and ok.updates["item_sku"] == "SH-OXF-BLK-42"
    assert ok.next_slot == "order_proof"  # not signed in: the order is proved before anything of it is shown
    proved = await form.step("answer", "order_proof", app.inbound("ends in 5821", "nlu_fallback", 0.3),
                             {**ok.updates}, ctx)
    assert proved.updates["verified_orders"] == ["AS10001"] and proved.next_slot == "return_reason"


async def test_a_return_creates_a_case_with_status_history(app: AfterSales) -> None:
    form = app.forms["return_form"]
    values = {"order_number": "AS10001", "item_sku": "SH-OXF-BLK-42", "return_reason": "changed_mind",
              "item_opened": "unopened", "return_method": "pickup"}
    replies, updates = await form.submit(values, Context("zh", conversation_id="webchat:abc"))
    case = await app.cases.get(updates["last_case_id"])
    assert case is not None and case.id in replies[0].text and "¥599.00" in replies[0].text
    assert [h.status for h in case.history] == ["submitted", "pickup_scheduled"]
    await app.cases.set_status(case.id, "picked_up")
    again = await CaseStore(app.cases.path).get(case.id)  # durable: a new store sees it
    assert again is not None and [h.status for h in again.history][-1] == "picked_up"
    assert (await app.cases.for_conversation("webchat:abc"))[0].to_console()["id"] == case.id
    assert all(v is None for k, v in updates.items() if k not in ("last_case_id", "last_outcome"))


# -- the HTTP order backend -----------------------------------------------------------------------------


@pytest.fixture
async def order_api():
    from tests.conftest import free_port

    orders = {o["number"]: o for o in [
        {"number": "AS20001", "customer_id": "C9", "placed_at": "2026-03-01", "delivered_at": "2026-03-05",
         "status": "delivered", "payment_method": {"en": "Alipay", "zh": "支付宝"},
         "items": [{"sku": "SH-1-42", "product_id": "SH-1", "category": "shoes",
                    "name": {"en": "Derby shoes", "zh": "德比鞋"}, "variant": {"en": "EU 42", "zh": "42码"},
                    "quantity": 1, "unit_price": "450.00"}]}]}
    seen: list[str] = []

    async def get_order(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        number = request.match_info["number"]
        if number == "AS50000":
            return web.Response(status=500)
        if number not in orders:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(orders[number])

    async def customer_orders(request: web.Request) -> web.Response:
        return web.json_response({"orders": [o for o in orders.values()
                                             if o["customer_id"] == request.match_info["cid"]]})

    async def variants(request: web.Request) -> web.Response:
        return web.json_response({"variants": [
            {"sku": "SH-1-42", "label": {"en": "EU 42", "zh": "42码"}, "attributes": {"size": "42"}, "stock": 1},
            {"sku": "SH-1-43", "label": {"en": "EU 43", "zh": "43码"}, "attributes": {"size": "43"}, "stock": 4}]})

    app = web.Application()
    app.router.add_get("/api/orders/{number}", get_order)
    app.router.add_get("/api/customers/{cid}/orders", customer_orders)
    app.router.add_get("/api/products/{pid}/variants", variants)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/api", seen
    await runner.cleanup()


async def test_http_order_backend(order_api, policies) -> None:
    url, seen = order_api
    backend = HttpOrderBackend(url, token="s3cret")
    try:
        order = await backend.get_order("AS20001")
        assert order is not None and order.items[0].unit_price == Decimal("450.00") and seen == ["Bearer s3cret"]
        assert order_to_json(order)["items"][0]["name"]["zh"] == "德比鞋"
        assert await backend.get_order("AS29999") is None
        with pytest.raises(OrderBackendError):
            await backend.get_order("AS50000")
        assert [o.number for o in await backend.recent_orders("C9")] == ["AS20001"]
        assert [v.sku for v in await backend.variants("SH-1") if v.in_stock] == ["SH-1-42", "SH-1-43"]
        today = dt.date(2026, 3, 10)
        d = decide_return(policies, order, order.items[0], "changed_mind", today=today, opened="unopened",
                          return_method="pickup")
        assert (d.outcome, d.refund_amount) == (REFUND, Decimal("450.00"))
    finally:
        await backend.close()
    unreachable = HttpOrderBackend("http://127.0.0.1:9/api", timeout=1)
    with pytest.raises(OrderBackendError):
        await unreachable.get_order("AS20001")
    await unreachable.close()


def test_the_demo_table_lists_every_demo_order() -> None:
    table = demo_data.table()
    assert all(o["number"] in table for o in demo_data.ORDERS)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "flows.md").read_text(encoding="utf-8")
    assert all(o["number"] in doc for o in demo_data.ORDERS)
    json.dumps(demo_data.CASES)  # plain data


async def test_the_analytics_read_cases_as_counts_with_product_category_and_refusal(app: AfterSales) -> None:
    """What the shop's analytics get of the flows' cases (flows.cases.analytics_facts): a complaint
    about an order carries the order's product category, a refused return its reason; no text."""
    ctx = Context("en", conversation_id="telegram:42")
    await app.forms["complaint_form"].submit({"complaint_category": "quality", "order_number": "AS10002",
                                              "complaint_description": "the heel came off on day two",
                                              "complaint_severity": "medium"}, ctx)
    await app.forms["complaint_form"].submit({"complaint_category": "delivery", "order_number": "none",
                                              "complaint_description": "the courier was rude",
                                              "complaint_severity": "low"}, Context("zh", conversation_id="webchat:x"))
    await app.forms["return_form"].submit({"order_number": "AS10003", "item_sku": "SH-LOF-BLK-41",
                                           "return_reason": "changed_mind"}, ctx)
    facts = await analytics_facts(app.cases.keys, app.cases.path)(0, 4_000_000_000)
    by_kind = {(f["kind"], f["category"]): f for f in facts}
    assert by_kind[("complaint", "shoes")] == {
        "kind": "complaint", "created_at": by_kind[("complaint", "shoes")]["created_at"], "channel": "telegram",
        "language": "en", "category": "shoes", "reason": "quality", "outcome": "ticket", "refusal": None}
    assert by_kind[("complaint", "unknown")]["reason"] == "delivery"
    assert by_kind[("complaint", "unknown")]["channel"] == "webchat"
    refused = by_kind[("return", "shoes")]
    assert (refused["outcome"], refused["refusal"], refused["reason"]) == ("refused", "out_of_window", "changed_mind")
    assert "heel" not in str(facts) and "rude" not in str(facts)
    assert await analytics_facts(app.cases.keys, app.cases.path)(0, 1) == []  # only the range asked for
