"""The shop's analytics on the real stack (real Rasa, action server, flows): a known mix of web
chat conversations, and every figure of the dashboard's JSON and CSV checked against it.

The mix: five conversations the bot settles (a shoe return refunded, a shoe return refused by
policy, a skincare parcel that leaked replaced, a return policy question, a complaint ticket) and two handed to a
person and resolved with satisfaction answers 5 and 3:

1. en: return AS10001, changed mind, unworn, pick-up -> refund (shoes, changed_mind)
2. en: return AS10002, changed mind -> refused, out of the 30-day window (shoes, changed_mind)
3. zh: return AS10006 vitamin C cream, leaked -> replacement (skincare, damaged_in_transit)
4. en: "what is your return policy" (FAQ)
7. en: a complaint about a rude courier, no order -> a ticket (product category "unknown", delivery)
5. en: "I want to talk to a human" -> shopper_request, resolved, CSAT 5
6. en: return AS10003 -> refused, out of every window, before any reason (shoes, "unknown") -> a person ->
   disputed_refusal, resolved, CSAT 3

So: 7 conversations, 5 contained (0.7143), handoffs 1 shopper_request + 1 disputed_refusal
(rate 0.1429 each), CSAT {3: 1, 5: 1} average 4.0, returns shoes 3 and skincare 1, refusals
out_of_window 2, complaints 1. The flows' case store is shared by the whole run, so the case figures are
checked as what this mix added to them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from handoff import ANALYTICS_KEY
from tests.conftest import RasaProcesses, RunningGateway, make_settings, settled, start_gateway
from tests.flows.conftest import buttons, text
from tests.handoff.conftest import ConsoleClient
from tests.handoff.test_analytics import csv_rows, report, signed_in, total
from tests.handoff.test_handoff import claim_when_queued
from tests.handoff.test_roles import MANAGER, team_with_manager

pytestmark = pytest.mark.e2e


@pytest.fixture
async def gateway(rasa_stack: RasaProcesses, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """The real stack, with the team and a manager (the flows' `shopper_factory` uses it)."""
    running, runner = await start_gateway(make_settings(tmp_path, rasa_stack.rasa_url,
                                                        environ=team_with_manager(tmp_path)))
    try:
        yield running
    finally:
        await runner.cleanup()


async def _resolve_with_csat(gateway: RunningGateway, alice: ConsoleClient, shopper: Any, score: int) -> None:
    key = f"webchat:{shopper.chat.conversation_id}"
    await claim_when_queued(alice, shopper.chat, key)
    await alice.send(type="reply", key=key, text="I am looking at it now.")
    await shopper.chat.next_frame("reply")
    await alice.send(type="resolve", key=key, outcome="resolved")
    survey = await shopper.chat.next_frame("reply")
    assert "/csat_5" in [b["payload"] for b in survey.get("buttons") or []]
    await shopper.chat.say(str(score), payload=f"/csat_{score}")
    await shopper.chat.next_frame("reply")  # thanks
    await settled(gateway.service)


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What a nested count dict gained (entries that did not change are left out)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            inner = _diff(value, before.get(key) or {})
            if inner:
                out[key] = inner
        elif value != (before.get(key) or 0):
            out[key] = value - (before.get(key) or 0)
    return out


def _leaves(node: Any) -> int:
    return sum(_leaves(v) for v in node.values()) if isinstance(node, dict) else 1


def _json_value(totals: dict[str, Any], figure: str, group: str, item: str) -> Any:
    """The JSON figure a CSV row names (`returns.by_category`, shoes, changed_mind -> ...[shoes][changed_mind])."""
    node: Any = totals
    for part in figure.split("."):
        node = node[part]
        if part in ("by_category", "outcomes"):
            node = node[group][item]
        elif part in ("by_reason", "counts", "handoffs_by_reason"):
            node = node[item]
    return node


def _as_cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


async def test_the_dashboard_counts_a_known_mix_exactly(gateway: RunningGateway, shopper_factory: Any) -> None:
    manager = await signed_in(gateway.url, MANAGER[0], MANAGER[2])
    alice = await ConsoleClient.sign_in(gateway.url, "alice")
    agent_only = await signed_in(gateway.url, "bob", "bob-pw")
    try:
        today = gateway.app[ANALYTICS_KEY].today()  # the shop's day; the range outlives a midnight in the test
        span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}
        before = (await report(manager, gateway.url, **span))["totals"]
        assert before["conversations"] == 0 and before["handoffs"] == 0

        s = await shopper_factory("en")  # 1. refund
        await s.say("I want to return my order")
        await s.say("AS10001")
        await s.say("I just changed my mind")
        r = await s.say("yes, still unworn")
        r = await s.press(r, "pickup")
        assert "Return accepted" in text(r)

        s = await shopper_factory("en")  # 2. refused by policy
        await s.say("I want to return my order")
        await s.say("AS10002")
        r = await s.say("I just changed my mind")
        assert "can't accept a return" in text(r)

        s = await shopper_factory("zh")  # 3. leaked: replaced
        await s.say("我要退货")
        r = await s.say("AS10006")
        r = await s.press(r, "SK-CRM-50")
        r = await s.say("面霜漏液了，盒子里全是")
        assert "RP-" in text(r)

        s = await shopper_factory("en")  # 4. FAQ
        r = await s.say("/ask_return_policy", payload="/ask_return_policy")
        assert "Our return policy:" in r[0]["text"]

        s = await shopper_factory("en")  # 7. a complaint ticket, about no order
        await s.say("I want to make a complaint")
        r = await s.say("the courier was really rude")
        await s.press(r, '"none"')
        await s.say("The courier threw my parcel over the fence and shouted at me when I asked why")
        await s.say("skip")
        r = await s.say("serious")
        assert "TK-" in text(r)

        s = await shopper_factory("en")  # 5. a person, CSAT 5
        await s.say("I want to talk to a human")
        await _resolve_with_csat(gateway, alice, s, 5)

        s = await shopper_factory("en")  # 6. refused, then a person, CSAT 3
        await s.say("I want to return my order")
        r = await s.say("AS10003")
        assert "can't accept a return" in text(r) and "/request_human" in buttons(r)
        await s.press(r, "/request_human")
        await _resolve_with_csat(gateway, alice, s, 3)
        await settled(gateway.service)

        body = await report(manager, gateway.url, **span)
        t = body["totals"]
        assert body["zone"] == "Asia/Shanghai" and body["utc_offset"] == "+0800"
        assert (t["conversations"], t["contained"], t["handed_off_conversations"]) == (7, 5, 2)
        assert t["containment"] == 0.7143
        assert t["handoffs"] == 2 and t["resolved"] == 2
        assert t["handoffs_by_reason"] == {"disputed_refusal": {"count": 1, "rate": 0.1429},
                                           "shopper_request": {"count": 1, "rate": 0.1429}}
        assert t["csat"] == {"answers": 2, "average": 4.0, "counts": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}}
        assert t["first_response"]["count"] == 2 and t["first_response"]["share_within_sla"] == 1.0
        assert t["resolution"]["count"] == 2 and t["resolution"]["within_sla"] == 2
        assert t["first_response"]["sla_seconds"] == 1800 and t["resolution"]["sla_seconds"] == 86400
        assert _diff(t["returns"], before["returns"]) == {
            "total": 4,
            "by_category": {"shoes": {"changed_mind": 2, "unknown": 1}, "skincare": {"damaged_in_transit": 1}},
            "outcomes": {"shoes": {"refund": 1, "refused": 2}, "skincare": {"replacement": 1}}}
        assert _diff(t["refusals"], before["refusals"]) == {
            "total": 2, "by_reason": {"out_of_window": 2}, "by_category": {"shoes": {"out_of_window": 2}}}
        assert _diff(t["complaints"], before["complaints"]) == {"total": 1, "by_category": {"unknown": {"delivery": 1}}}
        days = body["periods"]
        assert [p["period"] for p in days] == [span["from"], today.isoformat(), span["to"]]
        assert days[0]["conversations"] == 0 and days[1]["conversations"] + days[2]["conversations"] >= 7
        assert sum(p["handoffs"] for p in days) == 2 and sum(p["csat"]["answers"] for p in days) == 2

        zh = (await report(manager, gateway.url, language="zh", **span))["totals"]
        assert (zh["conversations"], zh["containment"], zh["handoffs"]) == (1, 1.0, 0)
        week = await report(manager, gateway.url, period="week", **span)
        assert week["totals"]["conversations"] == 7 and week["totals"]["csat"]["average"] == 4.0
        assert [p["period"] for p in week["periods"]] == sorted({(d - dt.timedelta(days=d.weekday())).isoformat()
                                                              for d in (today - dt.timedelta(days=1), today,
                                                                        today + dt.timedelta(days=1))})

        rows = await csv_rows(manager, gateway.url, **span)
        assert total(rows, "conversations") == "7" and total(rows, "contained") == "5"
        assert total(rows, "containment") == "0.7143"
        assert total(rows, "handoffs_by_reason.count", "shopper_request") == "1"
        assert total(rows, "handoffs_by_reason.rate", "disputed_refusal") == "0.1429"
        assert total(rows, "csat.counts", "5") == "1" and total(rows, "csat.counts", "3") == "1"
        assert total(rows, "csat.counts", "1") == "0" and total(rows, "csat.average") == "4.0"
        assert int(total(rows, "returns.by_category", "damaged_in_transit", "skincare")) == \
            t["returns"]["by_category"]["skincare"]["damaged_in_transit"]
        assert int(total(rows, "refusals.by_reason", "out_of_window")) == t["refusals"]["by_reason"]["out_of_window"]
        assert next(r["value"] for r in rows if r["figure"] == "zone") == "Asia/Shanghai"
        totals_rows = [r for r in rows if r["period"] == "total"]
        assert len(totals_rows) == _leaves(t)  # every figure of the JSON is a row of the CSV ...
        for row in totals_rows:  # ... with the same value
            assert row["value"] == _as_cell(_json_value(t, row["figure"], row["group"], row["item"])), row
        for period in days:  # and each day's figures too
            row = next(r for r in rows if r["period"] == period["period"] and r["figure"] == "conversations")
            assert row["value"] == str(period["conversations"]) and row["from"] == row["to"] == period["period"]

        for path in ("/console/analytics.json", "/console/analytics.csv"):
            async with agent_only.get(gateway.url + path) as resp:
                assert resp.status == 403
        async with aiohttp.ClientSession() as nobody, nobody.get(gateway.url + "/console/analytics.json") as resp:
            assert resp.status == 401
    finally:
        await manager.close()
        await agent_only.close()
        await alice.close()
