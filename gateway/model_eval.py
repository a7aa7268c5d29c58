"""How a trained model is judged before it is swapped into running Rasa servers.

The figure is the one the held-out evaluation starts with: of the first messages in the
held-out sets (tests/evaluation/corpus*/first_messages_*.yml, written from shopper personas
by writers who never saw the training data), how many would start the flow the shopper
needs. The model reads each message in the Rasa venv (rasa_project/evaluate_model.py, the
whole NLU pipeline including the situation router, no action server, nothing recorded);
`FLOW_OF_INTENT` turns the intent it settles on into the flow, as the evaluation harness does
from a live tracker.

Standard library and PyYAML only: imported by the Rasa venv's Python 3.10 as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

EVALUATION_DIR = Path(__file__).resolve().parent.parent / "tests" / "evaluation"
HELD_OUT_SETS = {"corpus": "development set", "corpus_fresh": "fresh set"}
LANGUAGES = ("en", "zh")

# The intent Rasa acts on -> the flow it starts (an `ask_*` intent is an FAQ answer on that topic).
FLOW_OF_INTENT = {
    "request_return": "return", "request_exchange": "exchange", "file_complaint": "complaint",
    "check_progress": "progress", "request_human": "human", "greet": "greeting",
    "thanks": "smalltalk", "goodbye": "smalltalk", "bot_challenge": "smalltalk",
    "out_of_scope": "out_of_scope", "nlu_fallback": "out_of_scope",
}


def flow_of_intent(intent: str | None) -> tuple[str, str | None]:
    """(flow, FAQ topic) for an intent; an unknown intent is its own label (never right)."""
    if not intent:
        return "none", None
    if intent.startswith("ask_"):
        return "faq", intent.removeprefix("ask_")
    return FLOW_OF_INTENT.get(intent, intent), None


@dataclass(frozen=True)
class Example:
    held_out_set: str
    language: str
    text: str
    flow: str
    topic: str | None

    def right(self, intent: str | None) -> bool:
        flow, topic = flow_of_intent(intent)
        return flow == self.flow and (flow != "faq" or not self.topic or topic == self.topic)


def examples(base: Path = EVALUATION_DIR) -> Iterator[Example]:
    for held_out_set in HELD_OUT_SETS:
        for language in LANGUAGES:
            path = base / held_out_set / f"first_messages_{language}.yml"
            for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
                yield Example(held_out_set, language, str(entry["text"]), str(entry["flow"]), entry.get("topic"))


@dataclass
class Score:
    """Right / total per (held-out set, language), and the examples one model got wrong."""

    right: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    wrong: list[dict[str, str]] = field(default_factory=list)

    @staticmethod
    def group(example: Example) -> str:
        return f"{example.held_out_set}/{example.language}"

    def add(self, example: Example, intent: str | None) -> None:
        group = self.group(example)
        self.total[group] = self.total.get(group, 0) + 1
        if example.right(intent):
            self.right[group] = self.right.get(group, 0) + 1
        else:
            self.wrong.append({"text": example.text, "expected": example.flow, "intent": str(intent)})

    @property
    def right_total(self) -> int:
        return sum(self.right.values())

    @property
    def examples_total(self) -> int:
        return sum(self.total.values())

    @property
    def accuracy(self) -> float:
        return self.right_total / self.examples_total if self.examples_total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"right": self.right, "total": self.total, "wrong": self.wrong}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Score:
        return cls(dict(data["right"]), dict(data["total"]), list(data.get("wrong", [])))


def no_worse(candidate: Score, current: Score) -> bool:
    """The candidate starts at least as many held-out first messages on the right flow, in all
    and in each language (a gain in English does not pay for a loss in Chinese)."""
    if candidate.total != current.total:
        return False  # not scored on the same examples

    def per_language(score: Score, language: str) -> int:
        return sum(n for group, n in score.right.items() if group.endswith(f"/{language}"))

    return candidate.right_total >= current.right_total and all(
        per_language(candidate, lang) >= per_language(current, lang) for lang in LANGUAGES)


def side_by_side(current: Score, candidate: Score, current_name: str, candidate_name: str) -> Iterable[str]:
    """The figures as a table: one row per held-out set and language, then the total."""
    yield f"{'held-out first messages':28} {'running':>16} {'new':>16} {'change':>7}"
    yield f"{'':28} {current_name[:16]:>16} {candidate_name[:16]:>16}"
    for group in sorted(set(current.total) | set(candidate.total)):
        held_out_set, language = group.split("/")
        label = f"{HELD_OUT_SETS.get(held_out_set, held_out_set)}, {language}"
        old, new = current.right.get(group, 0), candidate.right.get(group, 0)
        total = candidate.total.get(group, current.total.get(group, 0))
        yield f"{label:28} {f'{old}/{total}':>16} {f'{new}/{total}':>16} {new - old:>+7d}"
    yield (f"{'all':28} {f'{current.right_total}/{current.examples_total} {current.accuracy:.1%}':>16} "
           f"{f'{candidate.right_total}/{candidate.examples_total} {candidate.accuracy:.1%}':>16} "
           f"{candidate.right_total - current.right_total:>+7d}")
