"""The FAQ knowledge base (`knowledge_base.yml`), loaded and validated at start."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flows.policies import LANGUAGES, Policies, PolicyError, load_policies, read_yaml_mapping, summary

DEFAULT_PATH = Path(__file__).with_name("knowledge_base.yml")


class KnowledgeError(PolicyError):
    """knowledge_base.yml is malformed."""


@dataclass(frozen=True)
class Entry:
    key: str
    intent: str
    answer: Mapping[str, str] | None  # None: built from the policies
    buttons: tuple[tuple[Mapping[str, str], str], ...] = ()


class KnowledgeBase:
    def __init__(self, entries: Mapping[str, Entry], policies: Policies) -> None:
        self.entries = dict(entries)
        self.policies = policies
        self.by_intent = {e.intent: e for e in entries.values()}

    def intents(self) -> list[str]:
        return list(self.by_intent)

    def answer(self, intent: str, lang: str) -> tuple[str, list[dict[str, str]]] | None:
        entry = self.by_intent.get(intent)
        if entry is None:
            return None
        lang = lang if lang in LANGUAGES else "en"
        text = summary(self.policies, lang) if entry.answer is None else \
            entry.answer[lang].format(**policy_values(self.policies))
        buttons = [{"title": title[lang], "payload": payload} for title, payload in entry.buttons]
        return text, buttons


def policy_values(policies: Policies) -> dict[str, Any]:
    """What an answer may quote from policies.yml as {placeholders}, so its numbers never drift."""
    r = policies.refund
    return {"standard_days": r.standard_days, "fast_hours": r.fast_hours, "pickup_slot": r.pickup_slot,
            "dropoff_days": r.dropoff_days}


def _texts(where: str, value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or any(not isinstance(value.get(lang), str) or not value[lang].strip() for lang in LANGUAGES):
        raise KnowledgeError(f"{where}: needs a text for each of {', '.join(LANGUAGES)}")
    return {lang: value[lang].strip() for lang in LANGUAGES}


def load_knowledge(path: Path = DEFAULT_PATH, policies: Policies | None = None, text: str | None = None) -> KnowledgeBase:
    data = read_yaml_mapping(path, KnowledgeError, "the knowledge base", text)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict) or not data["entries"]:
        raise KnowledgeError(f"{path}: expected an 'entries' mapping with at least one entry")
    entries: dict[str, Entry] = {}
    seen: dict[str, str] = {}
    for key, raw in data["entries"].items():
        where = f"{path}: entry '{key}'"
        if not isinstance(raw, dict):
            raise KnowledgeError(f"{where}: expected a mapping")
        for field_name in raw:
            if field_name not in ("intent", "answer", "buttons"):
                raise KnowledgeError(f"{where}: unknown field '{field_name}' (known: intent, answer, buttons)")
        intent = raw.get("intent")
        if not isinstance(intent, str) or not intent.strip():
            raise KnowledgeError(f"{where}: 'intent' must name the NLU intent that asks this question")
        if intent in seen:
            raise KnowledgeError(f"{where}: intent '{intent}' is already answered by entry '{seen[intent]}'")
        seen[intent] = key
        answer_raw = raw.get("answer")
        answer = None if answer_raw == "from_policies" else _texts(f"{where}: 'answer'", answer_raw)
        for lang, text in (answer or {}).items():
            try:
                text.format(**policy_values(policies or load_policies()))
            except (KeyError, IndexError, ValueError) as exc:
                raise KnowledgeError(f"{where}: 'answer' ({lang}) uses an unknown {{placeholder}}: {exc} "
                                     f"(known: {', '.join(sorted(policy_values(load_policies())))})") from exc
        buttons = []
        for n, b in enumerate(raw.get("buttons") or []):
            bw = f"{where}: button {n + 1}"
            if not isinstance(b, dict) or not isinstance(b.get("payload"), str) or not b["payload"].startswith("/"):
                raise KnowledgeError(f"{bw}: needs a 'payload' like /request_return")
            buttons.append((_texts(f"{bw}: 'title'", b.get("title")), b["payload"]))
        entries[key] = Entry(key=key, intent=intent, answer=answer, buttons=tuple(buttons))
    return KnowledgeBase(entries, policies or load_policies())


if __name__ == "__main__":
    try:
        kb = load_knowledge(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    for intent in kb.intents():
        print(f"{intent}: {kb.answer(intent, 'en')[0].splitlines()[0]}")  # type: ignore[index]
    print(f"{len(kb.entries)} entries: OK")
