"""Reading the whole message: every fact a shopper's text carries, in either language.

`Reader.read(text)` returns `Facts`: the order number (any common format, full width
included), a case id, what happened (a return reason of policies.yml, unless negated:
"not broken"), the opened/unused state, whether a size, colour or figure is named, health
or legal words, how the shopper feels (understanding.yml `tones`), what they ask for
(`wants`) and which general question they ask (`questions`). Pure and fast: the Rasa
server's situation router and the action server's forms read messages with the same code.

Check how a message is read:  .venv/bin/python -m flows.reading "the cream leaked, AS10006"
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from bot.i18n import LANGUAGES
from flows import parsing
from flows.policies import Policies, PolicyError, load_policies, read_yaml_mapping

DEFAULT_PATH = Path(__file__).with_name("understanding.yml")
TONES = ("angry", "distressed", "waiting", "repeat", "corrected")
SITUATIONS = ("delivery", "service", "shopping", "unrelated")
WANTS = ("exchange", "refund", "progress", "followup", "person", "complaint")
ANSWERED = ("resolution", "return_method", "complaint_severity")

Keywords = Mapping[str, Sequence[str]]


class UnderstandingError(PolicyError):
    """understanding.yml is malformed."""


@dataclass(frozen=True)
class Understanding:
    tones: Mapping[str, Keywords]
    wants: Mapping[str, Keywords]
    situations: Mapping[str, Keywords]
    questions: Mapping[str, Keywords]  # knowledge-base intent -> keywords
    negations: Keywords
    greetings: Keywords
    hypothetical: Keywords
    product_ok: Keywords
    packaging: Keywords
    answers: Mapping[str, Mapping[str, Keywords]]  # question -> option -> keywords

    def answer(self, question: str, text: str, allowed: Sequence[str] | None = None) -> str | None:
        """The option of a multiple-choice question (`answers` in understanding.yml) that `text` says."""
        return parsing.best_keyword_match(text, self.answers.get(question, {}), allowed=allowed)


@dataclass(frozen=True)
class Facts:
    """What one message says, beyond its intent."""

    text: str
    order_number: str | None = None
    case_id: str | None = None
    reason: str | None = None  # a key of policies.yml `reasons`
    reason_word: str | None = None  # the keyword that said it
    opened: str | None = None  # "opened" | "unopened", only when said in so many words
    names_variant: bool = False  # a size, volume or colour is named ("44", "棕色", "50 ml")
    severe: bool = False  # health or legal words: a person must look at it, fast
    tones: frozenset[str] = frozenset()
    wants: frozenset[str] = frozenset()
    situations: frozenset[str] = frozenset()  # delivery, service, shopping, unrelated
    hypothetical: bool = False  # "what if ...", "如果……的话": a general question, not the shopper's own case
    product_ok: bool = False  # "the shoes look fine": any damage was to the parcel
    question: str | None = None  # knowledge-base intent of a general question
    is_question: bool = False
    greeting_only: bool = False  # nothing but a greeting or a filler
    greeting_first: bool = False  # starts with a greeting or a filler ("hi there! my ...", "ok so ...")
    substantial: bool = False  # enough words to describe a problem

    @property
    def concrete(self) -> bool:
        """About the shopper's own order: a reason, an order number or a case id."""
        return bool(self.reason or self.order_number or self.case_id)

    @property
    def has_problem(self) -> bool:
        """Something happened to the product (not merely a change of mind or size)."""
        return self.reason is not None and self.reason not in ("changed_mind", "wrong_size")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "text" or value in (None, False, frozenset()):
                continue
            out[key] = sorted(value) if isinstance(value, frozenset) else value
        return out


def _keywords(where: str, raw: Any) -> Keywords:
    if not isinstance(raw, dict):
        raise UnderstandingError(f"{where}: expected keywords per language ({', '.join(LANGUAGES)})")
    out: dict[str, tuple[str, ...]] = {}
    for lang, words in raw.items():
        if lang not in LANGUAGES:
            raise UnderstandingError(f"{where}: unknown language '{lang}'")
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise UnderstandingError(f"{where}.{lang}: expected a list of non-empty strings")
        out[lang] = tuple(parsing.normalize(w) for w in words)
    return out


def _group(path: Path, data: Mapping[str, Any], name: str, known: Sequence[str] | None = None) -> dict[str, Keywords]:
    raw = data.get(name)
    if not isinstance(raw, dict) or not raw:
        raise UnderstandingError(f"{path}: '{name}' must be a mapping")
    if known is not None:
        unknown = set(raw) - set(known)
        if unknown:
            raise UnderstandingError(f"{path}: {name}: unknown key(s) {', '.join(sorted(unknown))} "
                                     f"(known: {', '.join(known)})")
    return {key: _keywords(f"{path}: {name}.{key}", value) for key, value in raw.items()}


def load_understanding(path: Path = DEFAULT_PATH, text: str | None = None) -> Understanding:
    data = read_yaml_mapping(path, UnderstandingError, "keyword groups", text)
    return Understanding(
        tones=_group(path, data, "tones", TONES), wants=_group(path, data, "wants", WANTS),
        situations=_group(path, data, "situations", SITUATIONS),
        questions=_group(path, data, "questions"),
        negations=_keywords(f"{path}: negations", data.get("negations")),
        greetings=_keywords(f"{path}: greetings", data.get("greetings")),
        hypothetical=_keywords(f"{path}: hypothetical", data.get("hypothetical")),
        product_ok=_keywords(f"{path}: product_ok", data.get("product_ok")),
        packaging=_keywords(f"{path}: packaging", data.get("packaging")),
        answers={question: _group(path, data["answers"], question) if isinstance(data.get("answers"), dict)
                 else {} for question in ANSWERED},
    )


_ALL_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_BARE_ORDER = re.compile(r"(?:order|ord|no\.?|number|#|订单号?|单号)\s*[:：#]?\s*(\d{5})(?!\d)", re.IGNORECASE)


class Reader:
    """Reads messages with the policies' reasons and understanding.yml."""

    def __init__(self, policies: Policies | None = None, understanding: Understanding | None = None) -> None:
        self.policies = policies or load_policies()
        self.understanding = understanding or load_understanding()
        self._reasons = {key: {lang: tuple(parsing.normalize(w) for w in words) for lang, words in r.keywords.items()}
                         for key, r in self.policies.reasons.items()}
        self._severe = self.policies.complaints.severe_keywords

    def order_number(self, text: str) -> str | None:
        """AS10006, as 10006, AS-10006, ＡＳ１０００６, "order #10006", "订单号10006"."""
        found = parsing.find_order_number(text)
        if found:
            return found
        bare = _BARE_ORDER.search(parsing.normalize(text))
        return parsing.find_order_number(f"{parsing.order_prefix()}{bare.group(1)}") if bare else None

    def reason(self, text: str) -> str | None:
        return self.reason_and_word(text)[0]

    def reason_and_word(self, text: str) -> tuple[str | None, str | None]:
        """The return reason the text describes; a negated keyword ("not broken") does not count."""
        t = parsing.normalize(text)
        scored: list[tuple[int, str, str]] = []
        for key, keywords in self._reasons.items():
            best, found = 0, ""
            for words in keywords.values():
                for word in words:
                    weight = len(word) * (3 if parsing.has_chinese(word) else 1)
                    if weight > best and self._affirmed(t, word):
                        best, found = weight, word
            if best:
                scored.append((best, key, found))
        if not scored:
            return None, None
        scored.sort(key=lambda s: -s[0])
        return scored[0][1], scored[0][2]

    def _affirmed(self, text: str, keyword: str) -> bool:
        """`keyword` occurs in `text` at least once without a negation right before it."""
        chinese = parsing.has_chinese(keyword)
        pattern = re.compile(re.escape(keyword)) if chinese else parsing.latin_pattern(keyword)
        for match in pattern.finditer(text):
            before = text[max(0, match.start() - 12):match.start()]
            if chinese:
                asks = before.endswith(("是不是", "是否", "会不会", "有没有"))  # a question, not a negation
                if not asks and any(before.endswith(n) or before.endswith(n + "有")
                                    for n in self.understanding.negations.get("zh", ())):
                    continue
            else:
                words = re.findall(r"[a-z]+", before)[-3:]
                if any(w in self.understanding.negations.get("en", ()) for w in words):
                    continue
            return True
        return False

    def _any(self, text: str, keywords: Keywords) -> bool:
        return parsing.keyword_score(text, keywords) > 0

    def _said(self, text: str, keywords: Keywords) -> bool:
        """Any keyword said and not negated ("not an exchange", "不想换")."""
        return any(self._affirmed(text, w) for words in keywords.values() for w in words)

    def _product_ok(self, text: str) -> bool:
        """A clause says something is fine, and that something is not the packaging."""
        u = self.understanding
        for clause in re.split(r"[,.;!?，。；！？]|\bbut\b|但|不过|倒是|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])", text):
            if self._any(clause, u.product_ok) and not self._any(clause, u.packaging):
                return True
        return False

    def read(self, text: str) -> Facts:
        if not text or text.lstrip().startswith("/"):
            return Facts(text=text or "")
        u = self.understanding
        t = parsing.normalize(text)
        reason, reason_word = self.reason_and_word(text)
        tones = {tone for tone, words in u.tones.items() if self._any(t, words)}
        words = re.findall(r"[a-z]+|[\u4e00-\u9fff]{2,}", t)
        if len(_ALL_CAPS_WORD.findall(text)) >= 2 or any(m in text for m in ("!!", "！！", "??", "？？", "?!", "？！")) \
                or re.fullmatch(r"\s*[A-Z]{4,}[.!]*\s*", text) or (len(words) >= 2 and len(set(words)) == 1):
            tones.add("angry")  # shouting, a pile of marks, "HUMAN", "人工 人工 人工"
        question = parsing.is_question(text) or t.rstrip().endswith(("?", "？"))
        topic = None
        if question:
            scored = [(parsing.keyword_score(t, words), intent) for intent, words in u.questions.items()]
            scored = [s for s in scored if s[0] > 0]
            topic = max(scored)[1] if scored else None
        rest = t
        for greeting_words in u.greetings.values():
            for word in sorted(greeting_words, key=len, reverse=True):
                rest = re.sub(rf"(?<![a-z]){re.escape(word)}(?![a-z])" if not parsing.has_chinese(word)
                              else re.escape(word), " ", rest)
        rest = re.sub(r"[\s,.!?，。！？~～…:;、\-]+", " ", rest).strip()
        first = re.split(r"[\s,.!?，。！？~～…]+", t.strip(), maxsplit=1)[0]
        return Facts(
            text=text,
            order_number=self.order_number(text),
            case_id=parsing.find_case_id(text),
            reason=reason,
            reason_word=reason_word,
            opened=parsing.parse_opened(text, strict=True),
            names_variant=parsing.mentions_variant(text),
            severe=self._any(t, self._severe),
            tones=frozenset(tones),
            wants=frozenset(w for w, words in u.wants.items() if self._said(t, words)),
            situations=frozenset(k for k, words in u.situations.items() if self._any(t, words)),
            hypothetical=self._any(t, u.hypothetical),
            product_ok=self._product_ok(t),
            question=topic,
            is_question=question,
            greeting_only=not rest,
            greeting_first=any(first == g or (parsing.has_chinese(g) and t.startswith(g))
                               for words in u.greetings.values() for g in words),
            substantial=parsing.text_is_substantial(text),
        )


if __name__ == "__main__":
    try:
        reader = Reader()
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    for message in sys.argv[1:] or ["the vitamin c cream leaked all over everything, order as 10006"]:
        print(f"{message!r}: {reader.read(message).to_dict()}")
