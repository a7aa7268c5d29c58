"""The agent console under a real queue, in a real browser (Chromium driven by Playwright),
at desktop and phone sizes: 50 web chat shoppers wait (asking for a person through the real
gateway, in front of the fake Rasa; two of them with an allergic reaction, one in Chinese).
The agent finds the urgent one at the top, looking different, claims it with the keyboard,
answers with a canned reply filled with the order number, and hands it back; on a phone
nothing is clipped, their own conversations are in view, and the Chinese shopper gets the
canned reply in Chinese.

Screenshots go to /tmp/console-shots/. Needs /usr/bin/chromium and `playwright` (see
test_console_browser.py)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from handoff.agents import write_agents_file
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff_browser.test_console_browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS, require_browser

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/console-shots")
PASSWORD = "alice-queue-password-1"
HURT_EN = "my face got a rash from the serum and it really hurts, order AS10005"
ALLERGY_ZH = "涂了 AS10005 的精华脸上起红疹"
WAITING = 50


async def reply_containing(shopper: ChatClient, part: str, timeout: float = 20.0) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await shopper.next_frame("reply", timeout=left)
        except TimeoutError:
            break
        text = frame.get("text") or ""
        if part in text:
            return text
        seen.append(text)
    raise AssertionError(f"the shopper never received a reply with {part!r}; seen: {seen!r}")


async def ask_for_a_person(gateway: RunningGateway, text: str, locale: str = "en") -> ChatClient:
    chat = await ChatClient.connect(gateway.ws_url, locale=locale)
    await chat.say(text)
    await chat.replies_of_the_turn(gateway)
    return chat


async def layout(page: Any) -> dict[str, Any]:
    """What is clipped or off screen: page width against the viewport, and where "mine" is."""
    return await page.evaluate("""() => {
        const mine = document.querySelector('[data-testid="mine-section"]').getBoundingClientRect();
        const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
        const over = [...document.querySelectorAll('body *')].filter(visible).filter((el) => {
            const r = el.getBoundingClientRect(); return r.right > innerWidth + 1 || r.left < -1; })
            .filter((el) => !el.closest('.sr-only')).map((el) => el.tagName + '.' + el.className).slice(0, 5);
        return {scrollWidth: document.documentElement.scrollWidth, innerWidth, innerHeight,
                mineTop: mine.top, mineBottom: mine.bottom, over};
    }""")


async def sign_in(browser: Any, url: str, viewport: dict[str, int], errors: list[str]) -> Any:
    expect = require_browser().expect
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{url}/console")
    await page.get_by_test_id("login-username").fill("alice")
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "online", timeout=UI_TIMEOUT_MS)
    return page


async def test_an_agent_answers_the_urgent_one_first_on_desktop_and_phone(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    pw_api = require_browser()
    expect = pw_api.expect
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    agents_file = tmp_path / "agents.yml"
    write_agents_file(agents_file, {"alice": ("Alice Chen", PASSWORD), "bob": ("Bob Li", "bob-queue-password-2")})
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url,
                                                        environ={"AGENTS_FILE": str(agents_file)}))
    shoppers: list[ChatClient] = []
    try:
        # 50 waiting: ordinary requests, with an allergy (hurt) and a Chinese allergy among them.
        for n in range(WAITING - 2):
            shoppers.append(await ask_for_a_person(gateway, "I want to talk to a human"))
            if n == 20:
                hurt = await ask_for_a_person(gateway, HURT_EN)
            if n == 30:
                zh = await ask_for_a_person(gateway, ALLERGY_ZH, locale="zh-CN")
        shoppers += [hurt, zh]

        async with pw_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            errors: list[str] = []
            try:
                # -- desktop ------------------------------------------------------------------
                page = await sign_in(browser, gateway.url, {"width": 1280, "height": 800}, errors)
                queue = page.get_by_test_id("queue").get_by_test_id("queue-item")
                await expect(queue).to_have_count(WAITING, timeout=UI_TIMEOUT_MS)
                hurt_key, zh_key = f"webchat:{hurt.conversation_id}", f"webchat:{zh.conversation_id}"
                # The urgent ones are on top and look different: a label in words, a colour bar.
                assert await queue.nth(0).get_attribute("data-key") == hurt_key
                assert await queue.nth(1).get_attribute("data-key") == zh_key
                await expect(queue.nth(0).get_by_test_id("urgency")).to_have_text("Urgent · health (hurt)")
                await expect(queue.nth(1).get_by_test_id("urgency")).to_have_text("Urgent · health")
                await expect(queue.nth(2).get_by_test_id("urgency")).to_have_count(0)
                bars = await page.evaluate("""() => [...document.querySelectorAll('[data-testid="queue-item"]')]
                    .slice(0, 3).map((li) => getComputedStyle(li).borderLeftColor)""")
                assert bars[0] == bars[1] != bars[2], bars
                # Compact: far more than six cards in one screen.
                in_view = await page.evaluate("""() => [...document.querySelectorAll('[data-testid="queue-item"]')]
                    .filter((li) => li.getBoundingClientRect().bottom <= innerHeight).length""")
                assert in_view >= 11, in_view
                assert not await page.get_by_test_id("preview").filter(has_text="/request_human").count()
                await page.screenshot(path=str(SHOTS / "desktop-queue.png"))

                # Search by order number and by case id; filter by language.
                await page.get_by_test_id("search").fill("as10005")
                await expect(queue).to_have_count(2)
                await page.get_by_test_id("search").fill("")
                await page.get_by_test_id("filter-language").select_option("zh")
                await expect(queue).to_have_count(1)
                await expect(queue.first).to_have_attribute("data-key", zh_key)
                await page.get_by_test_id("filters-clear").click()
                await expect(queue).to_have_count(WAITING)

                # Help on "?"; shortcuts do not fire while typing.
                await page.keyboard.press("?")
                await expect(page.get_by_test_id("help")).to_be_visible()
                await page.screenshot(path=str(SHOTS / "desktop-help.png"))
                await page.keyboard.press("Escape")
                await expect(page.get_by_test_id("help")).to_be_hidden()
                await page.get_by_test_id("search").focus()
                await page.keyboard.type("c?")
                await expect(page.get_by_test_id("help")).to_be_hidden()
                await expect(page.get_by_test_id("mine-item")).to_have_count(0)
                await page.get_by_test_id("search").fill("")
                await page.locator("body").click(position={"x": 700, "y": 20})

                # "c" claims the top of the queue: the hurt shopper.
                await page.keyboard.press("c")
                mine = page.get_by_test_id("mine").get_by_test_id("mine-item")
                await expect(mine).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(mine.first).to_have_attribute("data-key", hurt_key)
                await reply_containing(hurt, "chatting with Alice Chen")
                cases = page.get_by_test_id("cases").get_by_test_id("case")
                await expect(cases).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await expect(cases.first.get_by_test_id("case-reason")).to_have_text("Allergic reaction")
                await expect(cases.first.get_by_test_id("case-order")).to_have_text("AS10005")
                await expect(cases.first.get_by_test_id("case-item")).to_have_text("Hyaluronic hydrating serum")
                case_id = (await cases.first.get_by_test_id("case-id").text_content() or "").strip()
                assert case_id.startswith("RT-")

                # A canned reply filled in from the conversation; "r" puts the cursor in the box.
                await page.keyboard.press("r")
                box = page.get_by_test_id("reply-input")
                await expect(box).to_be_focused()
                await page.get_by_test_id("canned").select_option(label="Refund on its way")
                expected = (f"The refund for order AS10005 (case {case_id}) has been approved; it reaches your "
                            "original payment method within 1-3 working days.")
                await expect(box).to_have_value(expected)
                await page.screenshot(path=str(SHOTS / "desktop-conversation.png"))
                await box.press("Enter")
                assert await reply_containing(hurt, "AS10005") == expected

                # A variable nobody filled is never sent: it is selected for the agent instead.
                await box.fill("Your order {order} is on its way.")
                await box.press("Enter")
                await expect(page.get_by_test_id("composer-hint")).to_contain_text("Fill in {order}")
                selected = await box.evaluate("(el) => el.value.slice(el.selectionStart, el.selectionEnd)")
                assert selected == "{order}"
                await page.keyboard.type("AS10005")
                await expect(box).to_have_value("Your order AS10005 is on its way.")
                await box.press("Enter")
                assert await reply_containing(hurt, "Your order") == "Your order AS10005 is on its way."

                # "h" hands back: the shopper is told, and the bot answers again.
                await page.locator("body").click(position={"x": 700, "y": 20})
                await page.keyboard.press("h")
                await reply_containing(hurt, "back with the assistant")
                await expect(mine).to_have_count(0, timeout=UI_TIMEOUT_MS)
                await hurt.say("thanks")
                await reply_containing(hurt, "welcome")

                # The bot conversations list: date or time with its zone, never a bare clock.
                await page.get_by_test_id("live-section").locator("summary").click()
                live_time = page.get_by_test_id("live").get_by_test_id("live-time").first
                await expect(live_time).to_have_text(re.compile(r"^(\d{1,2} \w{3} )?\d\d:\d\d (GMT|UTC)"))
                await page.screenshot(path=str(SHOTS / "desktop-live.png"))
                await page.context.close()

                # -- phone --------------------------------------------------------------------
                phone = await sign_in(browser, gateway.url, {"width": 390, "height": 844}, errors)
                queue = phone.get_by_test_id("queue").get_by_test_id("queue-item")
                await expect(queue).to_have_count(WAITING - 1, timeout=UI_TIMEOUT_MS)
                seen = await layout(phone)
                assert seen["scrollWidth"] <= seen["innerWidth"], seen
                assert not seen["over"], seen
                assert 0 <= seen["mineTop"] < seen["mineBottom"] <= seen["innerHeight"], seen
                await phone.screenshot(path=str(SHOTS / "phone-queue.png"))
                await expect(queue.first).to_have_attribute("data-key", zh_key)
                await queue.first.get_by_test_id("claim").click()
                await reply_containing(zh, "客服 Alice Chen 已接入")
                await expect(phone.get_by_test_id("mine").get_by_test_id("mine-item")).to_have_count(1)
                box = phone.get_by_test_id("reply-input")
                await expect(box).to_be_visible(timeout=UI_TIMEOUT_MS)
                await expect(box).to_be_enabled(timeout=UI_TIMEOUT_MS)
                await expect(phone.get_by_test_id("case")).to_have_count(1, timeout=UI_TIMEOUT_MS)
                await phone.get_by_test_id("canned").select_option(label="Refund on its way")
                value = await box.input_value()
                assert value.startswith("订单 AS10005 的退款（售后单 RT-") and "{" not in value, value
                seen = await layout(phone)
                assert seen["scrollWidth"] <= seen["innerWidth"], seen
                assert not seen["over"], seen
                await phone.screenshot(path=str(SHOTS / "phone-conversation.png"))
                await phone.get_by_test_id("reply-send").click()
                assert await reply_containing(zh, "订单 AS10005") == value
                # Back on the list: their own conversation is on top, above the 48 still waiting.
                await phone.get_by_test_id("back").click()
                mine_card = phone.get_by_test_id("mine").get_by_test_id("mine-item")
                await expect(mine_card).to_be_in_viewport()
                seen = await layout(phone)
                assert seen["scrollWidth"] <= seen["innerWidth"] and not seen["over"], seen
                assert seen["mineBottom"] <= seen["innerHeight"], seen
                await phone.screenshot(path=str(SHOTS / "phone-mine.png"))
                await mine_card.get_by_role("button").first.click()
                await expect(box).to_be_visible(timeout=UI_TIMEOUT_MS)
                await phone.get_by_test_id("case").first.scroll_into_view_if_needed()
                await phone.screenshot(path=str(SHOTS / "phone-case-facts.png"), full_page=True)
                await phone.get_by_test_id("hand-back").click()
                await reply_containing(zh, "已为您切换回智能助手")
                await phone.get_by_test_id("back").click()
                await expect(phone.get_by_test_id("mine-item")).to_have_count(0, timeout=UI_TIMEOUT_MS)
                await phone.screenshot(path=str(SHOTS / "phone-after.png"))
                # Nothing clipped between the sizes either (a small phone, tablets, a small laptop).
                for width, height in ((320, 640), (768, 1024), (910, 700), (1024, 768)):
                    await phone.set_viewport_size({"width": width, "height": height})
                    seen = await layout(phone)
                    assert seen["scrollWidth"] <= seen["innerWidth"] and not seen["over"], (width, seen)
                    await phone.screenshot(path=str(SHOTS / f"width-{width}.png"))
                assert not errors, errors
            except BaseException:
                for n, context in enumerate(browser.contexts):
                    for m, open_page in enumerate(context.pages):
                        try:
                            await open_page.screenshot(path=str(SHOTS / f"failure-{n}-{m}.png"))
                        except Exception:  # the original failure matters
                            pass
                raise
            finally:
                await browser.close()
    finally:
        await asyncio.gather(*(s.close() for s in shoppers), return_exceptions=True)
        await runner.cleanup()
