"""The shopper's web chat page and the agent console, both in a real browser, in front of
the real gateway and Rasa: buttons, reload with history, and an agent taking over a
conversation from the console's list of bot conversations."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.rasa_runtime import RasaProcesses
from handoff.agents import write_agents_file
from tests.conftest import make_settings, start_gateway
from tests.handoff_browser.test_console_browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS, require_browser

pytestmark = pytest.mark.e2e

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")


async def test_shopper_page_buttons_reload_and_agent_takeover(rasa_stack: RasaProcesses, tmp_path: Path) -> None:
    pw_api = require_browser()
    expect = pw_api.expect
    agents_file = tmp_path / "agents.yml"
    write_agents_file(agents_file, {"alice": ("Alice Chen", "alice-pw-123")})
    settings = make_settings(tmp_path, rasa_stack.rasa_url, environ={"AGENTS_FILE": str(agents_file)})
    gateway, runner = await start_gateway(settings)
    try:
        async with pw_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                shop = await (await browser.new_context(locale="en-US")).new_page()
                errors: list[str] = []
                shop.on("pageerror", lambda exc: errors.append(str(exc)))
                await shop.goto(f"{gateway.url}/")
                await expect(shop.get_by_test_id("status")).to_have_attribute("data-state", "online",
                                                                            timeout=UI_TIMEOUT_MS)
                await shop.get_by_test_id("input").fill("hello")
                await shop.get_by_test_id("send").click()
                bot = shop.get_by_test_id("msg-bot")
                await expect(bot.first).to_contain_text("after-sales assistant", timeout=UI_TIMEOUT_MS)
                await shop.get_by_test_id("reply-button").filter(has_text="Return / refund").click()
                await expect(bot.filter(has_text="Which order is it from?")).to_have_count(1, timeout=UI_TIMEOUT_MS)

                await shop.reload()  # the same conversation comes back
                await expect(shop.get_by_test_id("msg-shopper").first.locator(".msg__text")).to_have_text("hello", timeout=UI_TIMEOUT_MS)
                await expect(bot.filter(has_text="Which order is it from?")).to_have_count(1, timeout=UI_TIMEOUT_MS)

                console = await (await browser.new_context()).new_page()
                await console.goto(f"{gateway.url}/console")
                await console.get_by_test_id("login-username").fill("alice")
                await console.get_by_test_id("login-password").fill("alice-pw-123")
                await console.get_by_test_id("login-submit").click()
                await console.get_by_test_id("live-section").locator("summary").click()
                live = console.get_by_test_id("live-item")
                await expect(live.first).to_be_visible(timeout=UI_TIMEOUT_MS)
                await live.first.get_by_test_id("take").click()
                await expect(console.get_by_test_id("mine-item")).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(bot.filter(has_text="chatting with Alice Chen")).to_have_count(1, timeout=UI_TIMEOUT_MS)

                await console.get_by_test_id("reply-input").fill("Hi, Alice here. How can I help?")
                await console.get_by_test_id("reply-send").click()
                agent_line = shop.get_by_test_id("msg-agent").filter(has_text="Alice here")  # a person, not the bot
                await expect(agent_line).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(agent_line).to_contain_text("Alice Chen")  # the shopper sees who answers

                await shop.get_by_test_id("input").fill("my shoes are too small")
                await shop.get_by_test_id("send").click()
                await expect(console.get_by_test_id("transcript").get_by_test_id("entry-shopper")
                             .filter(has_text="my shoes are too small")).to_have_count(1, timeout=UI_TIMEOUT_MS)
                # A photo of the problem, attached in the page, reaches the agent.
                photo = tmp_path / "parcel.png"
                photo.write_bytes(PNG)
                await shop.get_by_test_id("file").set_input_files(str(photo))
                await expect(console.get_by_test_id("transcript").get_by_test_id("entry-shopper")
                             .filter(has_text="parcel.png")).to_have_count(1, timeout=UI_TIMEOUT_MS)
                link = console.get_by_test_id("entry-attachment").filter(has_text="parcel.png")
                href = await link.get_attribute("href")
                assert href and "/webchat/files/" in href
                async with aiohttp.ClientSession() as session:
                    async with session.get(href) as resp:
                        assert await resp.read() == PNG  # the agent can open the shopper's photo
                await shop.screenshot(path=str(tmp_path / "webchat.png"))
                await console.screenshot(path=str(tmp_path / "console.png"))
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
