"""The managers' dashboard in a real browser (headless Chromium, the fake Rasa): the figures
are on the page as text, with the time zone, at desktop and phone width, without a script
error; the filters reload them; an agent is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import TEAM, ConsoleClient
from tests.handoff.test_analytics import _bot_conversation, _handoff_with_csat
from tests.handoff.test_roles import MANAGER, team_with_manager
from tests.handoff_browser.test_console_browser import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.e2e  # a real browser: with the other browser tests, in `./aftersales test`

TIMEOUT_MS = 15_000


async def _sign_in(page: Any, base: str, username: str, password: str) -> None:
    await page.goto(base + "/console")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/console")


async def test_a_manager_reads_the_figures_on_the_page(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    pw_api = require_browser()
    expect = pw_api.expect
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path)))
    alice = await ConsoleClient.sign_in(gateway.url, "alice")
    try:
        await _bot_conversation(gateway)
        await _bot_conversation(gateway, "zh")
        await _handoff_with_csat(gateway, alice, 4)
        async with pw_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for width, height in ((1280, 900), (390, 844)):
                    page = await browser.new_page(viewport={"width": width, "height": height})
                    errors: list[str] = []
                    page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                    page.on("console", lambda msg, errors=errors: errors.append(msg.text) if msg.type == "error" else None)
                    await _sign_in(page, gateway.url, MANAGER[0], MANAGER[2])
                    await page.goto(gateway.url + "/console/analytics")
                    cards = page.get_by_test_id
                    await expect(cards("card-conversations")).to_contain_text("3", timeout=TIMEOUT_MS)
                    await expect(cards("card-containment")).to_contain_text("66.7 %")
                    await expect(cards("card-containment")).to_contain_text("2 of 3")
                    await expect(cards("card-csat")).to_contain_text("4.00")
                    await expect(cards("zone")).to_contain_text("Asia/Shanghai (UTC+08:00)")
                    await expect(page.get_by_test_id("reasons")).to_contain_text("shopper_request")
                    await expect(page.get_by_test_id("csat")).to_contain_text("average")
                    # No part of the page is wider than the screen but the tables, which scroll.
                    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"page wider than {width}px by {overflow}px"
                    await page.select_option("[data-testid=language]", "zh")
                    await page.click("button[type=submit]")
                    await expect(cards("card-conversations")).to_contain_text("1")
                    await expect(cards("card-handoffs")).to_contain_text("0")
                    assert "language=zh" in page.url
                    csv_link = await page.get_by_test_id("csv").get_attribute("href")
                    assert csv_link is not None and "language=zh" in csv_link
                    assert errors == []
                    await page.close()
                page = await browser.new_page()
                await _sign_in(page, gateway.url, "bob", TEAM["bob"][1])
                refused = await page.goto(gateway.url + "/console/analytics")
                assert refused is not None and refused.status == 403
            finally:
                await browser.close()
    finally:
        await alice.close()
        await runner.cleanup()
