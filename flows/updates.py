"""The shop speaks first: when a case moves on (pick-up booked, parcel received, refund
issued, replacement shipped, ticket answered), the shopper is told, once, in the channel and
language of their conversation, with what happens next.

The shop's order system calls `POST /shop/case-events` (on when SHOP_EVENTS_SECRET is set):

    X-Shop-Timestamp: <unix seconds>          (within 5 minutes of the gateway's clock)
    X-Shop-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with SHOP_EVENTS_SECRET>
    {"event_id": "evt-1", "case_id": "RT-482913", "status": "refund_issued",
     "at": "2026-12-03T10:00:00+08:00", "amount": "¥599.00", "tracking": "SF123", "message": "..."}

Answers: 200 `{"told": true|false, "reason": ...}` (false: already told, the shopper switched
updates off, the case has no conversation); 401 unsigned, badly signed or stale; 400 a bad
body; 404 an unknown case. An event id is handled once, whatever arrives again (a replay
answers 200 `{"duplicate": true}` and changes nothing). The status goes into the case's
history whether or not the shopper is told.

Every update carries a "Stop these updates" button; the shopper's choice is kept per
conversation (and "Send me updates again" undoes it). Delivery goes through the channel's own
output: Telegram's and Slack's rate limits are waited out there, a chat that blocked the bot is
not written to again.

A plugin of the gateway (bot/plugins.py): it imports only the core and the flows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from aiohttp import web

from bot.messages import Button, ConversationRef, InboundMessage, OutboundReply
from bot.plugins import Conversations, PluginContext
from bot.settings_schema import Setting, SettingsReader
from flows.case_page import CASE_LINK_DAYS, CasePages, add_route, case_pages
from flows.cases import Case, CaseStore, normalize_case_id
from flows.db import connect, db_path
from flows.policies import load_policies, tz_for
from flows.replies import money
from flows.texts import Texts, load_texts

log = logging.getLogger("gateway.flows.updates")

EVENTS_PATH = "/shop/case-events"
MAX_BODY_BYTES = 16 * 1024
MAX_SKEW_SECONDS = 300
STOP_PAYLOAD, START_PAYLOAD = "/updates_off", "/updates_on"

# The shop's event -> the case status it records (flows' own names, texts `status.*`).
STATUS_OF_EVENT = {"pickup_booked": "pickup_scheduled", "picked_up": "picked_up", "parcel_received": "received",
                   "refund_issued": "refunded", "exchange_shipped": "replacement_shipped",
                   "ticket_answered": "resolved"}

SHOP_EVENTS_SECRET = Setting("SHOP_EVENTS_SECRET", "", str,
                             "switches on `POST /shop/case-events`, where the shop's order system tells the gateway "
                             "that a case moved on (HMAC-signed with this secret, at least 32 characters; see "
                             "flows/updates.py); the shopper is told once, in their channel and language",
                             secret=True)
DEMO_CASE_STEP_MINUTES = Setting("DEMO_CASE_STEP_MINUTES", 0.0, float,
                                  "the demo's back office: every this many minutes each shopper's case moves one "
                                  "step on (pick-up booked, picked up, received, refunded; a replacement shipped), "
                                  "and the shopper is told as the shop's own events would; 0 (default): off")
UPDATES_SETTINGS = (SHOP_EVENTS_SECRET, CASE_LINK_DAYS, DEMO_CASE_STEP_MINUTES)

# The demo back office (DEMO_CASE_STEP_MINUTES): a case's status -> the shop's next event.
DEMO_NEXT_EVENT = {"pickup_scheduled": "picked_up", "picked_up": "parcel_received", "received": "refund_issued",
                   "refund_approved": "refund_issued", "replacement_shipping": "exchange_shipped"}
DEMO_LOOKBACK_SECONDS = 7 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shop_events (
    event_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, status TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS update_optouts (conversation_key TEXT PRIMARY KEY, at REAL NOT NULL);
"""


class BadEvent(ValueError):
    """A signed request whose body is not a case event."""


@dataclass(frozen=True)
class CaseEvent:
    event_id: str
    case_id: str
    event: str  # a key of STATUS_OF_EVENT
    at: dt.datetime
    amount: str = ""
    tracking: str = ""
    message: str = ""

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> CaseEvent:
        if not isinstance(body, dict):
            raise BadEvent("the body must be a JSON object")
        event_id, case_id, event = body.get("event_id"), body.get("case_id"), body.get("status")
        if not isinstance(event_id, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", event_id):
            raise BadEvent("event_id: 1-128 letters, digits or ._:-")
        found = normalize_case_id(case_id) if isinstance(case_id, str) and len(case_id) <= 40 else None
        if found is None or not isinstance(case_id, str) or found != case_id.strip().upper():
            raise BadEvent("case_id: a case id like RT-482913")
        if event not in STATUS_OF_EVENT:
            raise BadEvent(f"status: one of {', '.join(STATUS_OF_EVENT)}")
        at = now
        if body.get("at") is not None:
            try:
                at = dt.datetime.fromisoformat(str(body["at"]))
            except ValueError:
                raise BadEvent("at: an ISO 8601 time with its zone") from None
            if at.tzinfo is None:
                raise BadEvent("at: the time needs its zone (e.g. +08:00)")
        texts = {}
        for name, limit in (("amount", 40), ("tracking", 64), ("message", 1000)):
            value = body.get(name, "")
            if not isinstance(value, str) or len(value) > limit:
                raise BadEvent(f"{name}: text of at most {limit} characters")
            texts[name] = value.strip()
        if event == "ticket_answered" and not texts["message"]:
            raise BadEvent("message: what the team answered, for ticket_answered")
        return cls(event_id, found, str(event), at, **texts)


class UpdatesLedger:
    """Which events were handled and who switched updates off (in the flows database)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with connect(path) as conn:
            conn.executescript(_SCHEMA)

    def first_time(self, event: CaseEvent) -> bool:
        with connect(self.path) as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO shop_events VALUES (?, ?, ?, ?)",
                                  (event.event_id, event.case_id, event.event, time.time()))
            return cursor.rowcount == 1

    def forget(self, event: CaseEvent) -> None:
        with connect(self.path) as conn:
            conn.execute("DELETE FROM shop_events WHERE event_id = ?", (event.event_id,))

    def opted_out(self, key: str) -> bool:
        with connect(self.path) as conn:
            return conn.execute("SELECT 1 FROM update_optouts WHERE conversation_key = ?", (key,)).fetchone() is not None

    def opted_out_at(self, key: str) -> float | None:
        """When the conversation switched case updates off (a shopper's access request), or None."""
        with connect(self.path) as conn:
            row = conn.execute("SELECT at FROM update_optouts WHERE conversation_key = ?", (key,)).fetchone()
        return float(row[0]) if row else None

    def forget_conversation(self, key: str) -> int:
        """A shopper's erasure request: their choice about case updates (1 when there was one)."""
        with connect(self.path) as conn:
            return int(conn.execute("DELETE FROM update_optouts WHERE conversation_key = ?", (key,)).rowcount)

    def set_opted_out(self, key: str, off: bool) -> None:
        with connect(self.path) as conn:
            if off:
                conn.execute("INSERT OR REPLACE INTO update_optouts VALUES (?, ?)", (key, time.time()))
            else:
                conn.execute("DELETE FROM update_optouts WHERE conversation_key = ?", (key,))


class CaseUpdates:
    """Turns a case event into the case's new status and one message to the shopper; the
    conversation hook that reads the stop/start buttons."""

    def __init__(self, conversations: Conversations, cases: CaseStore, ledger: UpdatesLedger, texts: Texts,
                 zone: dt.tzinfo, pages: CasePages | None = None) -> None:
        self.pages = pages  # links to the shopper's case page, when the gateway makes them
        self.conversations = conversations
        self.cases = cases
        self.ledger = ledger
        self.texts = texts
        self.zone = zone

    def message(self, case: Case, event: CaseEvent, lang: str) -> OutboundReply:
        t = self.texts
        when = _when(event.at.astimezone(self.zone), lang)
        text = t(f"update.{event.event}", lang, kind=t(f"kind.{case.kind}", lang) if t.has(f"kind.{case.kind}")
                 else case.kind, case_id=case.id, order=case.order_number or "-", when=when,
                 amount=event.amount or (money(case.details["refund_amount"]) if case.details.get("refund_amount")
                                         else t("update.no_amount", lang)),
                 tracking=event.tracking or t("update.no_tracking", lang), message=event.message)
        if self.pages is not None:
            text += "\n" + t("casepage.link", lang, link=self.pages.link(case.id, lang))
        return OutboundReply(text=text, buttons=(Button(title=t("update.stop", lang), payload=STOP_PAYLOAD),))

    async def handle(self, event: CaseEvent) -> dict[str, Any]:
        if not await asyncio.to_thread(self.ledger.first_time, event):
            return {"duplicate": True, "told": False}
        try:
            case = await self.cases.get(event.case_id)
            if case is None:
                await asyncio.to_thread(self.ledger.forget, event)  # it may be sent again once the case exists
                raise LookupError(event.case_id)
            status = STATUS_OF_EVENT[event.event]
            if case.status == status:
                return {"told": False, "reason": "unchanged"}  # told when it first changed
            await self.cases.set_status(case.id, status, note=f"shop event {event.event_id}")
            ref = ConversationRef.parse(case.conversation_id or "")
            if ref is None or ref.channel not in self.conversations.channels:
                return {"told": False, "reason": "no_conversation"}
            if await asyncio.to_thread(self.ledger.opted_out, ref.key):
                return {"told": False, "reason": "opted_out"}
            lang = case.language if case.language in ("en", "zh") else self.conversations.language_of(ref.key)
            await self.conversations.deliver(ref.channel, ref.conversation_id, [self.message(case, event, lang)])
            log.info("shopper told of a case update", extra={"conversation": ref.key, "case": case.id,
                                                              "event": event.event})
            return {"told": True}
        except LookupError:
            raise
        except Exception:
            await asyncio.to_thread(self.ledger.forget, event)  # not handled: the shop's retry is welcome
            raise

    async def demo_step(self, step_seconds: float, now: float | None = None) -> int:
        """The demo back office: every case that has waited `step_seconds` in a status with a next
        step takes it, through the same path as the shop's own events (told once, idempotent by
        event id). How many moved."""
        now = time.time() if now is None else now
        moved = 0
        for case in await asyncio.to_thread(self.cases.made_since_sync, now - DEMO_LOOKBACK_SECONDS):
            following = DEMO_NEXT_EVENT.get(case.status)
            if following is None or case.updated_at > now - step_seconds:
                continue
            event = CaseEvent(f"demo:{case.id}:{case.status}", case.id, following,
                              dt.datetime.fromtimestamp(now, self.zone),
                              tracking=f"SF{case.id[-6:]}" if following == "exchange_shipped" else "")
            await self.handle(event)
            moved += 1
        return moved

    # -- the stop / start buttons (a conversation-service hook) ------------------------------

    async def before_rasa(self, message: InboundMessage) -> bool:
        choice = (message.payload or "").strip()
        if choice not in (STOP_PAYLOAD, START_PAYLOAD):
            return False
        key = message.conversation_key
        off = choice == STOP_PAYLOAD
        await asyncio.to_thread(self.ledger.set_opted_out, key, off)
        lang = message.language or self.conversations.language_of(key)
        button = Button(title=self.texts("update.start" if off else "update.stop", lang),
                        payload=START_PAYLOAD if off else STOP_PAYLOAD)
        await self.conversations.deliver(message.channel, message.conversation_id, [OutboundReply(
            text=self.texts("update.stopped" if off else "update.started", lang), buttons=(button,))])
        return True

    async def after_rasa(self, message: InboundMessage, replies: Sequence[OutboundReply]) -> None:
        return None

    async def silent(self, message: InboundMessage) -> bool:
        return False


def _when(moment: dt.datetime, lang: str) -> str:
    from bot.i18n import format_datetime

    return format_datetime(moment, lang)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the shop puts in X-Shop-Signature."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class CaseEventsEndpoint:
    def __init__(self, updates: CaseUpdates, secret: str) -> None:
        self.updates = updates
        self.secret = secret

    def _verified(self, request: web.Request, body: bytes) -> bool:
        timestamp = request.headers.get("X-Shop-Timestamp", "")
        given = request.headers.get("X-Shop-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
            return False
        return hmac.compare_digest(given, signature(self.secret, timestamp, body))

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"error": "too_large", "max_bytes": MAX_BODY_BYTES}, status=413)
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return web.json_response({"error": "too_large", "max_bytes": MAX_BODY_BYTES}, status=413)
        if not self._verified(request, body):
            return web.json_response({"error": "unauthorized", "message": "X-Shop-Timestamp (within 5 minutes) and "
                                      "X-Shop-Signature (sha256=HMAC of '<timestamp>.<body>') are required"},
                                     status=401)
        try:
            parsed = json.loads(body)
            event = CaseEvent.parse(parsed, dt.datetime.now(dt.timezone.utc))
        except (ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, BadEvent) else "the body is not JSON"
            return web.json_response({"error": "bad_event", "message": message}, status=400)
        try:
            answer = await self.updates.handle(event)
        except LookupError:
            return web.json_response({"error": "unknown_case", "case_id": event.case_id}, status=404)
        return web.json_response(answer)


def setup(app: web.Application, ctx: PluginContext) -> bool:
    """The shopper's case page (`/case/<token>`) and the update buttons' hook always; the case
    events endpoint when SHOP_EVENTS_SECRET is set (True then, bot/plugins.py contract); the demo
    back office when DEMO_CASE_STEP_MINUTES is set."""
    reader = SettingsReader(ctx.env)
    secret = reader.get(SHOP_EVENTS_SECRET).strip()
    step_minutes = reader.get(DEMO_CASE_STEP_MINUTES)
    from bot.config import ConfigError

    if secret and len(secret) < 32:
        raise ConfigError(["SHOP_EVENTS_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)"])
    if step_minutes < 0:
        raise ConfigError([f"DEMO_CASE_STEP_MINUTES={step_minutes}: minutes, 0 for off"])
    path = db_path()
    store, texts, zone = CaseStore(path, ctx.keys), load_texts(), tz_for(load_policies().timezone)
    pages = case_pages(ctx, store, texts, zone)
    add_route(app, pages)
    updates = CaseUpdates(ctx.service, store, UpdatesLedger(path), texts, zone, pages)
    ctx.service.add_hook(updates)
    if step_minutes > 0:
        async def back_office(app: web.Application) -> Any:
            async def loop() -> None:
                while True:
                    await asyncio.sleep(min(30.0, step_minutes * 60 / 2))
                    try:
                        await updates.demo_step(step_minutes * 60)
                    except Exception:
                        log.exception("the demo back office failed a step")
            task = asyncio.create_task(loop(), name="demo-back-office")
            yield
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        app.cleanup_ctx.append(back_office)
        ctx.tell_operator(f"  Demo back office:   cases move one step every {step_minutes:g} min (DEMO_CASE_STEP_MINUTES)")
    if not secret:
        return False
    app.router.add_post(EVENTS_PATH, CaseEventsEndpoint(updates, secret).handle)
    ctx.tell_operator(f"  Case updates:       the shop's system posts to {{base}}{EVENTS_PATH} (flows/updates.py)")
    return True
