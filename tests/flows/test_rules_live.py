"""Live rules without Rasa (flows/rules.py, flows/live.py): an edit of a copy of the rules is
validated and served from the next check; a broken one is refused, logged once, and the
rules serving keep serving; a version a conversation started with stays available, also
to a restarted server (the archive in the flows database)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from flows.cases import CaseStore
from flows.decisions import REFUND, REFUSED, decide_return
from flows.live import LiveFlows
from flows.orders import SqliteOrderBackend
from flows.rules import PACKAGE_DIR, RULE_FILES, LiveRules, RulesArchive, load_rules, rules_dir
from flows.service import AfterSales

TODAY = dt.date(2026, 3, 10)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    for name in RULE_FILES:
        shutil.copy(PACKAGE_DIR / name, directory / name)
    return directory


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


async def _as10001(tmp_path: Path):
    store = SqliteOrderBackend(tmp_path / "orders.sqlite3")
    store.seed(TODAY)
    order = await store.get_order("AS10001")
    assert order is not None
    return store, order, order.items[0]


def test_the_rules_directory_is_configurable(monkeypatch, rules: Path) -> None:
    assert rules_dir() == PACKAGE_DIR
    monkeypatch.setenv("FLOWS_RULES_DIR", str(rules))
    assert rules_dir() == rules
    monkeypatch.setenv("FLOWS_RULES_DIR", "flows")  # relative: from the repository's root, whatever the cwd
    assert rules_dir() == PACKAGE_DIR
    assert load_rules(rules).version == load_rules().version  # same contents, same version


async def test_an_edit_serves_from_the_next_check_and_a_broken_one_changes_nothing(
        tmp_path: Path, rules: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flows.rules")
    _, order, item = await _as10001(tmp_path)
    live = LiveRules(rules)
    first = live.current
    assert live.check() is first and not live.changed()

    def refund_or_refusal() -> str:
        return decide_return(live.check().policies, order, item, "changed_mind", today=TODAY, opened="unopened",
                             return_method="pickup").outcome

    assert refund_or_refusal() == REFUND  # delivered 5 days ago, 30-day no-reason window
    _edit_yaml(rules / "policies.yml", lambda d: d["categories"]["shoes"].update(no_reason_days=3))
    assert refund_or_refusal() == REFUSED
    edited = live.current
    assert edited.version != first.version and "rules edit accepted" in caplog.text

    caplog.clear()
    good = (rules / "policies.yml").read_text(encoding="utf-8")
    (rules / "policies.yml").write_text(good.replace("categories:", "categories: [oops", 1), encoding="utf-8")
    assert refund_or_refusal() == REFUSED and live.current is edited
    assert "rules edit refused" in caplog.text and "policies.yml" in caplog.text and "cannot read policies" in caplog.text
    caplog.clear()
    live.check()
    assert caplog.text == ""  # the same broken content is reported once

    # A rule with a bad field, which would have brought the 30 days back: refused, named.
    (rules / "policies.yml").write_text(good.replace("no_reason_days: 3", "no_reason_days: 30\n    quality_dayz: 90", 1),
                                        encoding="utf-8")
    assert refund_or_refusal() == REFUSED and live.current is edited
    assert f"{rules / 'policies.yml'}: category 'shoes': unknown field 'quality_dayz'" in caplog.text
    assert live.refusals == 2

    # The edit undone: nothing to load. Texts and the knowledge base are rules too, validated the same way.
    (rules / "policies.yml").write_text(good, encoding="utf-8")
    assert live.check() is edited
    caplog.clear()
    _edit_yaml(rules / "texts.yml", lambda d: d["smalltalk.thanks"].update(en="Thanks {name}!"))
    live.check()
    assert live.current is edited and "texts.yml: 'smalltalk.thanks': the languages use different placeholders" \
        in caplog.text
    shutil.copy(PACKAGE_DIR / "texts.yml", rules / "texts.yml")
    _edit_yaml(rules / "knowledge_base.yml", lambda d: d["entries"][next(
        k for k, e in d["entries"].items() if e["intent"] == "ask_shoe_care")]["answer"].update(en="Polish weekly."))
    assert live.check().kb.answer("ask_shoe_care", "en")[0] == "Polish weekly."  # type: ignore[index]
    assert live.current.policies.category("shoes").no_reason_days == 3


async def test_a_flow_keeps_its_version_also_after_a_restart(tmp_path: Path, rules: Path) -> None:
    store, order, item = await _as10001(tmp_path)
    cases = CaseStore(tmp_path / "flows.sqlite3")
    live = LiveRules(rules, archive=RulesArchive(cases.path))
    flows = LiveFlows(AfterSales(orders=store, cases=cases, rules=live.current), live)
    started = flows.current().rules_version  # a return starts now ...
    _edit_yaml(rules / "policies.yml", lambda d: d["categories"]["shoes"].update(no_reason_days=3))
    now = await flows.refreshed()  # ... the designer edits ...
    assert now.rules_version != started and now.policies.category("shoes").no_reason_days == 3
    kept = flows.for_version(started)  # ... and the return carries on under its version
    assert kept.rules_version == started and kept.policies.category("shoes").no_reason_days == 30
    assert kept.cases is now.cases and kept.orders is now.orders
    assert flows.for_version(None) is now and flows.for_version("unknown") is now

    restarted = LiveRules(rules, archive=RulesArchive(cases.path))  # the action server restarted
    assert restarted.current.version == now.rules_version
    assert restarted.get(started).policies.category("shoes").no_reason_days == 30
