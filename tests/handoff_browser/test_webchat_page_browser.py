"""The web chat page as shoppers use it, in headless Chromium, in English at 1280x800 and in
Chinese at 390x844 (in front of the fake Rasa; the real engine's page test is
test_webchat_browser.py):

- the opening state offers the bot's starting options as buttons, in the page's language;
- the header says honestly whether a person is there (nobody signed in, then an agent);
- every control a thumb may hit is at least 44 px;
- an agent's message looks different from the bot's;
- a photo the shopper attaches shows as a thumbnail; a refused file is explained in their language;
- "New conversation" asks first, and Cancel keeps the transcript.
Screenshots go to /tmp/webchat-shots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from handoff import HANDOFF_KEY
from tests.conftest import make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ
from tests.handoff_browser.test_console_browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS, require_browser

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/webchat-shots")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
CASES = [
    ("en", "en", {"width": 1280, "height": 800},
     {"starters": ["Return / refund", "Exchange", "Make a complaint", "Where is my order or case?", "Talk to a person"],
      "nobody": "no one free right now", "somebody": "a person is available", "refused": "photos (JPEG, PNG, WebP, GIF) or PDF",
      "confirm": "Start a new conversation?", "cancel": "Cancel", "yes": "Start new"}),
    ("zh", "zh-CN", {"width": 390, "height": 844},
     {"starters": ["退货退款", "换货", "投诉", "查询订单或进度", "转人工客服"],
      "nobody": "人工客服暂时忙碌", "somebody": "人工客服在线", "refused": "仅支持照片",
      "confirm": "要开始新的对话吗？", "cancel": "取消", "yes": "开始新对话"}),
]


async def small_controls(page: Any) -> list[str]:
    return await page.evaluate("""() => Array.from(document.querySelectorAll('button'))
        .filter(b => b.offsetParent !== null)
        .map(b => [b.textContent.trim() || b.getAttribute('aria-label'), b.getBoundingClientRect()])
        .filter(([, r]) => r.height < 44 || r.width < 44).map(([t, r]) => `${t} ${r.width}x${r.height}`)""")


@pytest.mark.parametrize("lang,locale,viewport,said", CASES, ids=[c[0] for c in CASES])
async def test_the_web_chat_page_for_shoppers(fake_rasa: FakeRasa, tmp_path: Path, lang: str, locale: str,
                                              viewport: dict[str, int], said: dict[str, Any]) -> None:
    api = require_browser()
    expect = api.expect
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=team_environ(tmp_path)))
    alice: ConsoleClient | None = None
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    photo, text_file = tmp_path / "parcel.png", tmp_path / "notes.txt"
    await asyncio.to_thread(photo.write_bytes, PNG)
    await asyncio.to_thread(text_file.write_text, "not a photo")
    try:
        async with api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport=viewport)
            page.set_default_timeout(UI_TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{gateway.url}/?locale={locale}")

            # Opening state: the starting options, in the page's language; the header is honest.
            await expect(page.get_by_test_id("status")).to_contain_text(said["nobody"])
            starters = page.get_by_test_id("starter")
            assert await starters.all_inner_texts() == said["starters"]
            assert await small_controls(page) == []
            await page.screenshot(path=str(SHOTS / f"{lang}-opening.png"))

            # The shopper taps "Talk to a person"; an agent claims and answers: not the bot's look.
            await starters.filter(has_text=said["starters"][4]).click()
            await expect(page.get_by_test_id("msg-bot").first).to_be_visible()
            alice = await ConsoleClient.sign_in(gateway.url, "alice")
            handoff = gateway.app[HANDOFF_KEY]
            key = next(h.key for h in await handoff.store.active())
            await alice.send(type="claim", key=key)
            assert (await alice.next("claimed"))["ok"] is True
            await alice.send(type="reply", key=key, text="Hi, Alice here. 我来帮您。")
            agent = page.get_by_test_id("msg-agent").last
            await expect(agent).to_contain_text("Alice here")
            colours = await page.evaluate("""() => [
                getComputedStyle(document.querySelector('[data-testid=msg-agent] .bubble')).backgroundColor,
                getComputedStyle(document.querySelector('[data-testid=msg-bot] .bubble')).backgroundColor]""")
            assert colours[0] != colours[1], colours
            await expect(page.get_by_test_id("status")).to_contain_text(said["somebody"])  # she is here now

            # A photo shows as a thumbnail; a text file is refused and the page says why, in its language.
            await page.get_by_test_id("attach").is_visible()
            await page.set_input_files("#chat-file", str(photo))
            await expect(page.get_by_test_id("thumb")).to_have_count(1)
            await page.set_input_files("#chat-file", str(text_file))
            await expect(page.locator(".notice--error").last).to_contain_text(said["refused"])
            assert await small_controls(page) == []
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            await page.screenshot(path=str(SHOTS / f"{lang}-with-agent.png"), full_page=True)

            # With Alice signed in, a fresh page says a person is there.
            await page.reload()
            await expect(page.get_by_test_id("status")).to_contain_text(said["somebody"])

            # "New conversation" asks first; Cancel keeps everything.
            shown = await page.locator("#chat-messages .msg").count()
            assert shown > 0
            await page.locator("#chat-new").click()
            await expect(page.get_by_test_id("confirm-new")).to_contain_text(said["confirm"])
            await page.screenshot(path=str(SHOTS / f"{lang}-confirm.png"))
            await page.get_by_test_id("confirm-new-cancel").click()
            await expect(page.get_by_test_id("confirm-new")).to_have_count(0)
            assert await page.locator("#chat-messages .msg").count() == shown
            await page.locator("#chat-new").click()
            await page.get_by_test_id("confirm-new-yes").click()
            await expect(page.locator("#chat-messages .msg")).to_have_count(0)
            await expect(page.get_by_test_id("starter")).to_have_count(5)
            assert errors == []
            await browser.close()
    finally:
        if alice is not None:
            await alice.close()
        await runner.cleanup()
