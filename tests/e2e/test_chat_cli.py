"""`./aftersales chat` as a bot designer uses it: the real command in a real terminal (tmux),
against a gateway in front of the real Rasa. Keys are typed with `tmux send-keys`, the
screen is read with `tmux capture-pane`; every step waits for what the bot says next, never
for a fixed time. A return of order AS10001 is completed in English and in Chinese: the
ownership proof, a reason typed in words, buttons picked by their number, and the case the
bot confirms is the one the flows recorded, in the conversation the command opened."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest

from flows.cases import CaseStore
from gateway.rasa_runtime import REPO_ROOT
from tests.conftest import RunningGateway, free_port

WAIT_SECONDS = 60.0  # one bot turn on a loaded 2-core machine stays far below this
ENDED = "chat command ended, exit status"

# What the designer types and what the screen shows, per language (the bot's words are
# flows/texts.yml's; the button titles those of the menu, the opened question and the method).
SCRIPT = {
    "en": {
        "menu": "What would you like to do with order AS10001?", "return_button": "Return / refund",
        "proof": "last 4 digits of the phone number", "reason_question": "reason for returning",
        "reason": "I just changed my mind", "opened_question": "still unworn",
        "unopened_button": "Unopened / unused", "method_question": "How would you like to send it back?",
        "pickup_button": "Courier pick-up", "accepted": "Return accepted",
    },
    "zh": {
        "menu": "请问订单 AS10001 需要办理什么？", "return_button": "退货退款",
        "proof": "手机号后四位", "reason_question": "退回经典牛津皮鞋",
        "reason": "不想要了", "opened_question": "还未穿出门",
        "unopened_button": "未拆封 / 未使用", "method_question": "请问您想怎么寄回？",
        "pickup_button": "上门取件", "accepted": "退货已受理",
    },
}


class Pane:
    """One tmux pane on a tmux server of this test's own (its own socket: nobody else's
    sessions are touched, and stopping it stops only what it started)."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"aftersales-chat-test-{uuid.uuid4().hex[:8]}"
        self.config = tmp_path / "tmux.conf"
        # The pane stays readable after the command ends; the whole conversation stays in its history.
        self.config.write_text("set -g remain-on-exit on\nset -g history-limit 20000\n")
        self.seen = 0  # what the test has read so far: the next wait looks after it

    async def tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, "-f", str(self.config), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"tmux {' '.join(args)}: {err.decode(errors='replace')}"
        return out.decode("utf-8", errors="replace")

    async def start(self, command: str) -> None:
        """`command` in a new pane; when it ends, the shell prints its exit status there."""
        await self.tmux("-u", "new-session", "-d", "-s", "chat", "-x", "200", "-y", "50",
                        f'{command}; echo "{ENDED} $?"')
        await self.tmux("set-option", "-t", "chat", "remain-on-exit", "on")  # also if the config came late

    async def screen(self) -> str:
        """Everything the pane showed, its scrolled-off history included, wrapped lines joined."""
        return await self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "chat")

    async def wait_for(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """The first appearance of `pattern` after what was read before; polls the screen."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            screen = await self.screen()
            found = regex.search(screen, self.seen)
            if found:
                self.seen = found.end()
                return found
            assert time.monotonic() < deadline, f"{regex.pattern!r} never appeared; the screen:\n{screen}"
            await asyncio.sleep(0.1)  # the next look at the screen, not a guess at how long the bot takes

    async def button(self, title: str) -> str:
        """The number the command shows for the button `title` (of the buttons just shown)."""
        found = await self.wait_for(re.compile(rf"\[(\d+)\] {re.escape(title)}\n"))
        return found.group(1)

    async def type(self, text: str) -> None:
        await self.tmux("send-keys", "-t", "chat", "-l", text)
        await self.tmux("send-keys", "-t", "chat", "Enter")

    async def exit_status(self) -> int:
        """Once the command ended: its exit status, as the shell around it prints it (tmux's
        own #{pane_dead_status} is not always filled in)."""
        return int((await self.wait_for(re.compile(rf"{re.escape(ENDED)} (\d+)"))).group(1))

    async def stop(self) -> None:
        await self.tmux("kill-server")


@pytest.fixture
async def pane(tmp_path: Path) -> AsyncIterator[Pane]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (./aftersales test installs it with apt)", pytrace=False)
    pane = Pane(tmp_path)
    try:
        yield pane
    finally:
        try:
            await pane.stop()
        except AssertionError:
            pass  # the server had already gone (no session left)


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_return_completed_in_the_terminal(gateway: RunningGateway, pane: Pane, lang: str) -> None:
    say = SCRIPT[lang]
    await pane.start(f"cd {REPO_ROOT} && ./aftersales chat --lang {lang} --order AS10001 --url {gateway.url}")

    # The conversation starts about the order, in the chosen language.
    opened = await pane.wait_for(re.compile(r"conversation webchat:(\w+), locale (\S+)\."))
    conversation_id, locale = opened.groups()
    assert locale == ("zh-CN" if lang == "zh" else "en")
    await pane.wait_for(say["menu"])
    await pane.type(await pane.button(say["return_button"]))  # a button, by its number
    await pane.wait_for(f"you: {say['return_button']}")  # sent as the page sends it: the title as text
    await pane.wait_for(say["proof"])  # not signed in: "is AS10001 yours?"
    await pane.type("5821")
    await pane.wait_for(say["reason_question"])
    await pane.type(say["reason"])  # typed in words
    await pane.wait_for(say["opened_question"])
    await pane.type(await pane.button(say["unopened_button"]))
    await pane.wait_for(say["method_question"])
    await pane.type(await pane.button(say["pickup_button"]))
    accepted = await pane.wait_for(re.compile(rf"{re.escape(say['accepted'])}\W+\D*(RT-\d{{6}})"))
    case_id = accepted.group(1)
    assert "¥599.00" in (await pane.screen())[accepted.start():]

    # The designer leaves: /quit in English, Ctrl-D in Chinese; both end the command cleanly.
    if lang == "en":
        await pane.type("/quit")
    else:
        await pane.tmux("send-keys", "-t", "chat", "C-d")
    assert await pane.exit_status() == 0

    # The case the bot confirmed is the one the flows recorded, for this order, in this conversation.
    case = await CaseStore(Path(os.environ["FLOWS_DB_PATH"])).get(case_id)
    assert case is not None and case.kind == "return" and case.order_number == "AS10001"
    assert case.language == lang and case.conversation_id is not None and conversation_id in case.conversation_id
    assert case.details["reason"] == "changed_mind" and case.status == "pickup_scheduled"


def test_no_gateway_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([str(REPO_ROOT / "aftersales"), "chat", "--url", url], cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1
    assert f"no gateway answers at {url}; start it with ./aftersales run" in done.stderr
