"""The held-out evaluation: conversations written from shopper personas by someone who never
saw rasa_project/data (tests/evaluation/corpus/, never copied into training data), replayed
against the real gateway, Rasa and action server.

Printed at the end of the run (tests/conftest.py `report`): first-message routing accuracy
per language and category; dialogues reaching the policy outcome in the shopper's language,
per transport; wrong-language replies; median shopper turns to a decided return or
exchange. The development set (347 first messages, 136 dialogues) is held to the targets
of the conversation issue: >= 95 % routing per language, >= 95 % dialogues right, 0
wrong-language replies, median <= 3 turns (not counting the one turn in which a shopper who
is not signed in proves the order is theirs; both figures are printed). The second set was fresh for its first run
(figures in the issue's closing note) and has been looked at since; it guards against
regressions at >= 90 % (wrong language still 0, turns still <= 3).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import aiohttp
import pytest

from flows.cases import CaseStore
from handoff import HANDOFF_KEY
from tests.conftest import RunningGateway, report
from tests.evaluation import harness

pytestmark = pytest.mark.e2e

LANGS = ("en", "zh")
TARGETS = {"corpus": 0.95, "corpus_fresh": 0.90}  # routing and dialogues right, per language
TURNS_TARGET = 3
CONCURRENCY = 6
T = TypeVar("T")


async def bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int = CONCURRENCY) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


def observer(gateway: RunningGateway, http: aiohttp.ClientSession) -> harness.Observer:
    store = CaseStore(Path(os.environ["FLOWS_DB_PATH"]))
    handoffs = gateway.app[HANDOFF_KEY].store
    return harness.Observer(rasa_url=gateway.settings.rasa_url, http=http,
                            cases=lambda key: store.for_conversation(key, 10), handoff=handoffs.get)


def pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.1%})" if whole else "0/0"


@pytest.mark.parametrize("corpus", harness.CORPORA)
async def test_first_messages_start_the_flow_the_shopper_needs(gateway: RunningGateway, corpus: str) -> None:
    async with aiohttp.ClientSession() as http:
        obs = observer(gateway, http)
        jobs = [lambda e=e, lang=lang: harness.first_message(harness.RestShopper(http, gateway.url), obs, e, lang)
                for lang in LANGS for e in harness.load("first_messages", lang, corpus)]
        results = await bounded(jobs)
    misses: list[str] = []
    short: list[str] = []
    for lang in LANGS:
        mine = [r for r in results if r.lang == lang]
        right = [r for r in mine if r.correct]
        by_category: dict[str, Counter[str]] = defaultdict(Counter)
        for r in mine:
            by_category[r.entry.get("category") or "none"]["all"] += 1
            by_category[r.entry.get("category") or "none"]["right"] += r.correct
        toned = [r for r in mine if r.entry.get("tone") or r.entry.get("escalate")]
        report(f"First messages {lang} ({harness.CORPORA[corpus]}): routed right {pct(len(right), len(mine))}; by category "
               + ", ".join(f"{c} {v['right']}/{v['all']}" for c, v in sorted(by_category.items()))
               + f"; acknowledged before any question {pct(sum(r.acknowledged for r in toned), len(toned))}"
               f"; wrong-language replies {sum(len(r.wrong_language) for r in mine)}")
        misses += [f"{lang}: {r.entry['text']!r}: want {r.entry['flow']}/{r.entry.get('topic')}, got {r.flow}/{r.topic}"
                   for r in mine if not r.correct]
        misses += [f"{lang}: {r.entry['text']!r}: no acknowledgement in {r.replies.text[:120]!r}"
                   for r in toned if not r.acknowledged]
        if len(right) < TARGETS[corpus] * len(mine):
            short.append(f"{lang}: {len(right)}/{len(mine)} routed right")
    assert not short, "\n".join(short + misses)
    wrong = [(r.entry["text"], r.wrong_language) for r in results if r.wrong_language]
    assert not wrong, wrong
    toned = [r for r in results if r.entry.get("tone") or r.entry.get("escalate")]
    assert sum(r.acknowledged for r in toned) >= 0.9 * len(toned), "\n".join(misses)


async def _dialogues(gateway: RunningGateway, transport: str, corpus: str) -> list[harness.DialogueResult]:
    async with aiohttp.ClientSession() as http:
        obs = observer(gateway, http)

        async def one(d: dict[str, Any], lang: str, index: int) -> harness.DialogueResult:
            if transport == "rest":
                shopper: harness.Transport = harness.RestShopper(http, gateway.url)
            else:
                shopper = await harness.WebchatShopper(http, gateway.url, "zh-CN" if lang == "zh" else "en-GB").open()
            return await harness.dialogue(shopper, obs, d, lang, prefer_buttons=index % 2 == 0, name=transport)

        jobs = [lambda d=d, lang=lang, i=i: one(d, lang, i)
                for lang in LANGS for i, d in enumerate(harness.load("dialogues", lang, corpus))]
        return await bounded(jobs)


def _judge(results: list[harness.DialogueResult], transport: str, corpus: str) -> None:
    failures: list[str] = []
    short: list[str] = []
    for lang in LANGS:
        mine = [r for r in results if r.lang == lang]
        right = [r for r in mine if r.correct and not r.wrong_language]
        median = harness.median_turns(mine, without_proof=True)
        report(f"Dialogues {lang} over {transport} ({harness.CORPORA[corpus]}): right outcome in the shopper's language {pct(len(right), len(mine))}; "
               f"wrong-language replies {sum(len(r.wrong_language) for r in mine)}; "
               f"median shopper turns to a decided return or exchange {median} "
               f"({harness.median_turns(mine)} with the turn an anonymous shopper spends proving the order)")
        failures += [f"{r.dialogue['id']} ({transport}): want {r.expected['outcome']} handoff={r.expected.get('handoff')}"
                     f", got {r.outcome} handoff={r.handoff} ({r.handoff_reason}); {r.problems}; "
                     f"wrong language {r.wrong_language}\n{r.transcript()}" for r in mine if r not in right]
        if len(right) < TARGETS[corpus] * len(mine) or median is None or median > TURNS_TARGET:
            short.append(f"{lang}: {len(right)}/{len(mine)} right, median turns {median}")
    assert not short, "\n".join(short) + "\n\n" + "\n\n".join(failures)
    wrong = [(r.dialogue["id"], r.wrong_language) for r in results if r.wrong_language]
    assert not wrong, wrong


@pytest.mark.parametrize("corpus", harness.CORPORA)
async def test_dialogues_over_the_rest_contract_with_payload_only_buttons(gateway: RunningGateway, corpus: str) -> None:
    _judge(await _dialogues(gateway, "rest", corpus), "REST (payload-only buttons)", corpus)


@pytest.mark.parametrize("corpus", harness.CORPORA)
async def test_dialogues_over_the_web_chat_websocket(gateway: RunningGateway, corpus: str) -> None:
    _judge(await _dialogues(gateway, "webchat", corpus), "web chat websocket", corpus)
