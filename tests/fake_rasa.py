"""`FakeRasa`: a real aiohttp server speaking what the gateway uses of Rasa 3.6's HTTP API
(bot/rasa_client.py), with a tiny dialogue script and fault injection, so the core, channel
and handoff tests run without the real engine. The e2e suite keeps the real Rasa.

Wire format, as Rasa 3.6 answers (rasa/server.py, rasa/core/channels/rest.py):

- `POST /webhooks/rest/webhook` {sender, message, input_channel?, metadata?} -> a list of
  {recipient_id, text?, buttons?, image?, custom?}, split the way Rasa's collecting output
  channel splits a bot message (a custom payload is a message of its own; a text without
  buttons is cut at blank lines). The turn is recorded on the tracker: the `user` event
  (text, metadata with the gateway's `message_id`, parse data), the `bot` events and a final
  `action_listen`. A paused conversation answers `[]` and records only the `user` event.
  Not protected by the token, as in Rasa (`--auth-token` guards the HTTP API only).
- `GET /conversations/{id}/tracker`, `POST /conversations/{id}/tracker/events` (one event
  or a list; `pause`, `resume` and `slot` change the state; `include_events` is honoured),
  `GET /status` ({"model_file": ...}), `GET /version`. The id is percent-decoded, as Sanic
  does for Rasa. With a `token`, these answer 401 unless `?token=` matches.

The dialogue takes every text from the flows themselves (flows/texts.yml through
`flows.service.AfterSales`' own reply builders, the FAQ from knowledge_base.yml) and builds
the handoff signal as the flows do (`HandoffRequest(...).payload()` under `custom`). It
understands a message that is one of Rasa's own training examples (rasa_project/data/nlu.yml)
of the intents it knows, and `/intent{json}` payloads; a message the flows read as an allergic
reaction to a demo order ("my face got a rash from the serum, order AS10005") ends as the
return flow ends it: a fast-refund case in the flows' case store (FLOWS_DB_PATH) and the
flows' expert handoff (`priority: high` when the shopper says they were hurt); anything else
is not understood and gets the flows' fallback. Language: the gateway's decision (`metadata.language`), else the
conversation's earlier language followed as the action server follows it (bot/i18n.py).

Fault injection (each rule matches requests by path prefix and method; `times=None`: until
`clear_faults()`):
- `fail_next(times, status)`: answer with that HTTP status and Rasa's error body, unhandled.
- `delay_next(seconds, times, after=False)`: wait before handling (or, `after=True`, handle
  first and then wait: a turn that ran but answers late).
- `hang_next(times, after=False)`: never answer, until `release_hung()`, `stop_listening()` or
  `close()`, which close the connection.
- `drop_next(times, after=False)`: close the connection without answering (`after=True`:
  the turn ran first, its answer is lost).
- `stop_listening(forget=False)` / `start_listening()`: Rasa down and up again on the same
  port (`forget=True`: its in-memory trackers are gone, as after a real restart).
- `requests`: every request received, faulted or not (`calls(path)` filters them).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Mapping, Sequence
from urllib.parse import unquote

import yaml
from aiohttp import web

from bot.i18n import LANGUAGES, LanguageState, follow_language, language_of_locale
from flows import demo_data
from flows.cases import Case, CaseStore
from flows.forms import FORMS
from flows.knowledge import load_knowledge
from flows.policies import load_policies
from flows.reading import Reader
from flows.replies import Context, Reply
from flows.service import AfterSales
from flows.texts import load_texts

RASA_VERSION = "3.6.21"
MODEL_FILE = "fake-rasa-model.tar.gz"
NLU_DATA = Path(__file__).resolve().parents[1] / "rasa_project" / "data" / "nlu.yml"
REST_WEBHOOK = "/webhooks/rest/webhook"
VERBOSITIES = ("NONE", "APPLIED", "AFTER_RESTART", "ALL")
EVENT_TYPES = ("user", "bot", "action", "slot", "pause", "resume", "session_started", "active_loop",
               "user_featurization", "reset_slots", "followup", "action_execution_rejected", "undo", "rewind",
               "restart", "reminder", "cancel_reminder", "loop_interrupted", "entities", "agent", "export",
               "stack", "user_utterance_reverted", "action_reverted", "all_slots_reset")
FAQ_INTENTS = ("ask_return_policy", "ask_return_shipping", "ask_size_advice", "ask_shoe_care",
               "ask_skincare_ingredients", "ask_skincare_allergy", "ask_refund_timing")
SMALL_TALK = ("greet", "thanks", "bot_challenge")
# The intents the script answers when a message is one of their training examples.
KNOWN_INTENTS = (*SMALL_TALK, "goodbye", "request_human", "request_return", *FAQ_INTENTS)
PAYLOAD = re.compile(r"^/(?P<intent>[A-Za-z0-9_\-]+)(?P<entities>\{.*\})?$", re.S)
ANNOTATION = re.compile(r"\[([^\]]*)\]\s*(?:\([^)]*\)|\{[^}]*\})")
FaultKind = Literal["status", "delay", "hang", "drop"]


# -- the dialogue ------------------------------------------------------------------------------------


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" ?!.,。！？，、~")


def load_examples(path: Path = NLU_DATA, intents: Sequence[str] = KNOWN_INTENTS) -> dict[str, str]:
    """Rasa's own training examples of `intents` (annotations removed), normalized -> intent."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    examples: dict[str, str] = {}
    for block in data.get("nlu") or []:
        intent = block.get("intent") if isinstance(block, dict) else None
        if not isinstance(intent, str) or intent not in intents:
            continue
        for line in str(block.get("examples") or "").splitlines():
            line = line.strip()
            if line.startswith("- "):
                examples.setdefault(_normalize(ANNOTATION.sub(r"\1", line[2:])), intent)
    return examples


class _Flows(AfterSales):
    """The flows' own reply builders, without an order backend or a case store: the script
    only says what needs neither (small talk, FAQ, handoff, the first question of a return,
    files outside a flow, the fallback)."""

    def __init__(self) -> None:  # deliberately not AfterSales.__init__: no database is opened
        self.policies = load_policies()
        self.kb = load_knowledge(policies=self.policies)
        self.t = load_texts()
        self.reader = Reader(self.policies)
        self._clock = None


@dataclass
class Understood:
    intent: str
    entities: dict[str, Any]
    confidence: float = 1.0

    def parse_data(self, text: str, message_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        intent = {"name": self.intent, "confidence": self.confidence}
        return {"intent": intent, "entities": [{"entity": k, "value": v} for k, v in self.entities.items()],
                "text": text, "message_id": message_id, "metadata": dict(metadata), "intent_ranking": [intent]}


class Script:
    """What the fake says to a message: Rasa's rules (rasa_project/data/rules.yml) for the
    intents the moved tests use, answered by the flows' own code."""

    def __init__(self) -> None:
        self.flows = _Flows()
        self.examples = load_examples()
        self.return_form = next(cls for cls in FORMS if cls.name == "return_form")(self.flows)

    def parse(self, text: str) -> Understood:
        payload = PAYLOAD.match(text.strip())
        if payload:
            entities: dict[str, Any] = {}
            if payload.group("entities"):
                try:
                    loaded = json.loads(payload.group("entities"))
                except ValueError:
                    loaded = {}
                entities = loaded if isinstance(loaded, dict) else {}
            return Understood(payload.group("intent"), entities)
        intent = self.examples.get(_normalize(text))
        return Understood(intent, {}) if intent else Understood("nlu_fallback", {}, confidence=0.3)

    async def answer(self, conversation: "Conversation", text: str, parsed: Understood,
                     metadata: Mapping[str, Any]) -> tuple[str, list[Reply], dict[str, Any]]:
        """(the action Rasa would run, the flow's replies, slots it sets)."""
        flows, intent = self.flows, parsed.intent
        known = conversation.slots.get("language")
        lang = known if known in LANGUAGES else "en"
        ctx = Context(lang=lang, conversation_id=conversation.sender_id, last_case_id=None)
        attachments = [a for a in metadata.get("attachments") or [] if isinstance(a, dict)]
        if intent in SMALL_TALK:
            return "action_small_talk", flows.small_talk(intent, known if known in LANGUAGES else None), {}
        if intent == "goodbye":
            return "action_goodbye", flows.small_talk("goodbye", lang), {}
        if intent in FAQ_INTENTS:
            return "action_answer_faq", await flows.faq(intent, lang), {}
        if intent == "request_human":
            reason = "fallback" if conversation.last_action == "action_fallback" else "shopper_request"
            context = {"flow": None, "case_id": None, "order_number": None,
                       "customer_id": conversation.slots.get("customer_id")}
            return "action_handoff", flows.handoff(reason, lang, context), {}
        if intent == "request_return":
            return "action_ask_order_number", await self.return_form.ask("order_number", {}, ctx), {}
        if intent == "share_attachment":
            inbound = flows.inbound(text, intent=intent, confidence=1.0, attachments=attachments)
            replies, updates = await flows.receive_attachment(inbound, ctx)
            return "action_receive_attachment", replies, updates
        facts = flows.reader.read(text)
        if intent == "nlu_fallback" and facts.reason == "allergic_reaction" and facts.order_number in DEMO_ITEMS:
            # The return flow's end for an allergic reaction (flows/forms/returns.py): a fast
            # refund case in the flows' own case store, and a skincare expert (high priority
            # when the shopper was hurt) through the flows' own handoff signal.
            case = await asyncio.to_thread(_allergy_case, conversation.sender_id, facts.order_number, lang)
            reply = flows.expert_handoff(case.id, lang, facts.order_number, None, urgent=facts.severe)
            return "action_submit_return", [reply], {"last_case_id": case.id}
        # Not understood (or a flow the script does not have): the two-stage fallback.
        stage = 2 if conversation.last_action == "action_fallback" else 1
        inbound = flows.inbound(text, intent=intent, confidence=parsed.confidence, attachments=attachments)
        return "action_fallback", flows.fallback(stage, inbound, lang), {}


# The first item of each demo order (flows/demo_data.py): what the allergy rule's case is about.
DEMO_ITEMS = {o["number"]: o["items"][0]["sku"] for o in demo_data.ORDERS}


def _allergy_case(conversation_key: str, order_number: str, lang: str) -> Case:
    sku = DEMO_ITEMS[order_number]
    product = next(p for p in demo_data.PRODUCTS for v in p["variants"] if v["sku"] == sku)
    details = {"item_sku": sku, "item": dict(product["name"]), "category": product["category"],
               "reason": "allergic_reaction", "outcome": "fast_refund", "decision": "accepted_reason"}
    return CaseStore().create_sync("return", ["submitted", "refund_approved", "expert_assigned"],
                                   order_number=order_number, conversation_id=conversation_key, language=lang,
                                   details=details)


@functools.cache
def shared_script() -> Script:
    """One script for the run: it keeps no state (each conversation's is on its tracker), and
    loading the flows' files for every test would cost a third of a second each."""
    return Script()


def rest_messages(recipient_id: str, reply: Reply) -> list[dict[str, Any]]:
    """One bot message as Rasa's REST channel returns it (CollectingOutputChannel.send_response)."""
    out: list[dict[str, Any]] = []
    if reply.buttons:
        out.append({"recipient_id": recipient_id, "text": reply.text, "buttons": reply.buttons})
    elif reply.text:
        out.extend({"recipient_id": recipient_id, "text": part} for part in reply.text.strip().split("\n\n"))
    if reply.custom:
        out.append({"recipient_id": recipient_id, "custom": reply.custom})
    return [{k: v for k, v in message.items() if v is not None} for message in out]


# -- conversations -----------------------------------------------------------------------------------


@dataclass
class Conversation:
    """One tracker, as Rasa's in-memory tracker store keeps it."""

    sender_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=lambda: {
        "language": None, "customer_id": None, "last_case_id": None, "pending_photo": None, "requested_slot": None,
        "session_started_metadata": None})
    paused: bool = False
    latest_message: dict[str, Any] | None = None
    latest_input_channel: str | None = None
    last_action: str | None = None

    @property
    def started(self) -> bool:
        return bool(self.events)

    def add(self, kind: str, model_id: str, /, **fields: Any) -> dict[str, Any]:
        metadata = {**(fields.pop("metadata", None) or {}), "model_id": model_id, "assistant_id": "fake-rasa"}
        event = {"event": kind, "timestamp": fields.pop("timestamp", None) or time.time(), "metadata": metadata,
                 **fields}
        self.apply(event)
        self.events.append(event)
        return event

    def apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "pause":
            self.paused = True
        elif kind == "resume":
            self.paused = False
        elif kind == "slot" and isinstance(event.get("name"), str):
            self.slots[event["name"]] = event.get("value")
        elif kind == "action" and event.get("name") not in (None, "action_listen"):
            self.last_action = event["name"]
        elif kind == "user":
            parse = event.get("parse_data")
            self.latest_message = dict(parse) if isinstance(parse, dict) else {"text": event.get("text")}
            self.latest_input_channel = event.get("input_channel")

    def start_session(self, model_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        if self.started:
            return
        if metadata:
            self.add("slot", model_id, name="session_started_metadata", value=dict(metadata))
        self.add("action", model_id, name="action_session_start", policy=None, confidence=1.0)
        self.add("session_started", model_id)
        self.add("action", model_id, name="action_listen", policy=None, confidence=None)

    def state(self, verbosity: str = "AFTER_RESTART") -> dict[str, Any]:
        """Rasa's `DialogueStateTracker.current_state(verbosity)`."""
        latest_action = next((e["name"] for e in reversed(self.events) if e["event"] == "action"), None)
        return {
            "sender_id": self.sender_id,
            "slots": dict(self.slots),
            "latest_message": self.latest_message or {"intent": {}, "entities": [], "text": None,
                                                      "message_id": None, "metadata": {}},
            "latest_event_time": self.events[-1]["timestamp"] if self.events else None,
            "followup_action": None,
            "paused": self.paused,
            "events": None if verbosity == "NONE" else [dict(e) for e in self.events],
            "latest_input_channel": self.latest_input_channel,
            "active_loop": {},
            "latest_action": {"action_name": latest_action} if latest_action else {},
            "latest_action_name": latest_action,
        }


# -- faults ------------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: FaultKind
    times: int | None  # None: until cleared
    path: str | None = None  # requests whose path starts with this (None: every request)
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    after: bool = False  # handle the request first, then delay / hang / drop its answer

    def matches(self, request: web.Request) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        return self.path is None or request.path.startswith(self.path)


@dataclass(frozen=True)
class Received:
    """One request the fake received."""

    method: str
    path: str  # as sent (still percent-encoded)
    query: Mapping[str, str]
    body: Any
    at: float
    fault: FaultKind | None = None


def _error(status: int, reason: str, message: str, details: Any = None) -> web.Response:
    """Rasa's `ErrorResponse` body."""
    body = {"version": RASA_VERSION, "status": "failure", "message": message, "reason": reason,
            "details": details or {}, "help": None, "code": status}
    return web.json_response(body, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeRasa:
    """A fake Rasa 3.6 server on 127.0.0.1: `await FakeRasa().start()`, `.url`, `await close()`."""

    def __init__(self, token: str = "", host: str = "127.0.0.1", port: int = 0, script: Script | None = None) -> None:
        self.token = token
        self.host = host
        self.port = port  # 0: a free port, chosen at the first start and kept across restarts
        self.model_id = uuid.uuid4().hex
        self.conversations: dict[str, Conversation] = {}
        self.requests: list[Received] = []
        self.faults: list[Fault] = []
        self.script = script or shared_script()
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._runner is not None

    async def start(self) -> "FakeRasa":
        await self.start_listening()
        return self

    async def close(self) -> None:
        await self.stop_listening()

    async def start_listening(self) -> None:
        """Listen (again) on the same port: Rasa is up."""
        if self._runner is not None:
            return
        self._released = asyncio.Event()
        app = web.Application(middlewares=[self._record_and_inject])
        app.router.add_get("/", self._hello)
        app.router.add_get("/version", self._version)
        app.router.add_get("/status", self._status)
        app.router.add_get("/webhooks/rest/", self._rest_health)
        app.router.add_post(REST_WEBHOOK, self._webhook)
        app.router.add_route("*", "/conversations/{tail:.+}", self._conversations)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop_listening(self, forget: bool = False) -> None:
        """Stop answering and close every connection, hung ones included: Rasa is down.
        `forget`: its trackers are lost too (Rasa's in-memory tracker store after a restart)."""
        self._released.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            for _ in range(3):  # let clients in this loop see their kept-alive connections closed
                await asyncio.sleep(0)
        if forget:
            self.conversations.clear()

    # -- fault injection ---------------------------------------------------------------------------

    def _add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def fail_next(self, times: int | None = 1, status: int = 500, path: str | None = None,
                  method: str | None = None) -> Fault:
        """Answer the next `times` matching requests with `status` (Rasa's error body), unhandled."""
        return self._add(Fault("status", times, path, method, status=status))

    def delay_next(self, seconds: float, times: int | None = 1, path: str | None = None,
                   method: str | None = None, after: bool = False) -> Fault:
        """Wait `seconds` before handling the next `times` matching requests (`after`: handle, then wait)."""
        return self._add(Fault("delay", times, path, method, seconds=seconds, after=after))

    def hang_next(self, times: int | None = 1, path: str | None = None, method: str | None = None,
                  after: bool = False) -> Fault:
        """Never answer the next `times` matching requests, until `release_hung()`/`stop_listening()`."""
        return self._add(Fault("hang", times, path, method, after=after))

    def drop_next(self, times: int | None = 1, path: str | None = None, method: str | None = None,
                  after: bool = False) -> Fault:
        """Close the connection of the next `times` matching requests without answering
        (`after`: the request was handled first, e.g. a turn that ran but whose answer is lost)."""
        return self._add(Fault("drop", times, path, method, after=after))

    def clear_faults(self) -> None:
        self.faults.clear()

    def release_hung(self) -> None:
        """End the requests hanging now (their connections are closed, unanswered)."""
        self._released.set()
        self._released = asyncio.Event()

    def calls(self, path: str | None = None, method: str | None = None) -> list[Received]:
        return [r for r in self.requests if (path is None or r.path.startswith(path))
                and (method is None or r.method == method.upper())]

    # -- reading what happened ---------------------------------------------------------------------

    def conversation(self, sender_id: str) -> Conversation:
        conversation = self.conversations.get(sender_id)
        if conversation is None:
            conversation = self.conversations[sender_id] = Conversation(sender_id)
        return conversation

    def events(self, sender_id: str) -> list[dict[str, Any]]:
        found = self.conversations.get(sender_id)
        return list(found.events) if found else []

    def user_texts(self, sender_id: str) -> list[str]:
        return [e.get("text") or "" for e in self.events(sender_id) if e["event"] == "user"]

    # -- the server --------------------------------------------------------------------------------

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None and fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)  # spent
        self.requests.append(Received(request.method, request.raw_path.split("?", 1)[0], dict(request.query), body,
                                      time.time(), fault.kind if fault else None))
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            return _error(fault.status, "InjectedFault", f"fault injected by the test: HTTP {fault.status}")
        response: web.StreamResponse | None = None
        if fault.after:
            response = await handler(request)
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return response if response is not None else await handler(request)
        if fault.kind == "hang":
            await self._released.wait()
        if request.transport is not None:
            request.transport.abort()  # no answer: the client sees the connection close
        return web.Response(status=204)

    def _authorized(self, request: web.Request) -> web.Response | None:
        if not self.token or request.query.get("token") == self.token:
            return None
        return _error(401, "NotAuthenticated", "User is not authenticated.")

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text=f"Hello from Rasa: {RASA_VERSION}")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": RASA_VERSION, "minimum_compatible_version": RASA_VERSION})

    async def _status(self, request: web.Request) -> web.Response:
        return self._authorized(request) or web.json_response(
            {"model_file": MODEL_FILE, "model_id": self.model_id, "num_active_training_jobs": 0})

    async def _rest_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _webhook(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid JSON")
        if not isinstance(body, dict):
            return web.Response(status=400, text="body is not an object")
        sender, text = body.get("sender"), body.get("message")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if not isinstance(sender, str) or not isinstance(text, str):
            return web.json_response([])  # Rasa logs the failure and answers nothing
        return web.json_response(await self.turn(sender, text, metadata, body.get("input_channel") or "rest"))

    async def turn(self, sender: str, text: str, metadata: Mapping[str, Any] | None = None,
                   input_channel: str = "rest") -> list[dict[str, Any]]:
        """Run one turn as Rasa's REST channel does; its replies in REST form."""
        metadata = dict(metadata or {})
        conversation = self.conversation(sender)
        conversation.start_session(self.model_id, metadata)
        parsed = self.script.parse(text)
        message_id = uuid.uuid4().hex
        conversation.add("user", self.model_id, metadata=metadata, text=text,
                         parse_data=parsed.parse_data(text, message_id, metadata),
                         input_channel=input_channel, message_id=message_id)
        if conversation.paused:
            return []  # Rasa keeps the message and predicts nothing
        language = self._language(conversation, text, metadata)
        if language != conversation.slots.get("language"):
            conversation.add("slot", self.model_id, name="language", value=language)
        action, replies, updates = await self.script.answer(conversation, text, parsed, metadata)
        conversation.add("action", self.model_id, name=action, policy="RulePolicy", confidence=1.0)
        out: list[dict[str, Any]] = []
        for reply in replies:
            conversation.add("bot", self.model_id, text=reply.text, data={
                "elements": None, "quick_replies": None, "buttons": reply.buttons or None, "attachment": None,
                "image": None, "custom": reply.custom})
            out.extend(rest_messages(sender, reply))
        for name, value in updates.items():
            conversation.add("slot", self.model_id, name=name, value=value)
        conversation.add("action", self.model_id, name="action_listen", policy="RulePolicy", confidence=1.0)
        return out

    @staticmethod
    def _language(conversation: Conversation, text: str, metadata: Mapping[str, Any]) -> str | None:
        """The action server's `language` slot mapping: the gateway's decision, else the
        conversation followed from its earlier language, the locale and the text."""
        decided = metadata.get("language")
        if decided in LANGUAGES:
            return str(decided)
        locale = metadata.get("locale") if isinstance(metadata.get("locale"), str) else None
        state = LanguageState(conversation.slots.get("language"), language_of_locale(locale))
        return follow_language(state, text, locale).language

    async def _conversations(self, request: web.Request) -> web.Response:
        path = request.raw_path.split("?", 1)[0]
        found = re.fullmatch(r"/conversations/(?P<id>.+?)/tracker(?P<events>/events)?", path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        sender = unquote(found.group("id"))
        if sender.strip(".") == "" or "/" in sender:
            return web.Response(status=404, text="Not Found")
        events_path = bool(found.group("events"))
        if (request.method, events_path) not in (("GET", False), ("POST", True)):
            return web.Response(status=405, text="Method Not Allowed")
        refused = self._authorized(request)
        if refused is not None:
            return refused
        verbosity = request.query.get("include_events", "AFTER_RESTART").upper()
        if verbosity not in VERBOSITIES:
            return _error(400, "BadRequest", "Invalid parameter value for 'include_events'. "
                          f"Should be one of {', '.join(VERBOSITIES)}", {"parameter": "include_events", "in": "query"})
        conversation = self.conversation(sender)
        conversation.start_session(self.model_id)
        if events_path:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "BadRequest", "Failed to validate the events format.")
            events = body if isinstance(body, list) else [body]
            if not events or not all(isinstance(e, dict) and e.get("event") in EVENT_TYPES for e in events):
                return _error(400, "BadRequest", "Failed to validate the events format. "
                              f"For more information about the format visit the docs. Error: {body!r}")
            for event in events:
                fields = {k: v for k, v in event.items() if k != "event"}
                conversation.add(str(event["event"]), self.model_id, **fields)
        return web.json_response(conversation.state(verbosity))
