"""Replays the held-out corpus (tests/evaluation/corpus/, written from shopper personas by
someone who never saw the training data) against the real stack, the way strangers' clients
talk to it, and judges what a shopper would notice.

Two transports: the Rasa REST contract, where a button press sends only its payload (as
rasa-webchat, Botium and other third-party clients do) and no locale is declared; and the
gateway's own web chat websocket (title and payload, the page's locale, real uploads).

The simulated shopper answers the question the bot is asking from the persona's `answers`
(it reads which slot the form requests from Rasa's tracker: that is what the bot's
question is about, however it is worded). Where the bot offers a button that fits what
the persona wants, half of the dialogues press it; the other half type their words.

Outcomes are read from what the bot did, not from its wording: the cases the flows
recorded for the conversation, the handoff queue, Rasa's tracker (slots, actions).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiohttp
import yaml

from gateway.model_eval import HELD_OUT_SETS, flow_of_intent
from gateway.saved_tests import SLOT_FACT
from tests.ownership_proof import proof_answer

HERE = Path(__file__).parent
# The corpus the bot was developed against, and a fresh one written later by another
# writer and never looked at while tuning (its first-run figures are the honest estimate).
CORPORA = HELD_OUT_SETS
SAVED = "corpus_saved"  # dialogues saved from real conversations (gateway/saved_tests.py)
PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # the bytes do not matter: the flows keep the link as evidence

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_NEUTRAL = re.compile(
    r"https?://\S+|\b[A-Z]{2}-?\d{4,}\b|\b(?:BBC|BBD)-[0-9A-F]+\b|\bEU\s?\d+\b|\bSPF\s?\d+\b|\b\d+\s?(?:ml|g|MB|cm)\b|"
    r"\b(?:Alipay|WeChat Pay|WeChat|Visa|SF Express|INCI|SLS|PDF|JPEG|PNG|WebP|GIF|UTC|ok|OK)\b|[A-Z]{2,}\d+")


# How the evaluator reads a persona's answer into the option they would tap (its own table,
# independent of the bot's): only used to choose a button, never to judge the bot.
INTENDED = {
    "item_opened": [("unopened", ("never", "unworn", "unused", "not worn", "not used", "sealed", "unopened",
                                  "haven't worn", "havent worn", "tags", "in the box", "brand new", "没穿", "没拆",
                                  "未拆", "未使用", "没用", "全新", "没开", "吊牌")),
                    ("opened", ("worn", "wore", "used", "opened", "open", "tried", "穿过", "穿了", "用过", "用了",
                                "拆了", "拆开", "打开", "涂", "抹"))],
    "return_method": [("dropoff", ("drop", "myself", "post office", "locker", "自己", "驿站", "网点", "快递柜")),
                      ("pickup", ("pick", "collect", "courier", "come", "上门", "取", "来拿"))],
    "resolution": [("coupon", ("coupon", "voucher", "券")), ("second_draw", ("draw", "抽")),
                   ("refund", ("refund", "money", "cash", "退款", "退钱", "钱"))],
    "complaint_severity": [("high", ("very serious", "severe", "dangerous", "非常严重", "很严重", "危险")),
                           ("low", ("minor", "not serious", "annoying", "small", "轻微", "还好", "不严重", "小问题")),
                           ("medium", ("serious", "quite", "严重", "比较"))],
}
ACK = re.compile(r"sorry|apolog|understand|frustrat|抱歉|对不起|理解|不好意思|别着急|辛苦", re.IGNORECASE)


def load(kind: str, lang: str, corpus: str = "corpus") -> list[dict[str, Any]]:
    data = yaml.safe_load((HERE / corpus / f"{kind}_{lang}.yml").read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def wrong_language(text: str, lang: str) -> bool:
    """A reply the shopper would read as the other language: Chinese characters for an
    English shopper; Latin words and no Chinese for a Chinese shopper (ids, codes, units and
    brand names are the same in both). A reply in both languages is readable to either."""
    if not text or not text.strip():
        return False
    parts = text.split(" · ") if " · " in text else text.split("\n")
    if len(parts) >= 2 and any(_CJK.search(p) for p in parts) and \
            any(not _CJK.search(p) and re.search(r"[A-Za-z]{3,}", _NEUTRAL.sub(" ", p)) for p in parts):
        return False  # the same thing said in both languages (a greeting before anything said which) (the greeting before anything says which): readable to both
    if lang == "en":
        return bool(_CJK.search(text))
    if _CJK.search(text):
        return False
    words = re.findall(r"[A-Za-z]{3,}", _NEUTRAL.sub(" ", text))
    return len(words) >= 2


def says_language(text: str) -> bool:
    """Whether a shopper's message says which language they write (the evaluator's own
    rule: Chinese characters, or two English words that are not ids): before any message
    does, and without a declared locale, no reply can be in the wrong language."""
    if _CJK.search(text or ""):
        return True
    return len(re.findall(r"[A-Za-z]{2,}", _NEUTRAL.sub(" ", text or ""))) >= 2


@dataclass
class Turn:
    said: str
    replies: list[dict[str, Any]]  # {"text", "buttons": [{"title", "payload"}]}

    @property
    def text(self) -> str:
        return "\n".join(r.get("text") or "" for r in self.replies)

    def shown(self) -> list[str]:
        """Everything the shopper reads: texts and button titles."""
        return [r.get("text") or "" for r in self.replies] + [b["title"] for r in self.replies
                                                               for b in r.get("buttons") or []]

    def buttons(self) -> list[dict[str, str]]:
        return [b for r in self.replies for b in r.get("buttons") or []]


class Transport:
    """One shopper's connection to the gateway."""

    key: str  # the conversation key ("rest:..." / "webchat:...")

    async def say(self, text: str) -> list[dict[str, Any]]: ...

    async def press(self, button: Mapping[str, str]) -> list[dict[str, Any]]: ...

    async def photo(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


class RestShopper(Transport):
    """A third-party client on the Rasa REST contract: text, payload-only presses, no locale."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.sender = f"eval-{uuid.uuid4().hex[:12]}"
        self.key = f"rest:{self.sender}"

    async def _post(self, message: str) -> list[dict[str, Any]]:
        async with self.http.post(f"{self.url}/webhooks/rest/webhook",
                                  json={"sender": self.sender, "message": message}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        return [r for r in body if not r.get("holding")]

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await self._post(text)

    async def press(self, button: Mapping[str, str]) -> list[dict[str, Any]]:
        return await self._post(button["payload"])  # only the payload, as rasa-webchat sends it

    async def photo(self) -> list[dict[str, Any]]:
        # The REST contract carries no files: a shopper pastes a link to the photo.
        return await self._post(f"https://photos.example/{uuid.uuid4().hex[:8]}.jpg")


class WebchatShopper(Transport):
    """The gateway's own web chat: a websocket speaking docs/webchat-protocol.md."""

    def __init__(self, http: aiohttp.ClientSession, url: str, locale: str) -> None:
        self.http = http
        self.url = url
        self.locale = locale
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.token = ""
        self.key = ""

    async def open(self) -> "WebchatShopper":
        self.ws = await self.http.ws_connect(self.url.replace("http", "ws") + "/webchat/ws")
        await self.ws.send_json({"type": "hello", "locale": self.locale})
        frame = await self._frame("session")
        self.token, self.key = frame["token"], f"webchat:{frame['conversation_id']}"
        return self

    async def _frame(self, *types: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, f"socket ended: {msg.type}"
                frame = json.loads(msg.data)
                if frame["type"] in types:
                    return frame  # type: ignore[no-any-return]

    async def _send(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.ws is not None
        frame_id = uuid.uuid4().hex
        await self.ws.send_json({"type": "message", "id": frame_id, **frame})
        replies = [await self._frame("reply", "error")]
        while True:
            try:
                replies.append(await self._frame("reply", "error", timeout=0.7))
            except TimeoutError:
                break
        for r in replies:
            assert r["type"] == "reply", f"error frame: {r}"
        return [r for r in replies if not r.get("holding")]

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await self._send({"text": text})

    async def press(self, button: Mapping[str, str]) -> list[dict[str, Any]]:
        return await self._send({"text": button["title"], "payload": button["payload"]})

    async def photo(self) -> list[dict[str, Any]]:
        form = aiohttp.FormData()
        form.add_field("file", PHOTO, filename="photo.png", content_type="image/png")
        async with self.http.post(f"{self.url}/webchat/upload", data=form,
                                  headers={"X-Webchat-Token": self.token}) as resp:
            assert resp.status == 200, await resp.text()
            uploaded = await resp.json()
        return await self._send({"text": "", "attachments": [uploaded["id"]]})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@dataclass
class Observer:
    """What the bot did, read from where it keeps it (never from its wording)."""

    rasa_url: str
    http: aiohttp.ClientSession
    cases: Callable[[str], Awaitable[list[Any]]]  # conversation key -> the flows' cases, newest first
    handoff: Callable[[str], Awaitable[Any]]  # conversation key -> the handoff record or None

    async def tracker(self, key: str) -> dict[str, Any]:
        async with self.http.get(f"{self.rasa_url}/conversations/{key}/tracker") as resp:
            return await resp.json()  # type: ignore[no-any-return]


def last_turn_events(tracker: Mapping[str, Any]) -> list[dict[str, Any]]:
    events = tracker.get("events") or []
    for i in range(len(events) - 1, -1, -1):
        if events[i].get("event") == "user":
            return events[i:]
    return []


def routed_flow(tracker: Mapping[str, Any]) -> tuple[str, str | None]:
    """The flow the last message started, as (label, FAQ topic): from the intent Rasa acted on
    (the same reading `./aftersales train` scores a model by, gateway/model_eval.py) and the
    actions it ran (an FAQ answer or a handoff whatever the intent)."""
    events = last_turn_events(tracker)
    intent = (events[0].get("parse_data") or {}).get("intent", {}).get("name") if events else None
    actions = [e.get("name") for e in events if e.get("event") == "action"]
    flow, topic = flow_of_intent(intent)
    if flow in ("return", "exchange", "complaint", "progress"):
        return flow, None
    if "action_answer_faq" in actions and intent:
        return "faq", intent.removeprefix("ask_")
    if intent == "request_human" or "action_handoff" in actions:
        return "human", None
    return flow, topic


@dataclass
class FirstResult:
    entry: Mapping[str, Any]
    lang: str
    flow: str
    topic: str | None
    replies: Turn
    wrong_language: list[str]

    @property
    def correct(self) -> bool:
        if self.flow != self.entry["flow"]:
            return False
        return self.entry["flow"] != "faq" or not self.entry.get("topic") or self.topic == self.entry["topic"]

    @property
    def acknowledged(self) -> bool:
        """An acknowledgement, before any question."""
        text = self.replies.text
        found = ACK.search(text)
        question = re.search(r"[?？]", text)
        return bool(found) and (question is None or found.start() < question.start())


async def first_message(transport: Transport, observer: Observer, entry: Mapping[str, Any], lang: str) -> FirstResult:
    try:
        replies = Turn(entry["text"], await transport.say(entry["text"]))
        flow, topic = routed_flow(await observer.tracker(transport.key))
    finally:
        await transport.close()
    known = isinstance(transport, WebchatShopper) or says_language(entry["text"])
    wrong = [t for t in replies.shown() if known and wrong_language(t, lang)]
    return FirstResult(entry, lang, flow, topic, replies, wrong)


@dataclass
class DialogueResult:
    dialogue: Mapping[str, Any]
    lang: str
    transport: str
    turns: list[Turn] = field(default_factory=list)
    outcome: str = "none"
    handoff: bool = False
    handoff_reason: str | None = None
    decided_at: int | None = None  # shopper turns (interjections not counted) until the decision
    proof_turns: int = 0  # of those, the turns that proved the order is the shopper's (not signed in)
    wrong_language: list[str] = field(default_factory=list)
    interjections_ok: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def expected(self) -> Mapping[str, Any]:
        return self.dialogue["expect"]

    @property
    def correct(self) -> bool:
        want = self.expected["outcome"]
        outcome_ok = self.outcome == want or (want == "handoff" and self.handoff)
        if want == "swap":
            outcome_ok = self.outcome in ("swap", "exchange")
        handoff_ok = self.handoff if self.expected.get("handoff") else \
            (not self.handoff or self.handoff_reason == "repeated_complaint")
        return outcome_ok and handoff_ok and self.interjections_ok

    def transcript(self) -> str:
        lines = []
        for t in self.turns:
            lines.append(f"  > {t.said}")
            lines.extend(f"    < {line}" for line in t.text.splitlines() if line.strip())
        return "\n".join(lines)


def intended_option(slot: str, answer: str) -> str | None:
    for option, words in INTENDED.get(slot, ()):
        if any(w in answer.lower() for w in words):
            return option
    return None


def pick_button(slot: str, answer: str, buttons: Sequence[Mapping[str, str]]) -> Mapping[str, str] | None:
    """The button this shopper would tap for `answer`, if one plainly fits."""
    option = intended_option(slot, answer)
    for b in buttons:
        payload = b["payload"]
        if option and payload.startswith("/choose") and f'"{option}"' in payload:
            return b
        if slot == "resolution" and option is None and any(w in answer.lower() for w in ("exchange", "swap", "换")) \
                and payload.startswith("/request_exchange"):
            return b
        if any(w in answer.lower() for w in ("person", "human", "someone", "agent", "人工", "真人", "客服")) \
                and payload == "/request_human":
            return b
    title_match = [b for b in buttons if b["title"].strip().lower() == answer.strip().lower()]
    return title_match[0] if title_match else None


ACCEPTED_KINDS = {"replacement": "replacement", "exchange": "exchange", "compensation": "compensation",
                  "complaint": "complaint"}


def outcome_of(cases: Sequence[Any], tracker: Mapping[str, Any], saw_refusal: bool) -> str:
    """What the bot settled, from the flows' cases and Rasa's tracker."""
    for case in cases:  # newest first
        if case.kind == "return":
            if case.status == "refused":
                return "refused"
            if case.status in ("refund_approved", "expert_assigned"):
                return "fast_refund"
            return "refund"
        if case.kind == "exchange":
            return "swap" if case.details.get("category") == "blind_box" else "exchange"
        if case.kind == "compensation":
            return str(case.details.get("compensation") or "compensation")
        if case.kind in ACCEPTED_KINDS:
            return ACCEPTED_KINDS[case.kind]
    slots = tracker.get("slots") or {}
    actions = [e.get("name") for e in tracker.get("events") or [] if e.get("event") == "action"]
    if slots.get("last_outcome") == "refused" or saw_refusal:
        return "refused"
    if "action_show_progress" in actions:
        return "progress"
    if "action_answer_faq" in actions:
        return "faq"
    return "none"


REFUSAL = re.compile(r"can't|cannot|isn't possible|not possible|sold out|out of stock|no other option|"
                     r"无法|不能|不支持|缺货|售罄|没有其他", re.IGNORECASE)


async def dialogue(transport: Transport, observer: Observer, d: Mapping[str, Any], lang: str, prefer_buttons: bool,
                   name: str, max_turns: int = 12) -> DialogueResult:
    result = DialogueResult(d, lang, name)
    answers: Mapping[str, Any] = d.get("answers") or {}
    interjections = {int(i["after"]): i for i in d.get("interjections") or []}
    asked: dict[str, int] = {}
    used: set[str] = set()
    shopper_turns = 0
    saw_refusal = False

    known = isinstance(transport, WebchatShopper)  # the page declares its locale; REST clients declare none

    async def record(said: str, replies: list[dict[str, Any]]) -> Turn:
        nonlocal saw_refusal, known
        known = known or says_language(said)
        turn = Turn(said, replies)
        result.turns.append(turn)
        result.wrong_language += [t for t in turn.shown() if known and wrong_language(t, lang)]
        saw_refusal = saw_refusal or bool(REFUSAL.search(turn.text))
        return turn

    try:
        turn = await record(d["opening"], await transport.say(d["opening"]))
        shopper_turns = 1
        while len(result.turns) < max_turns:
            tracker = await observer.tracker(transport.key)
            if result.decided_at is None and await _decided(observer, transport.key, tracker):
                result.decided_at = shopper_turns
            elif result.decided_at is None and slot_asked(tracker) == "order_proof":
                result.proof_turns += 1  # the next turn answers "is this order yours?"
            if await observer.handoff(transport.key) is not None:
                break
            if shopper_turns in interjections:
                extra = interjections.pop(shopper_turns)
                t = await record(extra["text"], await transport.say(extra["text"]))
                after = await observer.tracker(transport.key)
                ran = [e.get("name") for e in last_turn_events(after) if e.get("event") == "action"]
                if extra.get("expect") == "faq" and "action_answer_faq" not in ran:
                    result.interjections_ok = False
                    result.problems.append(f"interjection {extra['text']!r} not answered as a question: {ran}")
                if extra.get("expect") == "acknowledge" and not ACK.search(t.text):
                    result.interjections_ok = False
                    result.problems.append(f"no acknowledgement of {extra['text']!r}")
                continue
            loop = (tracker.get("active_loop") or {}).get("name")
            slot = (tracker.get("slots") or {}).get("requested_slot")
            if not loop or not slot:
                # The flow ended. A shopper offered other options (a refusal's alternatives)
                # answers with what they want instead, once; otherwise the conversation is over.
                remedy = answers.get("remedy")
                if remedy and "remedy" not in used and turn.buttons():
                    used.add("remedy")
                    button = pick_button("resolution", str(remedy), turn.buttons()) if prefer_buttons else None
                    turn = await record(*(await _answer(transport, button, str(remedy))))
                    shopper_turns += 1
                    continue
                break
            asked[slot] = asked.get(slot, 0) + 1
            fact_key = SLOT_FACT.get(slot, slot)
            answer = answers.get(fact_key)
            if fact_key == "case" and answer is None:
                answer = answers.get("order")  # a shopper without the case number gives the order number
            if fact_key == "proof" and answer is None:
                answer = proof_answer(turn.text, lang)  # the buyer knows their phone's last four digits
            used.add(fact_key)
            if asked[slot] == 2 and slot == "new_variant" and answers.get("remedy"):
                answer = answers["remedy"]  # what the shopper says once their first choice is not possible
            elif asked[slot] >= 3 or (asked[slot] == 2 and slot != "new_variant"):
                result.problems.append(f"asked {slot} again after {answer!r}")
                if asked[slot] >= 3:
                    break
            if fact_key == "photo":
                if answer:
                    turn = await record("[photo]", await transport.photo())
                else:
                    turn = await record("no photo", await transport.say("no photo sorry" if lang == "en" else "没有照片"))
            else:
                if answer is None:
                    answer = {"item": "the first one" if lang == "en" else "第一个",
                              "return_method": "pick up" if lang == "en" else "上门取件",
                              "severity": "quite serious" if lang == "en" else "比较严重"}.get(
                        fact_key, "I'm not sure" if lang == "en" else "不知道")
                answer = str(answer)
                button = pick_button(slot, answer, turn.buttons()) if prefer_buttons else None
                turn = await record(*(await _answer(transport, button, answer)))
            shopper_turns += 1
        tracker = await observer.tracker(transport.key)
        if result.decided_at is None and await _decided(observer, transport.key, tracker):
            result.decided_at = shopper_turns
        record_ = await observer.handoff(transport.key)
        result.handoff = record_ is not None
        result.handoff_reason = getattr(record_, "reason", None)
        result.outcome = outcome_of(await observer.cases(transport.key), tracker, saw_refusal)
        if result.outcome == "none" and result.handoff:
            result.outcome = "handoff"
    finally:
        await transport.close()
    return result


async def _answer(transport: Transport, button: Mapping[str, str] | None, text: str) -> tuple[str, list[dict[str, Any]]]:
    """Tap `button` if given, else type `text`: (what the transcript shows, the replies)."""
    if button is not None:
        return f"[{button['title']}]", await transport.press(button)
    return text, await transport.say(text)


async def _decided(observer: Observer, key: str, tracker: Mapping[str, Any]) -> bool:
    """The policy decision has been told: a case exists, a refusal was recorded, or the bot
    said the return is accepted and only asks how to send it back."""
    slots = tracker.get("slots") or {}
    if slots.get("last_outcome") or await observer.cases(key):
        return True
    return slots.get("requested_slot") == "return_method"


def slot_asked(tracker: Mapping[str, Any]) -> str | None:
    if not (tracker.get("active_loop") or {}).get("name"):
        return None
    slot = (tracker.get("slots") or {}).get("requested_slot")
    return slot if isinstance(slot, str) else None


def median_turns(results: Sequence[DialogueResult], without_proof: bool = False) -> float | None:
    """Median shopper turns to the decision; `without_proof`: not counting the turn a shopper
    who is not signed in spends proving the order is theirs."""
    decided = [r.decided_at - (r.proof_turns if without_proof else 0) for r in results if r.decided_at is not None
               and r.expected["outcome"] in ("refund", "fast_refund", "replacement", "exchange", "swap", "coupon",
                                              "second_draw", "refused")]
    return statistics.median(decided) if decided else None
