"""Proof of ownership for shoppers the shop has not signed in (hardening item 3): nothing of
an order or a case is shown or acted on before the buyer's phone ending or e-mail is given;
wrong answers are limited per conversation and per order. Real forms, real SQLite."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from flows.cases import CaseStore
from flows.orders import SqliteOrderBackend
from flows.ownership import MAX_FAILURES_PER_ORDER, ProofLedger, Verdict, find_proof
from flows.replies import Context
from flows.service import AfterSales
from tests.flows.conftest import shipped_files

TODAY = dt.date(2026, 11, 20)


@pytest.fixture
def app(tmp_path: Path) -> AfterSales:
    store = SqliteOrderBackend(tmp_path / "flows.sqlite3")
    store.seed(TODAY)
    cases = CaseStore(tmp_path / "flows.sqlite3")
    tz = shipped_files()["policies"].tzinfo()
    app = AfterSales(**shipped_files(), orders=store, cases=cases,
                     clock=lambda: dt.datetime.combine(TODAY, dt.time(10, 0), tz))
    cases.seed_demo_sync(app.now())
    return app


def said(result: Any) -> str:
    return "\n".join(r.text or "" for r in result.replies)


def test_proof_is_read_the_way_shoppers_write_it() -> None:
    assert find_proof("it ends in 5821").last_four == "5821"  # type: ignore[union-attr]
    assert find_proof("尾号5821").last_four == "5821"  # type: ignore[union-attr]
    assert find_proof("+86 138 0013 5821").last_four == "5821"  # type: ignore[union-attr]
    assert find_proof("Li.Na@Example.com").email == "li.na@example.com"  # type: ignore[union-attr]
    assert find_proof("5821").last_four == "5821"  # type: ignore[union-attr]
    # Not a proof: an order number, a case id, a price said in passing.
    assert find_proof("AS10001") is None and find_proof("RT-900001") is None
    assert find_proof("it cost 1299 and broke", asked=False) is None


async def test_a_stranger_cannot_start_a_return_on_someone_elses_order(app: AfterSales) -> None:
    form, ctx = app.forms["return_form"], Context("en", conversation_id="webchat:stranger")
    first = await form.step("activation", None, app.inbound("return AS10002, the sole came off", "request_return", 0.99),
                            {}, ctx)
    assert first.next_slot == "order_proof"
    question = await form.ask("order_proof", first.updates, ctx)
    assert "AS10002" in question[0].text and "Chelsea" not in question[0].text  # nothing of the order is shown
    state = dict(first.updates)
    for left in (2, 1):
        wrong = await form.step("answer", "order_proof", app.inbound("0000"), state, ctx)
        assert wrong.next_slot == "order_proof" and f"{left} more" in said(wrong)
        assert "verified_orders" not in wrong.updates
    last = await form.step("answer", "order_proof", app.inbound("1111"), state, ctx)
    assert "couldn't confirm" in said(last) and last.next_slot == "order_proof"
    # The right answer is no longer checked in this conversation: guessing has stopped.
    after = await form.step("answer", "order_proof", app.inbound("5821"), state, ctx)
    assert "verified_orders" not in after.updates and "couldn't confirm" in said(after)
    asked = await form.ask("order_proof", state, ctx)
    assert "couldn't confirm" in asked[0].text and asked[0].buttons  # a person instead


async def test_the_buyer_proves_once_and_the_flow_goes_on_in_chinese(app: AfterSales) -> None:
    form, ctx = app.forms["return_form"], Context("zh", conversation_id="telegram:42")
    first = await form.step("activation", None, app.inbound("AS10002 的靴子开胶了，手机尾号5821", "request_return", 0.99),
                            {}, ctx)
    assert first.updates["verified_orders"] == ["AS10002"]  # proof given up front is taken, not asked
    assert first.next_slot != "order_proof"
    # Proved orders stay proved for the conversation: a later exchange does not ask again.
    later = Context("zh", conversation_id="telegram:42", verified_orders=("AS10002",))
    exchange = await app.forms["exchange_form"].step("activation", None, app.inbound("AS10002 想换个尺码", "request_exchange",
                                                                                     0.99), {}, later)
    assert exchange.next_slot != "order_proof"


async def test_a_signed_in_customer_is_not_asked_for_their_own_order(app: AfterSales) -> None:
    form = app.forms["return_form"]
    mine = await form.step("activation", None, app.inbound("return AS10001", "request_return", 0.99), {},
                           Context("en", customer_id="C1001"))
    assert mine.next_slot == "return_reason"


async def test_case_status_is_not_disclosed_without_proof(app: AfterSales) -> None:
    form, ctx = app.forms["progress_form"], Context("en", conversation_id="rest:someone")
    first = await form.step("activation", None, app.inbound("where is my refund RT-900001", "check_progress", 0.99),
                            {}, ctx)
    assert first.next_slot == "order_proof"
    question = (await form.ask("order_proof", first.updates, ctx))[0].text
    assert "RT-900001" in question and "AS10007" not in question and "189" not in question
    proved = await form.step("answer", "order_proof", app.inbound("wang.fang@example.com"), dict(first.updates), ctx)
    assert proved.next_slot is None
    replies, _ = await form.submit({**first.updates, **proved.updates}, ctx)
    assert "¥189.00" in replies[0].text  # the buyer sees their refund


async def test_a_case_made_in_this_conversation_needs_no_proof(app: AfterSales) -> None:
    case = await app.cases.create("complaint", ["open"], conversation_id="webchat:me", details={"category": "delivery"})
    form = app.forms["progress_form"]
    step = await form.step("activation", None, app.inbound(f"status of {case.id}?", "check_progress", 0.99), {},
                           Context("en", conversation_id="webchat:me"))
    assert step.next_slot is None
    other = await form.step("activation", None, app.inbound(f"status of {case.id}?", "check_progress", 0.99), {},
                            Context("en", conversation_id="webchat:other"))
    assert other.next_slot == "case_reference" and "person" in said(other)  # nothing to prove it with


async def test_guessing_from_many_conversations_locks_the_order(app: AfterSales, tmp_path: Path) -> None:
    ledger = ProofLedger(tmp_path / "flows.sqlite3")
    order = await app.order("AS10003")
    assert order is not None
    right = find_proof("4407")
    wrong = find_proof("0000")
    assert right is not None and wrong is not None
    for n in range(MAX_FAILURES_PER_ORDER):
        assert (await ledger.check(order, wrong, f"webchat:bot{n}")).verdict is Verdict.WRONG
    # Even the right answer is not taken for the rest of the hour: no one can keep guessing.
    assert (await ledger.check(order, right, "webchat:owner")).verdict is Verdict.LOCKED
    assert (await ledger.check(order, right, "webchat:owner")).verdict is not Verdict.PROVED
    later = ledger.check_sync(order, right, "webchat:owner", now=time.time() + 3601)
    assert later.verdict is Verdict.PROVED


async def test_wrong_answers_are_forgotten_after_their_window_or_on_erasure(app: AfterSales, tmp_path: Path) -> None:
    ledger = ProofLedger(tmp_path / "flows.sqlite3")
    order = await app.order("AS10001")
    wrong = find_proof("0000")
    assert order is not None and wrong is not None
    await ledger.check(order, wrong, "webchat:a")
    await ledger.check(order, wrong, "webchat:b")
    assert ledger.forget_sync("webchat:a") == 1  # `./aftersales shopper erase webchat:a`
    assert ledger.expire_sync(now=time.time() + 2 * 86400) == 1  # the hourly sweep, two days on
