"""Proof that an order is the shopper's, before the bot shows or acts on it.

A shopper the shop has signed in (the customer token, `Context.customer_id`) owns the
orders of that customer. Anyone else, on the web chat, Telegram, Slack or REST, proves an
order with something only the buyer has: the last four digits of the phone number or the
e-mail address on the order (`Order.phone`, `Order.email`, from the order store). A proved
order stays proved for the rest of the conversation (`Context.verified_orders`).

Wrong guesses are counted in the flows database, per order and conversation and per order
from anywhere: after `MAX_FAILURES_PER_CONVERSATION` in one conversation the bot stops
checking there (a person can help), and after `MAX_FAILURES_PER_ORDER` within
`ORDER_LOCK_SECONDS` from anywhere the order takes no proof at all until the hour is over.
Four digits are 10,000 guesses; at ten an hour that is months, not minutes.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import re
import time
from dataclasses import dataclass
from pathlib import Path

from flows.db import connect, db_path, enable_wal
from flows.orders import Order

MAX_FAILURES_PER_CONVERSATION = 3
CONVERSATION_WINDOW_SECONDS = 24 * 3600
MAX_FAILURES_PER_ORDER = 10
ORDER_LOCK_SECONDS = 3600

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,190}\.[A-Za-z]{2,24}")
# A phone number as people type it (+86 138 0013 5821, 138-0013-5821) or only its end:
# "ends in 5821", "尾号5821", "5821". Not part of an order number or a case id.
_PHONE = re.compile(r"(?<![A-Za-z0-9\-])\+?\d[\d \-]{9,18}\d(?!\d)")
_LAST_FOUR = re.compile(r"(?<![A-Za-z0-9\-])(\d{4})(?![\d\-])")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proof_failures (
    order_number TEXT NOT NULL, conversation_id TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS proof_failures_order ON proof_failures (order_number, at);
"""


@dataclass(frozen=True)
class Proof:
    """What a message offers as proof: an e-mail address or the phone's last four digits."""

    email: str | None = None
    last_four: str | None = None


# Words that say a bare four-digit number is the phone's end ("ends in 5821", "尾号5821").
_PHONE_WORDS = re.compile(r"phone|mobile|cell|number|end(s|ing)?\b|last\s*(4|four)|手机|电话|尾号|后四位|后4位",
                          re.IGNORECASE)


def find_proof(text: str, asked: bool = True) -> Proof | None:
    """The proof a message gives, if any. A bare four-digit number counts only as the answer
    to the question, or beside words about a phone: "it cost 1299" is not a guess."""
    text = text or ""
    email = _EMAIL.search(text)
    if email:
        return Proof(email=email.group(0).lower())
    phone = _PHONE.search(text)
    if phone:
        digits = re.sub(r"\D", "", phone.group(0))
        if len(digits) >= 7:
            return Proof(last_four=digits[-4:])
    four = _LAST_FOUR.findall(text)
    if len(four) == 1 and (asked or _PHONE_WORDS.search(text)):
        return Proof(last_four=four[0])
    return None


def can_prove(order: Order) -> bool:
    """Whether the order store knows anything the buyer could prove it with."""
    return bool(order.email or order.phone)


def matches(order: Order, proof: Proof) -> bool:
    if proof.email and order.email:
        return hmac.compare_digest(proof.email.encode(), order.email.strip().lower().encode())
    if proof.last_four and order.phone:
        digits = re.sub(r"\D", "", order.phone)
        return len(digits) >= 4 and hmac.compare_digest(proof.last_four.encode(), digits[-4:].encode())
    return False


class Verdict(enum.Enum):
    PROVED = "proved"
    WRONG = "wrong"
    EXHAUSTED = "exhausted"  # too many wrong answers in this conversation
    LOCKED = "locked"  # too many wrong answers for this order, from anywhere, in the last hour


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    attempts_left: int = 0


class ProofLedger:
    """Wrong answers, kept in the flows database (shared by every action server)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or db_path()
        enable_wal(self.path)
        with connect(self.path) as conn:
            conn.executescript(_SCHEMA)

    def _failures(self, order_number: str, conversation_id: str, now: float) -> tuple[int, int]:
        with connect(self.path) as conn:
            mine = conn.execute("SELECT COUNT(*) FROM proof_failures WHERE order_number = ? AND conversation_id = ? "
                                "AND at >= ?", (order_number, conversation_id,
                                                now - CONVERSATION_WINDOW_SECONDS)).fetchone()[0]
            anyone = conn.execute("SELECT COUNT(*) FROM proof_failures WHERE order_number = ? AND at >= ?",
                                  (order_number, now - ORDER_LOCK_SECONDS)).fetchone()[0]
            return int(mine), int(anyone)

    def check_sync(self, order: Order, proof: Proof, conversation_id: str, now: float | None = None) -> Check:
        now = time.time() if now is None else now
        mine, anyone = self._failures(order.number, conversation_id, now)
        if mine >= MAX_FAILURES_PER_CONVERSATION:
            return Check(Verdict.EXHAUSTED)
        if anyone >= MAX_FAILURES_PER_ORDER:
            return Check(Verdict.LOCKED)
        if matches(order, proof):
            return Check(Verdict.PROVED)
        with connect(self.path) as conn:
            conn.execute("DELETE FROM proof_failures WHERE at < ?", (now - CONVERSATION_WINDOW_SECONDS,))
            conn.execute("INSERT INTO proof_failures VALUES (?, ?, ?)", (order.number, conversation_id, now))
        left = MAX_FAILURES_PER_CONVERSATION - mine - 1
        return Check(Verdict.WRONG if left > 0 else Verdict.EXHAUSTED, max(0, left))

    def blocked_sync(self, order_number: str, conversation_id: str, now: float | None = None) -> Verdict | None:
        """EXHAUSTED or LOCKED when no proof for this order is taken here now, else None."""
        mine, anyone = self._failures(order_number, conversation_id, time.time() if now is None else now)
        if mine >= MAX_FAILURES_PER_CONVERSATION:
            return Verdict.EXHAUSTED
        return Verdict.LOCKED if anyone >= MAX_FAILURES_PER_ORDER else None

    def expire_sync(self, now: float | None = None) -> int:
        """Forget wrong answers older than every window (the gateway runs this hourly)."""
        cutoff = (time.time() if now is None else now) - CONVERSATION_WINDOW_SECONDS
        with connect(self.path) as conn:
            return int(conn.execute("DELETE FROM proof_failures WHERE at < ?", (cutoff,)).rowcount)

    def forget_sync(self, conversation_id: str) -> int:
        """A shopper's erasure request: the wrong answers given in their conversation."""
        with connect(self.path) as conn:
            return int(conn.execute("DELETE FROM proof_failures WHERE conversation_id = ?",
                                    (conversation_id,)).rowcount)

    async def check(self, order: Order, proof: Proof, conversation_id: str) -> Check:
        return await asyncio.to_thread(self.check_sync, order, proof, conversation_id)

    async def blocked(self, order_number: str, conversation_id: str) -> Verdict | None:
        return await asyncio.to_thread(self.blocked_sync, order_number, conversation_id)
