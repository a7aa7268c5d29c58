"""Live rules against the real stack: a Rasa server and an action server of this module's own,
reading the rules from a copy (FLOWS_RULES_DIR) and keeping cases in a database of their
own (FLOWS_DB_PATH), so that editing the rules disturbs no other test. The repository's
flows/*.yml are never written.

An edit of the copy's policies.yml changes the next decision without a restart; a return
that started before the edit is decided under the rules it started with; a broken edit
(invalid YAML, a rule with a bad field) changes nothing and the action server's log says
why. The knowledge base and the texts follow their edits the same way."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from flows.cases import CaseStore
from flows.rules import PACKAGE_DIR, RULE_FILES, load_rules
from gateway.rasa_runtime import RasaProcesses
from tests.conftest import RunningGateway, free_port, make_settings, running, start_gateway
from tests.flows.conftest import buttons, text

pytestmark = pytest.mark.e2e


@dataclass
class OwnRules(RasaProcesses):
    """Rasa and its action server with a few settings of their own."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env_for(self, name: str) -> dict[str, str]:
        return {**super().env_for(name), **self.extra_env}


@pytest.fixture(scope="module")
def rules_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rules")
    for name in RULE_FILES:
        shutil.copy(PACKAGE_DIR / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def live_stack(rasa_install: tuple[Path, Path], rules_copy: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRules]:
    venv, model = rasa_install
    database = tmp_path_factory.mktemp("live-flows") / "flows.sqlite3"
    procs = OwnRules(venv=venv, model=model, rasa_port=free_port(), actions_port=free_port(),
                     log_dir=tmp_path_factory.mktemp("live-rasa-logs"),
                     extra_env={"FLOWS_RULES_DIR": str(rules_copy), "FLOWS_DB_PATH": str(database)})
    with running(procs):
        yield procs


@pytest.fixture
async def gateway(live_stack: OwnRules, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """This module's gateway, in front of its own Rasa (tests/flows/conftest.py's shoppers use it)."""
    gw, runner = await start_gateway(make_settings(tmp_path, live_stack.rasa_url))
    try:
        yield gw
    finally:
        await runner.cleanup()


def actions_log(stack: OwnRules) -> Path:
    return stack.log_dir / f"actions-{stack.rasa_port}.log"


async def logged(stack: OwnRules, *parts: str, timeout: float = 10.0) -> str:
    """The action server's log once it holds all `parts` (its lines are written as they happen)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        log = actions_log(stack).read_text(errors="replace")
        if all(p in log for p in parts):
            return log
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not in the action server's log: {[p for p in parts if p not in log]}\n{log[-3000:]}")
        await asyncio.sleep(0.1)


def cases_of(stack: OwnRules, conversation_id: str | None) -> list:
    return CaseStore(Path(stack.extra_env["FLOWS_DB_PATH"])).for_conversation_sync(f"webchat:{conversation_id}")


async def changed_mind_return(shopper_factory, order: str = "AS10001"):
    s = await shopper_factory("en")
    await s.say("I want to return my order")
    await s.say(order)  # the shopper proves it is theirs when asked (tests/flows/conftest.py)
    return s, await s.say("I just changed my mind")


async def test_rules_edits_apply_from_the_next_turn_and_broken_ones_change_nothing(
        shopper_factory, live_stack: OwnRules, rules_copy: Path) -> None:
    policies = rules_copy / "policies.yml"
    shipped = policies.read_text(encoding="utf-8")
    assert shipped == (PACKAGE_DIR / "policies.yml").read_text(encoding="utf-8")
    v1 = load_rules(rules_copy).version

    # A return starts under the shipped rules (AS10001: leather shoes delivered 5 days ago, 30-day window).
    before = await shopper_factory("en")
    await before.say("I want to return my order")
    r = await before.say("AS10001")
    assert '"changed_mind"' in "".join(buttons(r))  # asked for the reason

    # The designer shortens the shoes' no-reason window to 3 days, the stack running.
    assert "    no_reason_days: 30 " in shipped
    policies.write_text(shipped.replace("    no_reason_days: 30 ", "    no_reason_days: 3 ", 1), encoding="utf-8")
    v2 = load_rules(rules_copy).version
    assert v2 != v1

    # A return that starts now is decided under the edit: refused, the window is over.
    after, r = await changed_mind_return(shopper_factory)
    assert "can't accept a return" in text(r) and "the 3-day window for no-reason returns" in text(r)
    await logged(live_stack, f"rules edit accepted: version {v2} serves from now on (was {v1})")
    [refused] = cases_of(live_stack, after.chat.conversation_id)
    assert refused.status == "refused" and refused.details["rules_version"] == v2

    # The return in progress keeps the rules it started with: refunded within the 30 days.
    r = await before.say("I just changed my mind")
    r = await before.say("yes, still unworn")
    assert "¥599.00" in text(r) and "30" in text(r)
    r = await before.press(r, "pickup")
    assert "Return accepted" in text(r)
    [refund] = cases_of(live_stack, before.chat.conversation_id)
    assert refund.status == "pickup_scheduled" and refund.details["rules_version"] == v1
    assert refund.details["outcome"] == "refund" and refund.details["inputs"]["reason"] == "changed_mind"

    # A broken edit: invalid YAML. Refused, the error in the log; the 3-day rules keep serving.
    policies.write_text(shipped.replace("categories:", "categories: [oops", 1), encoding="utf-8")
    s, r = await changed_mind_return(shopper_factory)
    assert "can't accept a return" in text(r)
    await logged(live_stack, f"rules edit refused, version {v2} keeps serving: {policies}: cannot read policies")

    # Another: the 30 days back, but a rule with a bad field. Refused and named; still 3 days.
    policies.write_text(shipped.replace("    quality_days: 90", "    quality_dayz: 90", 1), encoding="utf-8")
    s, r = await changed_mind_return(shopper_factory)
    assert "can't accept a return" in text(r)
    await logged(live_stack, f"rules edit refused, version {v2} keeps serving: {policies}: category 'shoes': "
                             "unknown field 'quality_dayz'")
    assert [c.details["rules_version"] for c in cases_of(live_stack, s.chat.conversation_id)] == [v2]

    # The knowledge base and the texts are served live too (buttons' payloads: no NLU in the way).
    policies.write_text(shipped, encoding="utf-8")
    kb = rules_copy / "knowledge_base.yml"
    kb.write_text(kb.read_text(encoding="utf-8").replace("Caring for leather shoes:", "Caring for leather shoes (v3):", 1),
                  encoding="utf-8")
    texts = rules_copy / "texts.yml"
    texts.write_text(texts.read_text(encoding="utf-8").replace("You're welcome!", "You're very welcome!", 1),
                     encoding="utf-8")
    s = await shopper_factory("en")
    r = await s.say("Shoe care", payload="/ask_shoe_care")
    assert "Caring for leather shoes (v3):" in text(r)
    r = await s.say("thanks", payload="/thanks")
    assert "You're very welcome!" in text(r)
    s, r = await changed_mind_return(shopper_factory)  # and the shipped 30 days are back: "still unworn?"
    assert "can't accept a return" not in text(r) and any("unopened" in b for b in buttons(r))
