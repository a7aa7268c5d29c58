"""How a test shopper who is not signed in answers "prove the order is yours": with the demo
order's phone ending, as the buyer would (flows/demo_data.py). Tests about a policy branch
use it so that each branch stays one readable script; tests/flows/test_ownership.py and
tests/flows/test_flows_e2e.py's ownership tests check the question itself."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from flows import demo_data
from flows.texts import load_texts

_ORDER = re.compile(r"AS\d{5}")
_CASE = re.compile(r"\b(?:RT|EX|TK|RP|CP)-\d{6}\b")


@lru_cache(maxsize=1)
def _openings() -> tuple[str, ...]:
    """The first words of the proof questions, in both languages."""
    t = load_texts()
    out = []
    for lang in ("en", "zh"):
        out.append(t("ask.order_proof", lang, order="\x00").split("\x00")[0][:12])
        out.append(t("ask.order_proof.case", lang, ref="\x00").split("\x00")[0][:12])
    return tuple(out)


def is_proof_question(text: str) -> bool:
    return any(opening in text for opening in _openings())


def proof_answer(text: str, lang: str | None = None) -> str | None:
    """What the buyer types to the proof question in `text` (in `lang`, else the question's
    language); None when `text` asks none."""
    if not is_proof_question(text):
        return None
    if lang is None:
        lang = "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
    number = None
    case = _CASE.search(text)
    if case:
        number = next((c["order_number"] for c in demo_data.CASES if c["id"] == case.group(0)), None)
    else:
        found = _ORDER.findall(text)
        number = found[-1] if found else None
    if number is None:
        return None
    last_four, _ = demo_data.proof_of(number)
    return f"尾号{last_four}" if lang == "zh" else f"it ends in {last_four}"


class Proving:
    """Wraps a test shopper (tests/evaluation/harness.py transports): when a reply asks "is
    this order yours?", answers it as the buyer would and returns what followed instead."""

    def __init__(self, shopper: Any) -> None:
        self.shopper = shopper
        self.key: str = shopper.key

    async def _then(self, replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = proof_answer("\n".join(r.get("text") or "" for r in replies))
        return replies if answer is None else await self.shopper.say(answer)

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await self._then(await self.shopper.say(text))

    async def press(self, button: Mapping[str, str]) -> list[dict[str, Any]]:
        return await self._then(await self.shopper.press(button))

    async def photo(self) -> list[dict[str, Any]]:
        return await self._then(await self.shopper.photo())

    async def close(self) -> None:
        await self.shopper.close()
