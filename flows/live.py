"""The assistant as a running action server holds it: the live rules (flows/rules.py) and one
`AfterSales` per version of them still in use.

A conversation keeps the rules it started a flow with: when a form starts, the version
serving then is recorded in the conversation's `rules_version` slot (rasa_project/domain.yml);
every step, question and decision of that flow uses that version, and the case it makes
records it. Outside a flow, and for the next flow, the rules serving now apply. A designer's
edit is thus seen from the next turn on by every conversation not in the middle of a flow,
and by those in a flow once it ends.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from flows.cases import CaseStore
from flows.orders import SqliteOrderBackend
from flows.rules import KEEP_VERSIONS, LiveRules, RulesArchive
from flows.service import AfterSales

RULES_VERSION_SLOT = "rules_version"


class LiveFlows:
    def __init__(self, app: AfterSales, rules: LiveRules) -> None:
        self.rules = rules
        self._apps: OrderedDict[str, AfterSales] = OrderedDict({app.rules_version: app})
        self._base = app

    @classmethod
    def start(cls, rules_dir: Path | None = None, seed_demo: bool = True) -> "LiveFlows":
        """The action server's: rules from `rules_dir` (default FLOWS_RULES_DIR, else flows/),
        validated now (broken rules fail here, loudly), versions archived in the flows
        database; the demo orders' cases (re)seeded when the demo store is in use."""
        cases = CaseStore()
        rules = LiveRules(rules_dir, archive=RulesArchive(cases.path))
        app = AfterSales(cases=cases, rules=rules.current)
        if seed_demo and isinstance(app.orders, SqliteOrderBackend):
            app.cases.seed_demo_sync(app.now())  # the demo cases belong to the demo orders
        return cls(app, rules)

    @property
    def version(self) -> str:
        return self.rules.current.version

    def current(self) -> AfterSales:
        """The assistant under the rules serving now (as last checked)."""
        return self.for_version(None)

    async def refreshed(self) -> AfterSales:
        """The assistant under the rules serving now, after a look at the files (an edit is
        validated in a worker thread; a refused one leaves the rules as they were)."""
        await self.rules.refreshed()
        return self.current()

    def for_version(self, version: str | None) -> AfterSales:
        """The assistant under `version` (a conversation's), or the current rules'."""
        rules = self.rules.get(version)
        app = self._apps.get(rules.version)
        if app is None:
            app = self._apps[rules.version] = self._base.with_rules(rules)
            while len(self._apps) > KEEP_VERSIONS + 1:
                self._apps.popitem(last=False)
        self._apps.move_to_end(rules.version)
        return app
