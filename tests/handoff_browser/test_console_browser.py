"""The agent console in a real browser (Chromium driven by Playwright) in front of the real
gateway and the real Rasa: a web chat shopper asks for a person, an agent signs in, claims
the conversation, answers, and the shopper receives the agent's text verbatim.

Needs /usr/bin/chromium and the `playwright` Python package (its own browser download is
not used). When either is missing the test fails with a message saying so: it never skips."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.rasa_runtime import RasaProcesses
from tests.conftest import ChatClient, make_settings, start_gateway

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ALICE_PASSWORD = "alice-console-password-1"
REPLY = "Hello <b>there</b>"
UI_TIMEOUT_MS = 15_000


def require_browser() -> Any:
    """Playwright's async API, or a failing test that says what is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: the console browser test needs it "
                    "(install the `chromium` Debian package)", pytrace=False)
    try:
        from playwright import async_api
    except ImportError as exc:
        pytest.fail(f"the Python package `playwright` is missing ({exc}): the console browser test needs it "
                    "(pip install playwright; its own browser download is not needed)", pytrace=False)
    return async_api


async def reply_with_text(shopper: ChatClient, text: str, timeout: float = 20.0) -> dict[str, Any]:
    """The first `reply` frame whose text is exactly `text`; other replies are skipped."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the shopper never received {text!r}; replies seen: {seen!r}")
        try:
            frame = await shopper.next_frame("reply", timeout=left)
        except TimeoutError:
            continue
        if frame.get("text") == text:
            return frame
        seen.append(frame.get("text"))


async def test_agent_signs_in_claims_and_answers_a_shopper_in_the_browser(
        rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    pw_api = require_browser()
    expect = pw_api.expect
    from handoff.agents import write_agents_file

    agents_file = tmp_path / "agents.yml"
    write_agents_file(agents_file, {"alice": ("Alice Chen", ALICE_PASSWORD),
                                    "bob": ("Bob Li", "bob-console-password-2")})
    settings = make_settings(tmp_path, rasa_stack.rasa_url, environ={"AGENTS_FILE": str(agents_file)})
    gateway, runner = await start_gateway(settings)
    shopper: ChatClient | None = None
    try:
        # A shopper on the web chat asks for a person; the bot hands the conversation over.
        shopper = await ChatClient.connect(gateway.ws_url)
        await shopper.say("I want to talk to a human")
        handoff_replies = await shopper.replies_until_quiet()
        assert any("person" in str(r.get("text")) for r in handoff_replies), handoff_replies

        async with pw_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page_errors: list[str] = []
            dialogs: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                asyncio.ensure_future(dialog.dismiss())

            page.on("dialog", on_dialog)
            try:
                # Not signed in: the sign-in page. A wrong password is refused with a message.
                await page.goto(f"{gateway.url}/console")
                await expect(page.get_by_test_id("login-username")).to_be_visible()
                await expect(page.get_by_test_id("login-error")).to_be_hidden()
                await page.get_by_test_id("login-username").fill("alice")
                await page.get_by_test_id("login-password").fill("not-the-password")
                await page.get_by_test_id("login-submit").click()
                await expect(page.get_by_test_id("login-error")).to_be_visible()
                await expect(page.get_by_test_id("login-error")).not_to_have_text("")

                await page.get_by_test_id("login-username").fill("alice")
                await page.get_by_test_id("login-password").fill(ALICE_PASSWORD)
                await page.get_by_test_id("login-submit").click()
                await expect(page.get_by_test_id("agent-name")).to_have_text("Alice Chen", timeout=UI_TIMEOUT_MS)
                await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "online",
                                                                            timeout=UI_TIMEOUT_MS)

                # The shopper waits in the queue, reason shown in words.
                item = page.get_by_test_id("queue").get_by_test_id("queue-item")
                await expect(item).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(item).to_contain_text("Asked for a person")
                key = await item.get_attribute("data-key")
                assert key, "the queue item has no data-key"

                # Claim: the conversation moves to "My conversations" and opens.
                await item.get_by_test_id("claim").click()
                mine = page.get_by_test_id("mine").locator(f'[data-testid="mine-item"][data-key="{key}"]')
                await expect(mine).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(page.get_by_test_id("queue-item")).to_have_count(0)
                transcript = page.get_by_test_id("transcript")
                asked = transcript.get_by_test_id("entry-shopper").filter(has_text="I want to talk to a human")
                await expect(asked.first).to_be_visible(timeout=UI_TIMEOUT_MS)

                # Reply with HTML-looking text: the shopper gets it verbatim, the console shows it as text.
                box = page.get_by_test_id("reply-input")
                await expect(box).to_be_enabled(timeout=UI_TIMEOUT_MS)
                await box.fill(REPLY)
                await page.get_by_test_id("reply-send").click()
                frame = await reply_with_text(shopper, REPLY)
                assert frame["text"] == REPLY

                sent = transcript.get_by_test_id("entry-agent").filter(has_text=REPLY)
                await expect(sent.get_by_test_id("entry-text")).to_have_text(REPLY, timeout=UI_TIMEOUT_MS)
                assert await transcript.locator("b").count() == 0, "agent text was rendered as HTML"
                await expect(box).to_have_value("")

                await page.screenshot(path=str(tmp_path / "console.png"))
                assert not page_errors, page_errors
                assert not dialogs, dialogs
            except BaseException:
                try:
                    await page.screenshot(path=str(tmp_path / "console-failure.png"))
                except Exception:  # the page may be gone; the original failure matters
                    pass
                raise
            finally:
                await browser.close()
    finally:
        if shopper is not None:
            await shopper.close()
        await runner.cleanup()
