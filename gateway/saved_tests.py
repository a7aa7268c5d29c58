"""Every bad conversation becomes a test: a real conversation, read from Rasa's tracker, is
turned into an evaluation dialogue with the outcome the designer marks as right, and into a
Rasa test story.

The dialogue has the held-out corpus' shape (tests/evaluation/corpus*/dialogues_<lang>.yml):
the shopper's first message is the `opening`; each later message that answered a question
of a form (its turn filled the slot asked for) becomes the `answers` entry of what was asked
(order, reason, opened, ...), in the shopper's own words; any other message (a question in
the middle of the form, a remark) is an `interjection` after that many turns. The evaluation harness replays it against the real
stack as a shopper would and checks the marked outcome, so a fixed bot passes it and a
regression fails it. The proof of ownership is not kept (the harness gives the right one).

Written to `SAVED_TESTS_DIR` (default: `tests/evaluation/corpus_saved` in the checkout),
which `./aftersales test` replays (tests/evaluation/test_saved.py); the Rasa test story goes
to its `stories/` folder (`rasa test --stories <that folder>` in rasa_project/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

# A form's requested slot -> the fact a shopper gives (the corpus' `answers` keys).
SLOT_FACT = {"order_number": "order", "item_sku": "item", "return_reason": "reason", "item_opened": "opened",
             "photo_url": "photo", "resolution": "remedy", "return_method": "return_method",
             "new_variant": "wanted", "complaint_category": "complaint_about",
             "complaint_description": "description", "complaint_photo": "photo",
             "complaint_severity": "severity", "case_reference": "case", "order_proof": "proof"}
# What a designer may mark as the right outcome (tests/evaluation/harness.py `outcome_of`).
OUTCOMES = ("refund", "fast_refund", "refused", "exchange", "swap", "replacement", "compensation", "complaint",
            "coupon", "second_draw", "progress", "faq", "handoff", "none")
ATTACHMENT_PAYLOAD = "/share_attachment"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")


class SaveTestError(ValueError):
    """The conversation cannot become a test as asked (shown to the designer as it is)."""


@dataclass(frozen=True)
class SavedTest:
    dialogue: dict[str, Any]
    language: str
    story: str


def _user_said(event: Mapping[str, Any]) -> str:
    """What the shopper said: the button's title when a button was pressed, else the text."""
    metadata = event.get("metadata") or {}
    text = str(event.get("text") or "")
    if text.startswith("/") and isinstance(metadata.get("title"), str) and metadata["title"]:
        return str(metadata["title"])
    return text


def dialogue_from_events(events: Sequence[Mapping[str, Any]], outcome: str, handoff: bool, name: str,
                         note: str = "") -> tuple[dict[str, Any], str]:
    """The evaluation dialogue and its language, from a tracker's events."""
    if outcome not in OUTCOMES:
        raise SaveTestError(f"unknown outcome {outcome!r}; one of: {', '.join(OUTCOMES)}")
    if not _NAME.match(name):
        raise SaveTestError(f"test name {name!r}: lower-case letters, digits and '-', at most 61")
    requested: str | None = None
    loop: str | None = None
    opening: str | None = None
    answers: dict[str, Any] = {}
    interjections: list[dict[str, Any]] = []
    turns = 0
    language = "en"
    def fills(start: int, slot: str) -> bool:
        """Whether the turn of the user event at `start` set `slot` (it answered the question)."""
        for later in events[start + 1:]:
            if later.get("event") == "user":
                return False
            if later.get("event") == "slot" and later.get("name") == slot and later.get("value") is not None:
                return True
        return False

    for index, event in enumerate(events):
        kind = event.get("event")
        if kind == "slot" and event.get("name") == "requested_slot":
            requested = event.get("value") if isinstance(event.get("value"), str) else None
        elif kind == "active_loop":
            loop = event.get("name") if isinstance(event.get("name"), str) else None
            if loop is None:
                requested = None
        elif kind == "user":
            metadata = event.get("metadata") or {}
            if metadata.get("language") in ("en", "zh"):
                language = str(metadata["language"])
            said = _user_said(event)
            has_files = bool(metadata.get("attachments")) or said == ATTACHMENT_PAYLOAD
            if opening is None:
                opening = said
                turns = 1
                continue
            fact = SLOT_FACT.get(requested or "") if loop and requested and fills(index, requested) else None
            if fact in ("photo",) and has_files:
                answers["photo"] = True
            elif fact == "proof":
                pass  # the harness answers with the order's real proof
            elif fact is not None:
                answers.setdefault(fact, said)
            else:
                interjections.append({"after": turns, "text": said})
                continue
            turns += 1
    if opening is None:
        raise SaveTestError("the conversation has no shopper message")
    dialogue: dict[str, Any] = {"id": name, "persona": note or "saved from a real conversation", "opening": opening}
    if answers:
        dialogue["answers"] = answers
    if interjections:
        dialogue["interjections"] = interjections
    dialogue["expect"] = {"outcome": outcome, "handoff": handoff}
    return dialogue, language


def rasa_test_story(events: Sequence[Mapping[str, Any]], name: str) -> str:
    """A Rasa test story of the conversation: the shopper's words with their intents, the
    bot's actions, the forms and slots they set (what `rasa test` checks)."""
    steps: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        if kind == "user":
            intent = (event.get("parse_data") or {}).get("intent", {}).get("name")
            text = str(event.get("text") or "")
            if text.startswith("/") or not intent:
                steps.append({"intent": intent or text.lstrip("/").split("{")[0]})
            else:
                steps.append({"user": text, "intent": intent})
        elif kind == "action" and event.get("name") not in (None, "action_listen", "action_session_start"):
            steps.append({"action": event["name"]})
        elif kind == "active_loop":
            steps.append({"active_loop": event.get("name")})
        elif kind == "slot" and event.get("name") not in ("requested_slot", "session_started_metadata"):
            steps.append({"slot_was_set": [{str(event.get("name")): event.get("value")}]})
    body = {"version": "3.1", "stories": [{"story": f"saved: {name}", "steps": steps}]}
    return yaml.safe_dump(body, allow_unicode=True, sort_keys=False)


def build(tracker: Mapping[str, Any], outcome: str, handoff: bool, name: str, note: str = "") -> SavedTest:
    events = list(tracker.get("events") or [])
    dialogue, language = dialogue_from_events(events, outcome, handoff, name, note)
    return SavedTest(dialogue, language, rasa_test_story(events, name))


def write(saved: SavedTest, tests_dir: Path, stories_dir: Path | None) -> list[Path]:
    """Append the dialogue to `<tests_dir>/dialogues_<lang>.yml` (an existing test of the same
    name is replaced) and write the story; the files written."""
    tests_dir.mkdir(parents=True, exist_ok=True)
    path = tests_dir / f"dialogues_{saved.language}.yml"
    existing: list[dict[str, Any]] = []
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if not isinstance(loaded, list):
            raise SaveTestError(f"{path} is not a list of dialogues")
        existing = [d for d in loaded if isinstance(d, dict) and d.get("id") != saved.dialogue["id"]]
    header = ("# Dialogues saved from real conversations (./aftersales save-test or the console's\n"
              "# 'Save as test'), replayed by tests/evaluation/test_saved.py. Edit the outcome if needed.\n")
    path.write_text(header + yaml.safe_dump([*existing, saved.dialogue], allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    written = [path]
    if stories_dir is not None:
        stories_dir.mkdir(parents=True, exist_ok=True)
        story = stories_dir / f"test_saved_{saved.dialogue['id']}.yml"
        story.write_text(saved.story, encoding="utf-8")
        written.append(story)
    return written
