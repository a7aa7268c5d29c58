"""Every bad conversation becomes a test (gateway/saved_tests.py): the dialogues saved from
real conversations (tests/evaluation/corpus_saved/, by `./aftersales save-test` or the
console's "Save as test") are replayed against the real stack and must end as the designer
marked; and a conversation saved that way, from the console and from the command line,
becomes a dialogue that passes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.rasa_runtime import REPO_ROOT, RasaProcesses
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.evaluation import harness
from tests.evaluation.test_held_out import observer
from tests.handoff.conftest import ConsoleClient, team_environ

pytestmark = pytest.mark.e2e
SAVED_DIR = harness.HERE / harness.SAVED


def saved(lang: str) -> list[dict[str, Any]]:
    path = SAVED_DIR / f"dialogues_{lang}.yml"
    return harness.load("dialogues", lang, harness.SAVED) if path.exists() else []


SAVED_DIALOGUES = [(lang, d) for lang in ("en", "zh") for d in saved(lang)]


async def replay(gateway: RunningGateway, d: dict[str, Any], lang: str) -> harness.DialogueResult:
    async with aiohttp.ClientSession() as http:
        shopper = await harness.WebchatShopper(http, gateway.url, "zh-CN" if lang == "zh" else "en-GB").open()
        return await harness.dialogue(shopper, observer(gateway, http), d, lang, prefer_buttons=False, name="saved")


@pytest.mark.parametrize(("lang", "dialogue"), SAVED_DIALOGUES, ids=[d["id"] for _, d in SAVED_DIALOGUES])
async def test_a_saved_conversation_still_ends_as_marked(gateway: RunningGateway, lang: str,
                                                          dialogue: dict[str, Any]) -> None:
    result = await replay(gateway, dialogue, lang)
    assert result.correct and not result.wrong_language, (
        f"want {result.expected}, got {result.outcome} handoff={result.handoff}; {result.problems}\n{result.transcript()}")


async def test_a_conversation_saved_from_the_console_or_the_command_line_becomes_a_passing_test(
        rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    tests_dir = tmp_path / "saved"
    settings = make_settings(tmp_path, rasa_stack.rasa_url, saved_tests_dir=str(tests_dir),
                             environ=team_environ(tmp_path))
    gateway, runner = await start_gateway(settings)
    try:
        # A real conversation: a shopper returns the oxfords, in their own words.
        real = next(d for d in harness.load("dialogues", "en", "corpus_fresh") if d["id"] == "en-f01")
        first = await replay(gateway, real, "en")
        assert first.outcome == "refund"
        key = next(key for key, _ in await gateway.service.recent(5))

        agent = await ConsoleClient.sign_in(gateway.url, "alice")
        try:
            await agent.send(type="save_test", key=key, outcome="refund", handoff=False, name="oxfords-return")
            answer = await agent.next("saved_test", "error")
            assert answer["type"] == "saved_test", answer
            await agent.send(type="save_test", key=key, outcome="a-refund-please", name="x")
            assert (await agent.next("error"))["code"] == "invalid_test"  # a clear error, nothing written
            await agent.send(type="save_test", key=key, outcome="refund", name="../../../rasa_project/escape")
            assert (await agent.next("error"))["code"] == "invalid_test"  # no path in a test's name
            await agent.send(type="save_test", key="webchat:nobody-said-anything", outcome="refund")
            assert (await agent.next("error"))["code"] == "invalid_test"  # a conversation with nothing said
        finally:
            await agent.close()
        [made] = yaml.safe_load((tests_dir / "dialogues_en.yml").read_text(encoding="utf-8"))
        assert made["opening"] == real["opening"]  # the shopper's own words
        answers = real["answers"]  # each answer under what it answered; the question in between is an interjection
        assert made["answers"] == {"order": answers["order"], "opened": answers["opened"],
                                   "return_method": answers["return_method"]}, made
        assert made["interjections"] == [{"after": 1, "text": real["interjections"][0]["text"]}]
        assert made["expect"] == {"outcome": "refund", "handoff": False}
        story = yaml.safe_load((tests_dir / "stories" / "test_saved_oxfords-return.yml").read_text(encoding="utf-8"))
        steps = story["stories"][0]["steps"]
        assert steps[0]["user"] == real["opening"] and {"active_loop": "return_form"} in steps

        again = await replay(gateway, made, "en")  # the saved test passes against the real stack
        assert again.correct, (again.outcome, again.problems, again.transcript())

        # The same from the command line, into the same file.
        env = {**os.environ, "RASA_URL": rasa_stack.rasa_url, "RASA_TOKEN": rasa_stack.auth_token,
               "SAVED_TESTS_DIR": str(tests_dir), "DATA_DIR": str(tmp_path / "data")}
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "gateway", "save-test", key, "--outcome", "refund",
                             "--name", "oxfords-cli"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "Saved as test oxfords-cli" in done.stdout
        ids = [d["id"] for d in yaml.safe_load((tests_dir / "dialogues_en.yml").read_text(encoding="utf-8"))]
        assert ids == ["oxfords-return", "oxfords-cli"]
        wrong = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "gateway", "save-test", "no-such-ref", "--outcome", "refund"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert wrong.returncode == 2 and "is not a conversation" in wrong.stderr
    finally:
        await runner.cleanup()
