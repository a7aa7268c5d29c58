"""`./aftersales whatif`: cases decided through the flows' own forms (no Rasa), replayed under
an edited policies.yml; exactly the decisions the edit changes are reported, and why."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cases import CaseStore
from flows.orders import SqliteOrderBackend
from flows.policies import DEFAULT_PATH, load_policies
from flows.recorded import INPUTS
from flows.replies import Context
from flows.service import AfterSales
from flows.whatif import whatif

TODAY = dt.date(2026, 3, 10)


@pytest.fixture
def app(tmp_path: Path) -> AfterSales:
    store = SqliteOrderBackend(tmp_path / "flows.sqlite3")
    store.seed(TODAY)
    tz = load_policies().tzinfo()
    cases = CaseStore(tmp_path / "flows.sqlite3")
    cases.seed_demo_sync(dt.datetime.combine(TODAY, dt.time(9, 0), tz))  # demo cases are never replayed
    return AfterSales(orders=store, cases=cases, clock=lambda: dt.datetime.combine(TODAY, dt.time(10, 0), tz))


async def _submit(app: AfterSales, form: str, values: dict[str, Any], conversation: str) -> str:
    replies, updates = await app.forms[form].submit(values, Context("en", conversation_id=f"webchat:{conversation}"))
    assert updates["last_case_id"], [r.text for r in replies]
    return str(updates["last_case_id"])


async def _record(app: AfterSales) -> dict[str, str]:
    """One case per branch worth replaying, each decided by the form's own submit."""
    r = "return_form"
    made = {
        "shoes_refund": await _submit(app, r, {"order_number": "AS10001", "item_sku": "SH-OXF-BLK-42",
                                               "return_reason": "changed_mind", "item_opened": "unopened",
                                               "return_method": "pickup"}, "a"),
        "shoes_quality": await _submit(app, r, {"order_number": "AS10002", "return_reason": "defective",
                                                "item_sku": "SH-CHS-BRN-40", "return_method": "dropoff"}, "b"),
        "shoes_late": await _submit(app, r, {"order_number": "AS10002", "item_sku": "SH-CHS-BRN-40",
                                             "return_reason": "changed_mind"}, "c"),
        "shoes_too_old": await _submit(app, r, {"order_number": "AS10003", "item_sku": "SH-LOF-BLK-41"}, "d"),
        "blind_box_fee": await _submit(app, r, {"order_number": "AS10004", "item_sku": "BB-STAR-RND",
                                                "return_reason": "changed_mind", "item_opened": "unopened",
                                                "return_method": "pickup"}, "e"),
        "leak": await _submit(app, r, {"order_number": "AS10006", "item_sku": "SK-CRM-50",
                                       "return_reason": "damaged_in_transit"}, "f"),
        "allergy": await _submit(app, r, {"order_number": "AS10005", "item_sku": "SK-SER-30",
                                          "return_reason": "allergic_reaction", "photo_url": "https://x/p.jpg"}, "g"),
        "general_quality": await _submit(app, r, {"order_number": "AS10008", "item_sku": "GN-TOTE-NAT",
                                                  "return_reason": "defective", "return_method": "pickup"}, "h"),
        "exchange": await _submit(app, "exchange_form", {"order_number": "AS10001", "item_sku": "SH-OXF-BLK-42",
                                                         "new_variant": "SH-OXF-BLK-44"}, "i"),
        "complaint": await _submit(app, "complaint_form", {"complaint_category": "delivery", "order_number": "none",
                                                           "complaint_description": "The parcel came a week late",
                                                           "complaint_photo": "none", "complaint_severity": "medium"},
                                   "j"),
    }
    # A case recorded before cases kept the facts of their decision (no `inputs`).
    old = await app.cases.create("return", ["submitted", "pickup_scheduled"], order_number="AS10001",
                                 details={"category": "shoes", "reason": "changed_mind", "decision": "no_reason_window"})
    made["legacy"] = old.id
    return made


def _edited(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    shoes = data["categories"]["shoes"]
    shoes.update(no_reason_days=3, exchange_days=3)  # AS10001 (day 5): its refund and its exchange are refused
    data["categories"]["blind_box"]["no_reason_return_fee"] = 15  # AS10004's refund is 5 less
    data["categories"]["general"]["quality_days"] = 10  # AS10008 (day 12): its quality refund is refused
    data["complaints"]["categories"]["delivery"]["queue"] = "logistics_v2"
    data["complaints"]["first_response_minutes"] = 30  # unchanged: not a cause
    path = tmp_path / "policies.yml.new"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def test_whatif_reports_exactly_the_decisions_an_edit_changes(app: AfterSales, tmp_path: Path) -> None:
    made = await _record(app)
    cases = app.cases.made_since_sync(0)
    assert {c.id for c in cases} == set(made.values())  # the demo cases are not among them
    recorded = app.cases.get_sync(made["shoes_refund"])
    assert recorded is not None and recorded.details["rules_version"] == app.rules_version
    assert recorded.details[INPUTS]["decided_on"] == "2026-03-10" and recorded.details["outcome"] == "refund"

    old, new = load_policies(), load_policies(_edited(tmp_path))
    assert whatif(cases, old, old).changes == []  # the same rules change nothing
    report = whatif(cases, old, new)
    by_case = {c.case_id: c for c in report.changes}
    changed = {name for name, cid in made.items() if cid in by_case}
    assert changed == {"shoes_refund", "blind_box_fee", "general_quality", "exchange", "complaint"}
    assert report.replayed == {"return": 8, "exchange": 1, "complaint": 1}
    assert dict(report.skipped) == {"recorded before cases kept the facts of their decision": 1}

    refund = by_case[made["shoes_refund"]]
    assert (refund.before.outcome, refund.after.outcome, refund.after.why) == ("refund", "refused", "out_of_window")
    assert refund.cause == "no-reason window 30 -> 3 days" and refund.days == 5
    fee = by_case[made["blind_box_fee"]]
    assert (str(fee.before.amount), str(fee.after.amount), fee.cause) == ("59.00", "54.00", "return fee ¥10.00 -> ¥15.00")
    assert by_case[made["general_quality"]].cause == "quality window 15 -> 10 days"
    assert by_case[made["exchange"]].cause == "exchange window 30 -> 3 days"
    assert by_case[made["complaint"]].cause == "complaints.categories.delivery.queue logistics -> logistics_v2"

    lines = report.lines()
    assert lines[0] == "10 decided case(s) replayed (8 returns, 1 exchange, 1 complaint): 5 would be decided differently."
    assert (f"returns · shoes: 1 refund would become a refusal (out of window) (no-reason window 30 -> 3 days): "
            f"AS10001 ({made['shoes_refund']}, changed_mind, day 5)") in lines
    assert (f"returns · blind_box: 1 refund would change (return fee ¥10.00 -> ¥15.00): "
            f"AS10004 ({made['blind_box_fee']}, changed_mind, day 3) ¥59.00 -> ¥54.00") in lines
    assert (f"exchanges · shoes: 1 exchange would become a refusal (out of window) (exchange window 30 -> 3 days): "
            f"AS10001 ({made['exchange']}, day 5)") in lines
    assert "not replayed: 1 case(s) recorded before cases kept the facts of their decision" in lines
    assert len(lines) == 1 + 5 + 1  # the header, one line per change (none alike here), the legacy case


async def test_whatif_command_reads_the_flows_database(app: AfterSales, tmp_path: Path, monkeypatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    made = await _record(app)
    monkeypatch.setenv("FLOWS_DB_PATH", str(app.cases.path))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert os.environ.get("DATA_KEYS")  # the run's key (tests/conftest.py), which sealed these cases
    assert main(["whatif", str(_edited(tmp_path)), "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert "5 would be decided differently" in out and made["general_quality"] in out
    assert made["shoes_quality"] not in out and made["leak"] not in out  # unchanged decisions are not named
    bad = tmp_path / "broken.yml"
    bad.write_text(DEFAULT_PATH.read_text(encoding="utf-8").replace("quality_days: 90", "quality_dayz: 90"))
    assert main(["whatif", str(bad)]) == 2
    assert "category 'shoes': unknown field 'quality_dayz'" in capsys.readouterr().err
