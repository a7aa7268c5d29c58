"""After-sales cases (returns, exchanges, replacements, compensation, complaint tickets),
stored durably in SQLite with their full status history.

Case ids are what shoppers quote: a kind prefix and six digits, e.g. `RT-482913`.
Every status change is a row in `case_history`; `Case.history` lists them oldest first.

What the shopper told us is sealed at rest (`bot/sealing.py`): the `details` JSON and each
history note, bound to their case (and the note to its place in the history). The columns
used to find cases (id, kind, status, order number, customer id, conversation id,
language, times) stay in clear. The keys are `DATA_KEYS` (`./aftersales run` passes the
gateway's to the action server), else the `data-key` file beside the database. Cases are
deleted `CASE_RETENTION_DAYS` after their last change (`purge`); demo cases never are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from bot.sealing import KEY_FILE_NAME, DataKeys, Resealed, SealingError, resolve_data_keys
from flows.db import connect, db_path, enable_wal

log = logging.getLogger("flows.cases")

PREFIXES = {"return": "RT", "exchange": "EX", "complaint": "TK", "replacement": "RP", "compensation": "CP"}
KINDS = tuple(PREFIXES)
CASE_ID = re.compile(r"(?<![A-Za-z0-9])(RT|EX|TK|RP|CP)[\s\-]?(\d{6})(?!\d)", re.IGNORECASE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, order_number TEXT, customer_id TEXT,
    conversation_id TEXT, language TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    details TEXT NOT NULL, demo INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS case_history (
    case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE, seq INTEGER NOT NULL, status TEXT NOT NULL,
    at REAL NOT NULL, note TEXT NOT NULL DEFAULT '', PRIMARY KEY (case_id, seq));
CREATE INDEX IF NOT EXISTS cases_order ON cases (order_number, created_at);
CREATE INDEX IF NOT EXISTS cases_customer ON cases (customer_id, created_at);
CREATE INDEX IF NOT EXISTS cases_conversation ON cases (conversation_id, created_at);
CREATE TABLE IF NOT EXISTS case_turns (
    conversation_id TEXT NOT NULL, turn_id TEXT NOT NULL, kind TEXT NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE, PRIMARY KEY (conversation_id, turn_id, kind));
"""


def normalize_case_id(text: str) -> str | None:
    match = CASE_ID.search(text or "")
    return f"{match.group(1).upper()}-{match.group(2)}" if match else None


@dataclass(frozen=True)
class StatusChange:
    status: str
    at: float
    note: str = ""


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    status: str
    order_number: str | None
    customer_id: str | None
    conversation_id: str | None
    language: str | None
    created_at: float
    updated_at: float
    details: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[StatusChange, ...] = ()

    def summary(self, lang: str = "en") -> str:
        """One line for agents (the console's case list)."""
        item = self.details.get("item")
        what = item.get(lang) or item.get("en") if isinstance(item, Mapping) else self.details.get("category", "")
        parts = [self.kind, what or "", f"order {self.order_number}" if self.order_number else ""]
        amount = self.details.get("refund_amount")
        if amount:
            parts.append(f"refund {amount}")
        return " · ".join(p for p in parts if p)

    def to_console(self) -> dict[str, Any]:
        """What the agent console shows beside the transcript, so the agent does not ask
        again what the shopper told the bot (docs/console-protocol.md, `Case`)."""
        d = self.details
        item = d.get("item")
        photos = [p for p in [d.get("photo"), *(d.get("evidence") or [])] if isinstance(p, str) and p]
        facts = {"order": self.order_number, "item": dict(item) if isinstance(item, Mapping) else None,
                 "category": d.get("category"), "reason": d.get("reason"), "outcome": d.get("outcome"),
                 "decision": d.get("decision"), "severity": d.get("severity"), "description": d.get("description"),
                 "photos": list(dict.fromkeys(photos))}
        return {"id": self.id, "kind": self.kind, "status": self.status, "summary": self.summary(),
                "order_number": self.order_number, "created_at": self.created_at,
                "facts": {k: v for k, v in facts.items() if v not in (None, "", [])}}


def flows_data_keys(database: Path) -> DataKeys:
    """The keys the flows seal with: `DATA_KEYS`, else the `data-key` file beside `database`
    (generated there on first use; by default that is the gateway's own `var/data-key`)."""
    return resolve_data_keys(os.environ.get("DATA_KEYS", ""), database.parent / KEY_FILE_NAME)


def _details_context(case_id: str) -> str:
    return f"case:{case_id}:details"


def _note_context(case_id: str, seq: int) -> str:
    return f"case:{case_id}:note:{seq}"


class CaseStore:
    def __init__(self, path: Path | None = None, keys: DataKeys | None = None) -> None:
        self.path = path or db_path()
        self.keys = keys or flows_data_keys(self.path)
        enable_wal(self.path)
        with connect(self.path) as conn:
            conn.executescript(_SCHEMA)

    # -- sync (worker threads) -----------------------------------------------------------

    def _seal_details(self, case_id: str, details: Mapping[str, Any]) -> str:
        return self.keys.seal_text(json.dumps(dict(details), ensure_ascii=False, default=str),
                                   _details_context(case_id))

    def _open_details(self, row: sqlite3.Row) -> dict[str, Any]:
        details = json.loads(self.keys.open_text(row["details"], _details_context(row["id"])))
        return details if isinstance(details, dict) else {}

    def _add_history(self, conn: sqlite3.Connection, case_id: str, seq: int, status: str, at: float,
                     note: str) -> None:
        conn.execute("INSERT INTO case_history VALUES (?, ?, ?, ?, ?)",
                     (case_id, seq, status, at, self.keys.seal_text(note, _note_context(case_id, seq))))

    def _load(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Case:
        history = tuple(
            StatusChange(r["status"], r["at"], self.keys.open_text(r["note"], _note_context(row["id"], r["seq"])))
            for r in conn.execute("SELECT seq, status, at, note FROM case_history WHERE case_id = ? ORDER BY seq",
                                  (row["id"],)))
        return Case(id=row["id"], kind=row["kind"], status=row["status"], order_number=row["order_number"],
                    customer_id=row["customer_id"], conversation_id=row["conversation_id"],
                    language=row["language"], created_at=row["created_at"], updated_at=row["updated_at"],
                    details=self._open_details(row), history=history)

    def create_sync(self, kind: str, statuses: Sequence[str | tuple[str, str]], *, order_number: str | None = None,
                    customer_id: str | None = None, conversation_id: str | None = None,
                    language: str | None = None, details: Mapping[str, Any] | None = None,
                    case_id: str | None = None, at: float | None = None, demo: bool = False,
                    turn_id: str | None = None) -> Case:
        """A new case; or, when the same shopper message (`turn_id` in `conversation_id`)
        already made a case of this kind (the gateway retried a turn Rasa had run), that one."""
        if kind not in PREFIXES:
            raise ValueError(f"unknown case kind {kind!r}")
        if not statuses:
            raise ValueError("a case needs a first status")
        now = time.time() if at is None else at
        changes = [(s, "") if isinstance(s, str) else s for s in statuses]
        turn = (conversation_id, turn_id, kind) if conversation_id and turn_id else None
        with connect(self.path) as conn:
            if turn is not None:
                conn.execute("BEGIN IMMEDIATE")  # one writer at a time: two runs of one turn cannot both create
                made = conn.execute("SELECT case_id FROM case_turns WHERE conversation_id = ? AND turn_id = ? "
                                    "AND kind = ?", turn).fetchone()
                if made is not None:
                    row = conn.execute("SELECT * FROM cases WHERE id = ?", (made["case_id"],)).fetchone()
                    if row is not None:
                        return self._load(conn, row)
            for _ in range(20):
                cid = case_id or f"{PREFIXES[kind]}-{secrets.randbelow(800000) + 100000:06d}"
                try:
                    conn.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (cid, kind, changes[-1][0], order_number, customer_id, conversation_id, language,
                                  now, now, self._seal_details(cid, details or {}), int(demo)))
                    break
                except sqlite3.IntegrityError:
                    if case_id:
                        raise
            else:  # pragma: no cover - 20 collisions in 800k ids
                raise RuntimeError("could not allocate a case id")
            for seq, (status, note) in enumerate(changes):
                self._add_history(conn, cid, seq, status, now, note)
            if turn is not None:
                conn.execute("INSERT OR REPLACE INTO case_turns VALUES (?, ?, ?, ?)", (*turn, cid))
            row = conn.execute("SELECT * FROM cases WHERE id = ?", (cid,)).fetchone()
            return self._load(conn, row)

    def get_sync(self, case_id: str) -> Case | None:
        with connect(self.path) as conn:
            row = conn.execute("SELECT * FROM cases WHERE id = ?", (case_id.upper(),)).fetchone()
            return self._load(conn, row) if row else None

    def _query(self, where: str, args: tuple[Any, ...], limit: int) -> list[Case]:
        with connect(self.path) as conn:
            rows = conn.execute(f"SELECT * FROM cases WHERE {where} ORDER BY created_at DESC, id LIMIT ?",
                                (*args, limit)).fetchall()
            return [self._load(conn, r) for r in rows]

    def made_since_sync(self, since: float) -> list[Case]:
        """The cases made at or after `since` (not the demo's), oldest first, opened."""
        with connect(self.path) as conn:
            rows = conn.execute("SELECT * FROM cases WHERE demo = 0 AND created_at >= ? ORDER BY created_at, id",
                                (since,)).fetchall()
            return [self._load(conn, r) for r in rows]

    def made_between_sync(self, since: float, until: float) -> list[Case]:
        """The cases made in [since, until) (not the demo's), oldest first, opened, without their history."""
        with connect(self.path) as conn:
            rows = conn.execute("SELECT * FROM cases WHERE demo = 0 AND created_at >= ? AND created_at < ? "
                                "ORDER BY created_at, id", (since, until)).fetchall()
        return [Case(id=r["id"], kind=r["kind"], status=r["status"], order_number=r["order_number"],
                     customer_id=r["customer_id"], conversation_id=r["conversation_id"], language=r["language"],
                     created_at=r["created_at"], updated_at=r["updated_at"], details=self._open_details(r))
                for r in rows]

    def set_status_sync(self, case_id: str, status: str, note: str = "", at: float | None = None) -> Case:
        now = time.time() if at is None else at
        with connect(self.path) as conn:
            row = conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                raise KeyError(case_id)
            seq = conn.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM case_history WHERE case_id = ?",
                               (case_id,)).fetchone()[0]
            self._add_history(conn, case_id, seq, status, now, note)
            conn.execute("UPDATE cases SET status = ?, updated_at = ? WHERE id = ?", (status, now, case_id))
            return self._load(conn, conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone())

    def add_evidence_sync(self, case_id: str, urls: Sequence[str]) -> Case:
        """Photos or files the shopper sent after the case was made, kept in `details.evidence`."""
        with connect(self.path) as conn:
            row = conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                raise KeyError(case_id)
            details = self._open_details(row)
            details["evidence"] = [*details.get("evidence", []), *[u for u in urls if u]][-20:]
            conn.execute("UPDATE cases SET details = ?, updated_at = ? WHERE id = ?",
                         (self._seal_details(case_id, details), time.time(), case_id))
            return self._load(conn, conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone())

    def count_complaints_sync(self, since: float, customer_id: str | None, order_number: str | None,
                              conversation_id: str | None) -> int:
        clauses, args = [], []
        for column, value in (("customer_id", customer_id), ("order_number", order_number),
                              ("conversation_id", conversation_id)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if not clauses:
            return 0
        with connect(self.path) as conn:
            return int(conn.execute(
                f"SELECT COUNT(*) FROM cases WHERE kind = 'complaint' AND created_at >= ? AND ({' OR '.join(clauses)})",
                (since, *args)).fetchone()[0])

    def seed_demo_sync(self, now: dt.datetime) -> int:
        """(Re)write the demo cases of `flows.demo_data`, dated relative to `now`."""
        from flows import demo_data

        with connect(self.path) as conn:
            conn.execute("DELETE FROM case_history WHERE case_id IN (SELECT id FROM cases WHERE demo = 1)")
            conn.execute("DELETE FROM cases WHERE demo = 1")
        for c in demo_data.CASES:
            first_at = (now - dt.timedelta(days=c["history"][0][1])).timestamp()
            self.create_sync(c["kind"], [c["history"][0][0]], order_number=c["order_number"],
                             customer_id=c["customer_id"], language=c["language"], details=c["details"],
                             case_id=c["id"], at=first_at, demo=True)
            for status, days_ago, note in c["history"][1:]:
                self.set_status_sync(c["id"], status, note, at=(now - dt.timedelta(days=days_ago)).timestamp())
        return len(demo_data.CASES)

    # -- retention, a shopper's requests, key rotation --------------------------------------

    def purge_sync(self, older_than: float) -> int:
        """Delete the cases (history and turns with them) last changed before `older_than`;
        demo cases stay (they are re-seeded). How many went."""
        with connect(self.path) as conn:
            ids = [r["id"] for r in conn.execute("SELECT id FROM cases WHERE demo = 0 AND updated_at < ?",
                                                 (older_than,))]
        return self.erase_sync(ids)

    def of_shopper_sync(self, customer_id: str | None = None,
                        conversation_ids: Sequence[str] = ()) -> list[Case]:
        """Every case of this customer or made in these conversations, oldest first."""
        clauses, args = [], []
        if customer_id:
            clauses.append("customer_id = ?")
            args.append(customer_id)
        if conversation_ids:
            clauses.append(f"conversation_id IN ({', '.join('?' * len(conversation_ids))})")
            args.extend(conversation_ids)
        if not clauses:
            return []
        with connect(self.path) as conn:
            rows = conn.execute(f"SELECT * FROM cases WHERE {' OR '.join(clauses)} ORDER BY created_at, id",
                                args).fetchall()
            return [self._load(conn, r) for r in rows]

    def move_conversation_sync(self, old_conversation: str, new_conversation: str) -> int:
        """The shopper carried the conversation over to another channel (bot/continuation.py):
        its cases belong to the new one. How many moved."""
        with connect(self.path) as conn:
            return conn.execute("UPDATE cases SET conversation_id = ? WHERE conversation_id = ?",
                                (new_conversation, old_conversation)).rowcount

    def erase_sync(self, case_ids: Sequence[str]) -> int:
        """Delete these cases with their history and turns; how many there were."""
        removed = 0
        with connect(self.path) as conn:
            for case_id in case_ids:
                conn.execute("DELETE FROM case_history WHERE case_id = ?", (case_id,))
                conn.execute("DELETE FROM case_turns WHERE case_id = ?", (case_id,))
                removed += conn.execute("DELETE FROM cases WHERE id = ?", (case_id,)).rowcount
        return removed

    def reseal_sync(self) -> Resealed:
        """Seal every details value and note with the newest key (and what was stored before
        sealing existed). One transaction per case; a case with a value that does not open
        is left as it is and counted."""
        with connect(self.path) as conn:
            ids = [r["id"] for r in conn.execute("SELECT id FROM cases")]
        done = Resealed()
        for case_id in ids:
            try:
                done.rewritten += self._reseal_case(case_id)
            except SealingError as exc:
                done.skip(f"case {case_id}", exc)
        return done

    def _reseal_case(self, case_id: str) -> int:
        rewritten = 0
        with connect(self.path) as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT id, details FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                return 0
            if not self.keys.text_is_current(row["details"]):
                conn.execute("UPDATE cases SET details = ? WHERE id = ?",
                             (self._seal_details(case_id, self._open_details(row)), case_id))
                rewritten += 1
            for r in conn.execute("SELECT seq, note FROM case_history WHERE case_id = ?", (case_id,)).fetchall():
                if self.keys.text_is_current(r["note"]):
                    continue
                context = _note_context(case_id, r["seq"])
                conn.execute("UPDATE case_history SET note = ? WHERE case_id = ? AND seq = ?",
                             (self.keys.seal_text(self.keys.open_text(r["note"], context), context),
                              case_id, r["seq"]))
                rewritten += 1
        return rewritten

    # -- async API (never blocks the event loop) ------------------------------------------

    async def create(self, kind: str, statuses: Sequence[str | tuple[str, str]], **kwargs: Any) -> Case:
        return await asyncio.to_thread(lambda: self.create_sync(kind, statuses, **kwargs))

    async def get(self, case_id: str) -> Case | None:
        return await asyncio.to_thread(self.get_sync, case_id)

    async def for_order(self, order_number: str, limit: int = 10) -> list[Case]:
        return await asyncio.to_thread(self._query, "order_number = ?", (order_number,), limit)

    async def for_customer(self, customer_id: str, limit: int = 5) -> list[Case]:
        return await asyncio.to_thread(self._query, "customer_id = ?", (customer_id,), limit)

    def for_conversation_sync(self, conversation_id: str, limit: int = 10) -> list[Case]:
        return self._query("conversation_id = ?", (conversation_id,), limit)

    async def for_conversation(self, conversation_id: str, limit: int = 10) -> list[Case]:
        return await asyncio.to_thread(self._query, "conversation_id = ?", (conversation_id,), limit)

    async def set_status(self, case_id: str, status: str, note: str = "") -> Case:
        return await asyncio.to_thread(self.set_status_sync, case_id, status, note)

    async def add_evidence(self, case_id: str, urls: Sequence[str]) -> Case:
        return await asyncio.to_thread(self.add_evidence_sync, case_id, urls)

    async def count_complaints(self, since: float, *, customer_id: str | None = None,
                               order_number: str | None = None, conversation_id: str | None = None) -> int:
        return await asyncio.to_thread(self.count_complaints_sync, since, customer_id, order_number, conversation_id)

    async def purge(self, retention_seconds: float, now: float | None = None) -> int:
        removed = await asyncio.to_thread(self.purge_sync, (time.time() if now is None else now) - retention_seconds)
        if removed:
            log.info("cases past their retention deleted", extra={"count": removed})
        return removed


def _fact(case: Case) -> dict[str, Any]:
    """What the shop's analytics keep of a case (`bot.plugins.CaseFact`'s fields)."""
    d = case.details
    channel = (case.conversation_id or "").partition(":")[0] if ":" in (case.conversation_id or "") else "unknown"
    if case.kind == "complaint":
        category, reason = d.get("product_category") or "unknown", d.get("category") or "other"
    else:
        category, reason = d.get("category") or "unknown", d.get("reason") or "unknown"
    outcome = str(d.get("outcome") or case.kind)
    refused = case.status == "refused" or outcome == "refused"
    return {"kind": case.kind, "created_at": case.created_at, "channel": channel,
            "language": case.language if case.language in ("en", "zh") else "en", "category": str(category),
            "reason": str(reason), "outcome": "refused" if refused else outcome,
            "refusal": str(d.get("decision") or "unknown") if refused else None}


def analytics_facts(keys: DataKeys | None = None,
                    path: Path | None = None) -> Callable[[float, float], Awaitable[list[dict[str, Any]]]]:
    """For the shop's analytics (`bot.plugins.CaseFacts`, wrapped by the wiring): the cases made
    in [since, until), not the demo's, as counts-only facts, from `path` (default: FLOWS_DB_PATH).
    Never blocks the event loop."""
    stores: list[CaseStore] = []

    def read(since: float, until: float) -> list[dict[str, Any]]:
        if not stores:
            stores.append(CaseStore(path, keys=keys))
        return [_fact(c) for c in stores[0].made_between_sync(since, until)]

    async def facts(since: float, until: float) -> list[dict[str, Any]]:
        return await asyncio.to_thread(read, since, until)

    return facts


def console_cases(keys: DataKeys | None = None) -> Callable[[str], Awaitable[list[dict[str, Any]]]]:
    """For the agent console (`bot.plugins.CaseReader`): what the flows recorded for a
    conversation key ("webchat:..."), newest first, opened with `keys` (default: the flows'
    own, `flows_data_keys`). The store is made on first use; never blocks the event loop."""
    stores: list[CaseStore] = []

    def read(key: str) -> list[dict[str, Any]]:
        if not stores:
            stores.append(CaseStore(keys=keys))
        return [c.to_console() for c in stores[0].for_conversation_sync(key, 20)]

    async def cases_of(key: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(read, key)

    return cases_of
