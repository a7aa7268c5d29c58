"""The shopper's case page (flows/case_page.py): the link in a case update opens the case's
timeline in the shopper's language, with times in the shop's zone, the photos they sent and
what they still need to do; forged, altered, other-purpose and expired links are refused with
a page in both languages; nothing the shopper or the shop wrote is rendered as HTML. In
headless Chromium at desktop and phone sizes nothing is clipped (screenshots in
/tmp/case-page-shots)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from bot.links import LinkSigner
from flows.case_page import PAGE_PATH
from tests.conftest import ChatClient, RunningGateway
from tests.flows.test_case_updates import cases, event, new_return, post

SHOTS = Path("/tmp/case-page-shots")


async def link_from_an_update(gateway: RunningGateway, locale: str, lang: str) -> tuple[str, str]:
    """A return whose refund was issued, and the case page link the shopper was sent."""
    shopper = await ChatClient.connect(gateway.ws_url, locale=locale)
    try:
        case = new_return(gateway, f"webchat:{shopper.conversation_id}", lang)
        cases(gateway).add_evidence_sync(case.id, ["https://shop.example/p/1.png", "javascript:alert(1)"])
        assert (await post(gateway, event(case, "refund_issued")))[0] == 200
        told = (await shopper.next_frame("reply"))["text"]
    finally:
        await shopper.close()
    found = re.search(r"(http://\S+/case/\S+)", told)
    assert found, told
    return case.id, found.group(1)


async def get(url: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_the_link_in_an_update_opens_the_cases_timeline_in_the_shoppers_language(
        shop_gateway: RunningGateway) -> None:
    case_id, link = await link_from_an_update(shop_gateway, "zh-CN", "zh")
    status, page, headers = await get(link)
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    assert f"退货 {case_id}" in page and "订单 AS10001 · 棕色牛津鞋" in page
    assert "当前状态：已退款" in page and "退款金额：¥599.00" in page
    timeline = page[page.index("处理记录"):]
    assert timeline.index("已预约上门取件") < timeline.index("已退款")  # the timeline, oldest first
    assert "（北京时间）" in page and "时间均为北京时间" in page  # dates with the shop's zone
    assert "无需操作：退款将在 1-7 个工作日内原路退回" in page  # what is left to do
    assert 'src="https://shop.example/p/1.png"' in page and "javascript:" not in page
    status, english, _ = await get(link + "?lang=en")
    assert status == 200 and f"Return {case_id}" in english and "Now: refunded" in english


async def test_forged_altered_foreign_and_expired_links_are_refused(shop_gateway: RunningGateway) -> None:
    case_id, link = await link_from_an_update(shop_gateway, "en", "en")
    base, token = link.rsplit("/", 1)
    body, mac = token.split(".")
    assert (await get(f"{base}/{body}.{'A' * len(mac)}"))[0] == 403  # forged signature
    other = LinkSigner(shop_gateway.settings.secret, "case page").make({"case": "RT-000001", "lang": "en"},
                                                                        time.time() + 60)
    assert (await get(f"{base}/{other.split('.')[0]}.{mac}"))[0] == 403  # another payload under this signature
    foreign = LinkSigner(shop_gateway.settings.secret, "web chat upload").make({"case": case_id}, time.time() + 60)
    assert (await get(f"{base}/{foreign}"))[0] == 403  # made for another purpose
    elsewhere = LinkSigner("another-shops-secret-" + "y" * 20, "case page").make({"case": case_id}, time.time() + 60)
    assert (await get(f"{base}/{elsewhere}"))[0] == 403
    expired = LinkSigner(shop_gateway.settings.secret, "case page").make({"case": case_id, "lang": "en"},
                                                                          time.time() - 1)
    status, page, _ = await get(f"{base}/{expired}")
    assert status == 410 and "This link has expired" in page and "该链接已过期" in page
    for junk in ("..%2F..%2Fetc%2Fpasswd", "x" * 5000, "%00", "a.b.c"):
        assert (await get(f"{base}/{junk}"))[0] in (403, 404)
    assert (await get(link))[0] == 200  # the genuine one still opens


async def test_what_the_shop_or_shopper_wrote_is_text_never_html(shop_gateway: RunningGateway) -> None:
    store = cases(shop_gateway)
    case = store.create_sync("return", ["awaiting_dropoff"], order_number="AS10001", conversation_id="webchat:x",
                             language="en", details={"item": {"en": "<script>alert(1)</script>", "zh": "x"},
                                                     "photo": 'https://a.example/"><script>alert(2)</script>'})
    signer = LinkSigner(shop_gateway.settings.secret, "case page")
    status, page, _ = await get(f"{shop_gateway.url}{PAGE_PATH}/{signer.make({'case': case.id, 'lang': 'en'}, time.time() + 60)}")
    assert status == 200 and "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"with the case number {case.id} written on it" in page  # awaiting drop-off: what to do


@pytest.mark.e2e
async def test_the_case_page_on_a_desktop_and_a_phone(shop_gateway: RunningGateway) -> None:
    from tests.handoff_browser.test_console_browser import CHROMIUM, CHROMIUM_ARGS, require_browser

    async_api = require_browser()
    _, link = await link_from_an_update(shop_gateway, "zh-CN", "zh")
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name, size in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844})):
                page = await browser.new_page(viewport=size)
                await page.goto(link)
                assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                assert await page.locator("h1").inner_text() != ""
                switch = page.locator("a.lang")
                box = await switch.bounding_box()
                assert box is not None and box["height"] >= 44  # a thumb can hit it
                assert await page.locator("li").count() == 2
                await page.screenshot(path=str(SHOTS / f"case-{name}.png"), full_page=True)
                await switch.click()
                await page.wait_for_load_state()
                assert "Return" in await page.locator("h1").inner_text()
                await page.screenshot(path=str(SHOTS / f"case-{name}-en.png"), full_page=True)
                await page.close()
        finally:
            await browser.close()
