"""The shop's analytics: what happened in conversations and handoffs, recorded as counts and
durations (never what anyone said, never an id in clear), and the figures made from them.

Recorded, by day in the shop's time zone (`HANDOFF_TIMEZONE`):

- a conversation, once per day it is active (the shopper sent at least one message that day):
  its channel and language, under a keyed hash of its key (HMAC-SHA256 with the gateway
  secret), so the same conversation on two days of one week is counted once for the week;
- that it was handed to a person that day, and why (the first handoff's reason);
- each handoff (keyed by a hash of its conversation and start): channel, language, reason,
  status, when it started, was first answered, was closed, its first-response due time,
  and the shopper's satisfaction answer (1-5).

The flows' cases (returns, complaints: category, reason, outcome, refusal reason) are read
from the flows' own store when the figures are asked for (`PluginContext.case_facts`).

With `REDIS_URL` everything lives in Redis, shared by every gateway: a conversation is a hash
field written with HSETNX (two gateways seeing it count it once), a handoff's record is
rewritten whole by whichever gateway saw its latest step; keys expire after the retention.
Otherwise a SQLite file in `DATA_DIR` (kept across restarts; old days deleted hourly).

**Containment** (a conversation settled by the bot): a conversation active in the period
that no person was asked to handle in the period (no handoff of any reason, an agent taking
it over included). containment = contained / conversations.
"""

from __future__ import annotations

import abc
import asyncio
import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from bot.messages import InboundMessage, OutboundReply
from bot.metrics import Metrics
from bot.plugins import CaseFact, CaseFacts, Conversations, no_case_facts
from bot.settings_schema import Setting
from handoff.events import HandoffEvent, HandoffEventKind
from handoff.store import Handoff

log = logging.getLogger("gateway.analytics")

SCORES = (1, 2, 3, 4, 5)
RETURN_KINDS = ("return", "replacement", "compensation", "exchange")  # what the return and exchange flows make


def _days_setting(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 3660:
        raise ValueError("must be a whole number of days, 1 to 3660")
    return value



ANALYTICS_RETENTION_DAYS = Setting("ANALYTICS_RETENTION_DAYS", 400, _days_setting,
                                   "how long the analytics' daily records are kept (counts and durations only); "
                                   "also the longest range the dashboard shows")
ANALYTICS_SETTINGS = (ANALYTICS_RETENTION_DAYS,)  # the resolution SLA is HANDOFF_RESOLUTION_HOURS (handoff/config.py)


# -- storage ------------------------------------------------------------------------------------


@dataclass
class DayRecords:
    conversations: dict[str, tuple[str, str]]  # hash -> (channel, language)
    handed_off: dict[str, str]  # hash -> reason of the day's first handoff
    handoffs: list[dict[str, Any]]  # handoff records started that day


class AnalyticsStore(abc.ABC):
    @abc.abstractmethod
    async def conversation(self, day: str, hid: str, channel: str, language: str, expire_at: float) -> bool:
        """Record a conversation active on `day`; True the first time (on any gateway)."""

    @abc.abstractmethod
    async def handed_off(self, day: str, hid: str, channel: str, language: str, reason: str,
                         expire_at: float) -> None:
        """The conversation went to a person on `day` (it counts as active that day too)."""

    @abc.abstractmethod
    async def put_handoff(self, day: str, hid: str, record: dict[str, Any], expire_at: float) -> dict[str, Any] | None:
        """Keep a handoff's latest record; returns the one it replaced."""

    @abc.abstractmethod
    async def read(self, days: Sequence[str]) -> dict[str, DayRecords]: ...

    async def purge(self, before_day: str) -> int:
        """Delete the days before `before_day` (Redis keys expire by themselves)."""
        return 0

    @abc.abstractmethod
    async def unlink(self, hid: str) -> int:
        """A shopper's erasure: the records of conversation hash `hid` (and of its handoffs, named
        `hid:...`) get a random name instead, so the counts stay and nothing leads back to the
        conversation. How many records were renamed."""


def _parse_pair(raw: Any) -> tuple[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    channel, _, language = text.partition("|")
    return channel, language


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisAnalyticsStore(AnalyticsStore):
    def __init__(self, redis: Any, prefix: str = "gateway:analytics:") -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, what: str, day: str) -> str:
        return f"{self.prefix}{what}:{day}"

    async def conversation(self, day: str, hid: str, channel: str, language: str, expire_at: float) -> bool:
        key = self._key("conv", day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, hid, f"{channel}|{language}")
            pipe.expireat(key, int(expire_at))
            added, _ = await pipe.execute()
        return bool(added)

    async def handed_off(self, day: str, hid: str, channel: str, language: str, reason: str,
                         expire_at: float) -> None:
        conv, handed = self._key("conv", day), self._key("handed", day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(conv, hid, f"{channel}|{language}")
            pipe.hsetnx(handed, hid, reason)
            pipe.expireat(conv, int(expire_at))
            pipe.expireat(handed, int(expire_at))
            await pipe.execute()

    async def put_handoff(self, day: str, hid: str, record: dict[str, Any], expire_at: float) -> dict[str, Any] | None:
        key = self._key("handoffs", day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, hid)
            pipe.hset(key, hid, json.dumps(record, sort_keys=True))
            pipe.expireat(key, int(expire_at))
            before, _, _ = await pipe.execute()
        return json.loads(before) if before else None

    async def unlink(self, hid: str) -> int:
        new = secrets.token_hex(16)
        renamed = 0
        async for raw in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
            key = _text(raw)
            if key.startswith(self._key("handoffs", "")):
                fields = [_text(f) async for f, _ in self.redis.hscan_iter(key, match=f"{hid}:*")]
            else:
                fields = [hid] if await self.redis.hexists(key, hid) else []
            for name in fields:
                value = await self.redis.hget(key, name)
                if value is None:
                    continue
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(key, new + name[len(hid):], value)  # the key's expiry stays
                    pipe.hdel(key, name)
                    await pipe.execute()
                renamed += 1
        return renamed

    async def read(self, days: Sequence[str]) -> dict[str, DayRecords]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._key("conv", day))
                pipe.hgetall(self._key("handed", day))
                pipe.hgetall(self._key("handoffs", day))
            raw = await pipe.execute()
        out: dict[str, DayRecords] = {}
        for i, day in enumerate(days):
            conv, handed, handoffs = raw[3 * i: 3 * i + 3]
            out[day] = DayRecords({_text(k): _parse_pair(v) for k, v in conv.items()},
                                  {_text(k): _text(v) for k, v in handed.items()},
                                  [json.loads(v) for v in handoffs.values()])
        return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (day TEXT NOT NULL, hid TEXT NOT NULL, channel TEXT NOT NULL,
    language TEXT NOT NULL, handoff_reason TEXT, PRIMARY KEY (day, hid));
CREATE TABLE IF NOT EXISTS handoffs (day TEXT NOT NULL, hid TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (day, hid));
"""


class SqliteAnalyticsStore(AnalyticsStore):
    """The embedded default: one small SQLite file in DATA_DIR, written off the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.executescript(_SCHEMA)

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            cursor = self._conn.execute(sql, tuple(args))
            rows = cursor.fetchall()
            if cursor.rowcount >= 0 and not rows:
                return [cursor.rowcount]
            return rows

    async def conversation(self, day: str, hid: str, channel: str, language: str, expire_at: float) -> bool:
        rows = await asyncio.to_thread(self._run, "INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?, NULL)",
                                       (day, hid, channel, language))
        return bool(rows and rows[0] == 1)

    def _handed_off(self, day: str, hid: str, channel: str, language: str, reason: str) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?, NULL)",
                                   (day, hid, channel, language))
                self._conn.execute("UPDATE conversations SET handoff_reason = ? WHERE day = ? AND hid = ? "
                                   "AND handoff_reason IS NULL", (reason, day, hid))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    async def handed_off(self, day: str, hid: str, channel: str, language: str, reason: str,
                         expire_at: float) -> None:
        await asyncio.to_thread(self._handed_off, day, hid, channel, language, reason)

    def _put(self, day: str, hid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            before = self._conn.execute("SELECT record FROM handoffs WHERE day = ? AND hid = ?", (day, hid)).fetchone()
            self._conn.execute("INSERT OR REPLACE INTO handoffs VALUES (?, ?, ?)",
                               (day, hid, json.dumps(record, sort_keys=True)))
        return json.loads(before[0]) if before else None

    async def put_handoff(self, day: str, hid: str, record: dict[str, Any], expire_at: float) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._put, day, hid, record)

    def _read(self, days: Sequence[str]) -> dict[str, DayRecords]:
        out = {d: DayRecords({}, {}, []) for d in days}
        if not days:
            return out
        first, last = min(days), max(days)
        with self._lock:
            for day, hid, channel, language, reason in self._conn.execute(
                    "SELECT day, hid, channel, language, handoff_reason FROM conversations WHERE day BETWEEN ? AND ?",
                    (first, last)):
                if day in out:
                    out[day].conversations[hid] = (channel, language)
                    if reason is not None:
                        out[day].handed_off[hid] = reason
            for day, record in self._conn.execute("SELECT day, record FROM handoffs WHERE day BETWEEN ? AND ?",
                                                  (first, last)):
                if day in out:
                    out[day].handoffs.append(json.loads(record))
        return out

    async def read(self, days: Sequence[str]) -> dict[str, DayRecords]:
        return await asyncio.to_thread(self._read, days)

    def _purge(self, before_day: str) -> int:
        with self._lock:
            gone = self._conn.execute("DELETE FROM conversations WHERE day < ?", (before_day,)).rowcount
            gone += self._conn.execute("DELETE FROM handoffs WHERE day < ?", (before_day,)).rowcount
        return int(gone)

    async def purge(self, before_day: str) -> int:
        return await asyncio.to_thread(self._purge, before_day)

    def _unlink(self, hid: str) -> int:
        new = secrets.token_hex(16)
        with self._lock:
            renamed = self._conn.execute("UPDATE conversations SET hid = ? WHERE hid = ?", (new, hid)).rowcount
            renamed += self._conn.execute("UPDATE handoffs SET hid = ? || substr(hid, ?) WHERE substr(hid, 1, ?) = ?",
                                          (new, len(hid) + 1, len(hid) + 1, hid + ":")).rowcount
        return int(renamed)

    async def unlink(self, hid: str) -> int:
        return await asyncio.to_thread(self._unlink, hid)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- recording ------------------------------------------------------------------------------------

RECORDED_IN_MEMORY = 50_000  # conversations whose day this gateway remembers having recorded


def conversation_hash(secret: str, conversation_key: str) -> str:
    """The name a conversation has in the analytics' records (HMAC-SHA256 keyed with the gateway secret)."""
    key = hashlib.sha256(f"analytics:{secret}".encode()).digest()
    return hmac.new(key, f"conv:{conversation_key}".encode(), hashlib.sha256).hexdigest()[:32]


class AnalyticsRecorder:
    """A conversation hook (sees every shopper message first, takes none) and a handoff
    observer. A failure to record is logged and never touches the shopper's message."""

    def __init__(self, store: AnalyticsStore, secret: str, zone: ZoneInfo, retention_days: int,
                 metrics: Metrics, conversations: Conversations) -> None:
        self.store = store
        self._secret = secret
        self._key = hashlib.sha256(f"analytics:{secret}".encode()).digest()
        self.zone = zone
        self.retention_days = retention_days
        self.metrics = metrics
        self.conversations = conversations
        self._recorded: OrderedDict[str, str] = OrderedDict()  # conversation key -> the day recorded here
        self._today: tuple[str, float, float] = ("", 0.0, 0.0)  # today in the shop's zone: the day, its start and end

    def hashed(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def conversation(self, key: str) -> str:
        return conversation_hash(self._secret, key)

    def handoff_name(self, h: Handoff) -> str:
        """A handoff's record: its conversation's hash, then one of its start (an erasure finds them all)."""
        return f"{self.conversation(h.key)}:{self.hashed(f'handoff:{h.key}:{h.created_at!r}')[:16]}"

    def day_of(self, at: float) -> str:
        day, start, end = self._today
        if start <= at < end:
            return day  # every message of the day: no date arithmetic
        date = dt.datetime.fromtimestamp(at, self.zone).date()
        start_at = dt.datetime.combine(date, dt.time(0), self.zone).timestamp()
        end_at = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0), self.zone).timestamp()
        self._today = (date.isoformat(), start_at, end_at)
        return date.isoformat()

    def expire_at(self, day: str) -> float:
        start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(0), self.zone)
        return (start + dt.timedelta(days=self.retention_days + 1)).timestamp()

    # TurnHook
    async def before_rasa(self, message: InboundMessage) -> bool:
        try:
            key = message.conversation_key
            day = self.day_of(time.time())
            if self._recorded.get(key) == day:
                return False  # this gateway recorded it today already: no store call per message
            language = message.language or self.conversations.language_of(key)
            if await self.store.conversation(day, self.conversation(key), message.channel, language,
                                             self.expire_at(day)):
                self.metrics.inc("conversations_total", channel=message.channel, language=language)
            self._recorded[key] = day
            self._recorded.move_to_end(key)
            while len(self._recorded) > RECORDED_IN_MEMORY:
                self._recorded.popitem(last=False)
        except Exception:
            log.exception("analytics: a conversation was not recorded")
        return False

    async def after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        return None

    async def silent(self, message: InboundMessage) -> bool:
        return False

    # HandoffObserver
    async def handoff_event(self, event: HandoffEvent) -> None:
        try:
            await self._handoff_event(event)
        except Exception:
            log.exception("analytics: a handoff event was not recorded", extra={"event": event.kind.value})

    @staticmethod
    def record_of(h: Handoff) -> dict[str, Any]:
        return {"channel": h.channel, "language": h.language, "reason": h.reason, "status": h.status,
                "created_at": h.created_at, "first_response_due": h.first_response_due,
                "first_response_at": h.first_response_at, "closed_at": h.closed_at, "csat": h.csat}

    async def _handoff_event(self, event: HandoffEvent) -> None:
        h = event.handoff
        day = self.day_of(h.created_at)
        expire = self.expire_at(day)
        if event.kind is HandoffEventKind.QUEUED:
            await self.store.handed_off(day, self.conversation(h.key), h.channel, h.language, h.reason, expire)
            self.metrics.inc("handoffs_total", reason=h.reason)
        if event.kind in (HandoffEventKind.SHOPPER_MESSAGE, HandoffEventKind.NOTE):
            return  # nothing the analytics count changed
        record = self.record_of(h)
        before = await self.store.put_handoff(day, self.handoff_name(h), record, expire)
        before = before or {}
        if h.first_response_at is not None and before.get("first_response_at") is None:
            self.metrics.observe("handoff_first_response_seconds", h.first_response_at - h.created_at)
        if h.status == "resolved" and h.closed_at is not None and before.get("status") != "resolved":
            self.metrics.observe("handoff_resolution_seconds", h.closed_at - h.created_at)
        if h.csat is not None and before.get("csat") is None:
            self.metrics.inc("csat_answers_total", score=str(h.csat))


# -- figures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    first: dt.date
    last: dt.date  # inclusive
    period: str  # "day" | "week"
    channel: str | None = None
    language: str | None = None


def days_of(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def periods_of(q: Query) -> list[tuple[str, list[dt.date]]]:
    """(label, days) per period; a week is Monday to Sunday, labelled by its Monday, clipped to the range."""
    out: list[tuple[str, list[dt.date]]] = []
    for day in days_of(q.first, q.last):
        label = day.isoformat() if q.period == "day" else (day - dt.timedelta(days=day.weekday())).isoformat()
        if out and out[-1][0] == label:
            out[-1][1].append(day)
        else:
            out.append((label, [day]))
    return out


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (the median is the lower middle of an even count)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _nested_count(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for outer, inner in pairs:
        out.setdefault(outer, {})
        out[outer][inner] = out[outer].get(inner, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def _durations(values: list[float], within: int, late: int, target_seconds: float) -> dict[str, Any]:
    median, p90 = nearest_rank(values, 0.5), nearest_rank(values, 0.9)
    return {"count": len(values), "median_seconds": None if median is None else round(median, 1),
            "p90_seconds": None if p90 is None else round(p90, 1), "within_sla": within, "breached": late,
            "share_within_sla": _ratio(within, within + late), "sla_seconds": target_seconds}


def figures(days: Sequence[DayRecords], facts: Sequence[CaseFact], q: Query, now: float,
            resolution_seconds: float) -> dict[str, Any]:
    """The figures of one period (or of the whole range) from its days' records and cases."""
    def wanted(channel: str, language: str) -> bool:
        return (q.channel is None or channel == q.channel) and (q.language is None or language == q.language)

    conversations: dict[str, tuple[str, str]] = {}
    handed: dict[str, str] = {}
    for d in days:
        for hid, pair in d.conversations.items():
            conversations.setdefault(hid, pair)
        for hid, reason in d.handed_off.items():
            handed.setdefault(hid, reason)
    kept = {hid for hid, (c, lang) in conversations.items() if wanted(c, lang)}
    handed_kept = kept & set(handed)
    handoffs = [r for d in days for r in d.handoffs if wanted(str(r.get("channel")), str(r.get("language")))]
    total = len(kept)

    by_reason = _count(str(r.get("reason")) for r in handoffs)
    first_times, first_met, first_late = [], 0, 0
    resolve_times, resolve_met, resolve_late = [], 0, 0
    for r in handoffs:
        created, due, answered = float(r["created_at"]), float(r["first_response_due"]), r.get("first_response_at")
        if answered is not None:
            first_times.append(float(answered) - created)
            first_met, first_late = (first_met + 1, first_late) if float(answered) <= due else (first_met, first_late + 1)
        elif now > due and r.get("status") in ("queued", "assigned"):
            first_late += 1  # still unanswered past its due time
        if r.get("status") == "resolved" and r.get("closed_at") is not None:
            took = float(r["closed_at"]) - created
            resolve_times.append(took)
            resolve_met, resolve_late = (resolve_met + 1, resolve_late) if took <= resolution_seconds \
                else (resolve_met, resolve_late + 1)
        elif r.get("status") in ("queued", "assigned") and now - created > resolution_seconds:
            resolve_late += 1  # still open past the resolution SLA
    scores = [int(r["csat"]) for r in handoffs if r.get("csat") in SCORES]

    cases = [f for f in facts if wanted(f.channel, f.language)]
    returns = [f for f in cases if f.kind in RETURN_KINDS]
    refused = [f for f in returns if f.outcome == "refused"]
    complaints = [f for f in cases if f.kind == "complaint"]
    return {
        "conversations": total,
        "contained": total - len(handed_kept),
        "handed_off_conversations": len(handed_kept),
        "containment": _ratio(total - len(handed_kept), total),
        "handoffs": len(handoffs),
        "handoffs_by_reason": {k: {"count": v, "rate": _ratio(v, total)} for k, v in by_reason.items()},
        "handed_back": sum(1 for r in handoffs if r.get("status") == "returned"),
        "resolved": sum(1 for r in handoffs if r.get("status") == "resolved"),
        "first_response": _durations(first_times, first_met, first_late, 0.0),
        "resolution": _durations(resolve_times, resolve_met, resolve_late, resolution_seconds),
        "csat": {"answers": len(scores), "average": round(sum(scores) / len(scores), 2) if scores else None,
                 "counts": {str(s): scores.count(s) for s in SCORES}},
        "returns": {"total": len(returns), "by_category": _nested_count((f.category, f.reason) for f in returns),
                    "outcomes": _nested_count((f.category, f.outcome) for f in returns)},
        "refusals": {"total": len(refused), "by_reason": _count(f.refusal or "unknown" for f in refused),
                     "by_category": _nested_count((f.category, f.refusal or "unknown") for f in refused)},
        "complaints": {"total": len(complaints),
                       "by_category": _nested_count((f.category, f.reason) for f in complaints)},
    }


class Analytics:
    """Answers the dashboard's questions from the store and the flows' cases."""

    def __init__(self, store: AnalyticsStore, zone: ZoneInfo, first_response_minutes: float,
                 resolution_hours: float, retention_days: int, case_facts: CaseFacts = no_case_facts,
                 channels: Callable[[], Iterable[str]] = tuple) -> None:
        self.store = store
        self.zone = zone
        self.first_response_minutes = first_response_minutes
        self.resolution_hours = resolution_hours
        self.retention_days = retention_days
        self.case_facts = case_facts
        self._channels = channels

    @property
    def channels(self) -> list[str]:
        """The channels a conversation can be on (the filter's choices)."""
        return sorted(self._channels())

    def today(self) -> dt.date:
        return dt.datetime.now(self.zone).date()

    def _start(self, day: dt.date) -> float:
        return dt.datetime.combine(day, dt.time(0), self.zone).timestamp()

    async def report(self, q: Query, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        all_days = days_of(q.first, q.last)
        records = await self.store.read([d.isoformat() for d in all_days])
        facts = await self.case_facts(self._start(q.first), self._start(q.last + dt.timedelta(days=1)))
        resolution = self.resolution_hours * 3600
        fr_sla = self.first_response_minutes * 60

        def of(days: list[dt.date]) -> dict[str, Any]:
            lo, hi = self._start(days[0]), self._start(days[-1] + dt.timedelta(days=1))
            result = figures([records[d.isoformat()] for d in days], [f for f in facts if lo <= f.created_at < hi],
                             q, now, resolution)
            result["first_response"]["sla_seconds"] = fr_sla
            return result

        at = dt.datetime.fromtimestamp(now, self.zone)
        return {
            "zone": getattr(self.zone, "key", str(self.zone)), "utc_offset": at.strftime("%z"),
            "generated_at": at.isoformat(timespec="seconds"),
            "from": q.first.isoformat(), "to": q.last.isoformat(), "period": q.period,
            "channel": q.channel, "language": q.language, "channels": self.channels, "languages": ["en", "zh"],
            "sla": {"first_response_minutes": self.first_response_minutes, "resolution_hours": self.resolution_hours},
            "retention_days": self.retention_days,
            "containment_definition": "conversations active in the period that no person was asked to handle "
                                      "in the period, over all conversations active in the period",
            "totals": of(all_days),
            "periods": [{"period": label, "from": ds[0].isoformat(), "to": ds[-1].isoformat(), **of(ds)}
                        for label, ds in periods_of(q)],
        }


# -- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = ("period", "from", "to", "figure", "group", "item", "value")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR) gets a
    leading apostrophe. Numbers are written as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


# Figures whose keys are data (a reason, a category, a score): how many levels of them.
_KEYED = {"handoffs_by_reason": 1, "counts": 1, "by_reason": 1, "by_category": 2, "outcomes": 2}


def _flatten(path: str, value: Any) -> Iterable[tuple[str, str, str, Any]]:
    """(figure, group, item, value) rows of a figures dict: `returns.by_category, shoes,
    changed_mind, 1`; `handoffs_by_reason.count, , shopper_request, 1`."""
    for key, inner in value.items():
        figure = f"{path}.{key}" if path else str(key)
        levels = _KEYED.get(str(key))
        if levels == 2 and isinstance(inner, Mapping):
            for group, items in inner.items():
                for item, count in items.items():
                    yield figure, str(group), str(item), count
        elif levels == 1 and isinstance(inner, Mapping):
            for item, leaf in inner.items():
                if isinstance(leaf, Mapping):  # {"count": n, "rate": r}
                    for name, number in leaf.items():
                        yield f"{figure}.{name}", "", str(item), number
                else:
                    yield figure, "", str(item), leaf
        elif isinstance(inner, Mapping):
            yield from _flatten(figure, inner)
        else:
            yield figure, "", "", inner


def report_csv(report: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for name in ("zone", "utc_offset", "generated_at", "period", "channel", "language"):
        writer.writerow([safe_cell(c) for c in ("meta", "", "", name, "", "", report.get(name) or "all")])
    blocks = [("total", report["from"], report["to"], report["totals"])]
    blocks += [(p["period"], p["from"], p["to"], {k: v for k, v in p.items() if k not in ("period", "from", "to")})
               for p in report["periods"]]
    for period, first, last, figs in blocks:
        for figure, group, item, value in _flatten("", figs):
            writer.writerow([safe_cell(c) for c in (period, first, last, figure, group, item, value)])
    return buffer.getvalue()
