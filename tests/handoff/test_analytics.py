"""The shop's analytics without the real engine (the fake Rasa): roles, the dashboard's access,
two gateways on one Redis counting every conversation once, the embedded store kept across a
restart, the Prometheus figures, and attacks on the new endpoints."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handoff import ANALYTICS_KEY, HANDOFF_KEY
from handoff.analytics import SqliteAnalyticsStore, safe_cell
from tests.conftest import ChatClient, RunningGateway, free_port, make_settings, settled, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import TEAM, ConsoleClient
from tests.handoff.test_handoff import ask_for_a_person, claim_when_queued
from tests.handoff.test_roles import MANAGER, team_with_manager


async def signed_in(base: str, username: str, password: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{base}/console/login", json={"username": username, "password": password}) as resp:
        assert resp.status == 200, await resp.text()
    return session


async def report(session: aiohttp.ClientSession, base: str, **query: str) -> dict[str, Any]:
    async with session.get(f"{base}/console/analytics.json", params=query) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def csv_rows(session: aiohttp.ClientSession, base: str, **query: str) -> list[dict[str, str]]:
    async with session.get(f"{base}/console/analytics.csv", params=query) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/csv"
        return list(csv.DictReader(io.StringIO(await resp.text())))


def total(rows: list[dict[str, str]], figure: str, item: str = "", group: str = "") -> str:
    found = [r["value"] for r in rows if r["period"] == "total" and r["figure"] == figure and r["item"] == item
             and r["group"] == group]
    assert len(found) == 1, (figure, item, group, found)
    return found[0]


@pytest.fixture
async def shop(fake_rasa: FakeRasa, tmp_path: Path) -> Any:
    running, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path)))
    try:
        yield running
    finally:
        await runner.cleanup()


async def test_only_managers_get_the_analytics(shop: RunningGateway) -> None:
    base = shop.url
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{base}/console/analytics", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/console"
        for path in ("/console/analytics.json", "/console/analytics.csv"):
            async with anonymous.get(base + path) as resp:
                assert resp.status == 401
        anonymous.cookie_jar.update_cookies({"console_session": "mia|9999999999|abc|def|forged"})
        async with anonymous.get(f"{base}/console/analytics.json") as resp:
            assert resp.status == 401
    agent = await signed_in(base, "alice", TEAM["alice"][1])
    try:
        for path in ("/console/analytics", "/console/analytics.json", "/console/analytics.csv?period=week"):
            async with agent.get(base + path, allow_redirects=False) as resp:
                assert resp.status == 403, path
                assert "managers" in await resp.text()
    finally:
        await agent.close()
    manager = await signed_in(base, MANAGER[0], MANAGER[2])
    try:
        async with manager.get(f"{base}/console/analytics") as resp:
            page = await resp.text()
            assert resp.status == 200 and "/console/static/analytics.js" in page
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        for asset in ("analytics.js", "analytics.css"):
            async with manager.get(f"{base}/console/static/{asset}") as resp:
                assert resp.status == 200
        async with manager.post(f"{base}/console/logout", allow_redirects=False) as resp:
            assert resp.status == 303
        manager.cookie_jar.clear()
        async with manager.get(f"{base}/console/analytics.json") as resp:
            assert resp.status == 401
    finally:
        await manager.close()


async def _handoff_with_csat(gateway: RunningGateway, agent: ConsoleClient, score: int) -> str:
    chat = await ChatClient.connect(gateway.ws_url)
    key = f"webchat:{chat.conversation_id}"
    try:
        await ask_for_a_person(chat, gateway)
        await claim_when_queued(agent, chat, key)
        await agent.send(type="reply", key=key, text="Hello, I can help.")
        await chat.next_frame("reply")
        await agent.send(type="resolve", key=key, outcome="resolved")
        await chat.next_frame("reply")  # the survey
        await chat.say(str(score), payload=f"/csat_{score}")
        await chat.next_frame("reply")  # thanks
        await settled(gateway.service)
    finally:
        await chat.close()
    return key


async def _bot_conversation(gateway: RunningGateway, locale: str = "en") -> None:
    chat = await ChatClient.connect(gateway.ws_url, locale=locale)
    try:
        await chat.say("hello" if locale == "en" else "你好")
        await chat.replies_of_the_turn(gateway)
        await chat.say("what is your return policy?" if locale == "en" else "退货政策是什么")
        await chat.replies_of_the_turn(gateway)
    finally:
        await chat.close()


async def test_two_gateways_on_one_redis_count_each_conversation_once(fake_rasa: FakeRasa, tmp_path: Path,
                                                                      redis_url: str) -> None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(redis_url)  # earlier tests on this Redis database recorded theirs
    for key in await client.keys("gateway:analytics:*"):
        await client.delete(key)
    await client.aclose()
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path), redis_url=redis_url)
    first, first_runner = await start_gateway(settings)
    second, second_runner = await start_gateway(dataclasses.replace(settings, port=free_port()))
    alice = await ConsoleClient.sign_in(first.url, "alice")
    manager = await signed_in(second.url, MANAGER[0], MANAGER[2])
    try:
        await _bot_conversation(first)
        await _bot_conversation(second)
        await _bot_conversation(second, "zh")
        # One conversation speaks to both gateways (a reconnect through the load balancer).
        chat = await ChatClient.connect(first.ws_url)
        await chat.say("hello")
        await chat.replies_of_the_turn(first)
        token = chat.token
        await chat.close()
        chat = await ChatClient.connect(second.ws_url, token=token)
        await chat.say("what is your return policy?")
        await chat.replies_of_the_turn(second)
        await chat.close()
        await _handoff_with_csat(first, alice, 4)
        for running in (first, second):
            body = await report(manager, running.url)
            t = body["totals"]
            assert t["conversations"] == 5, t
            assert t["contained"] == 4 and t["handed_off_conversations"] == 1 and t["containment"] == 0.8
            assert t["handoffs_by_reason"] == {"shopper_request": {"count": 1, "rate": 0.2}}
            assert t["csat"] == {"answers": 1, "average": 4.0, "counts": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}}
            assert t["first_response"]["count"] == 1 and t["first_response"]["within_sla"] == 1
            assert t["resolution"]["count"] == 1 and t["resolution"]["share_within_sla"] == 1.0
            zh = await report(manager, running.url, language="zh")
            assert zh["totals"]["conversations"] == 1 and zh["totals"]["handoffs"] == 0
        # Prometheus: each gateway counts what it saw first; together, each conversation once.
        seen = 0
        for running in (first, second):
            async with manager.get(f"{running.url}/metrics") as resp:
                text = await resp.text()
            seen += sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("gateway_conversations_total{"))
            if running is first:
                assert 'gateway_handoffs_total{reason="shopper_request"} 1' in text
                assert 'gateway_csat_answers_total{score="4"} 1' in text
                assert "gateway_handoff_first_response_seconds_count 1" in text
                assert "gateway_handoff_resolution_seconds_count 1" in text
        assert seen == 5
        client = redis_asyncio.from_url(redis_url)
        try:
            keys = await client.keys("gateway:analytics:*")
            ttls = [await client.ttl(k) for k in keys]
            assert keys and all(0 < ttl <= 401 * 86400 for ttl in ttls), ttls  # deleted after the retention
            stored = b"".join([str(await client.hgetall(k)).encode() for k in keys])
            assert b"webchat:" not in stored and b"human" not in stored  # no ids, no text
        finally:
            await client.aclose()
    finally:
        await alice.close()
        await manager.close()
        await first_runner.cleanup()
        await second_runner.cleanup()


async def test_without_redis_the_figures_outlive_a_restart(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path))
    running, runner = await start_gateway(settings)
    try:
        await _bot_conversation(running)
        await _bot_conversation(running, "zh")
        await settled(running.service)
    finally:
        await runner.cleanup()
    running, runner = await start_gateway(settings)
    manager = await signed_in(running.url, MANAGER[0], MANAGER[2])
    try:
        body = await report(manager, running.url, period="week")
        assert body["totals"]["conversations"] == 2 and body["totals"]["containment"] == 1.0
        assert sum(p["conversations"] for p in body["periods"]) == 2
        stored = (settings.data_dir / "analytics.sqlite3").read_bytes()
        assert b"webchat:" not in stored and b"hello" not in stored  # no ids, no text
    finally:
        await manager.close()
        await runner.cleanup()


async def test_days_past_the_retention_are_deleted(tmp_path: Path) -> None:
    """The embedded store's hourly purge (the gateway runs it at start and every hour)."""
    store = SqliteAnalyticsStore(tmp_path / "analytics.sqlite3")
    try:
        for day in ("2025-01-01", "2026-12-01"):
            await store.conversation(day, "h1", "webchat", "en", 0)
            await store.put_handoff(day, "h2", {"channel": "webchat"}, 0)
        assert await store.purge("2026-01-01") == 2
        kept = await store.read(["2025-01-01", "2026-12-01"])
        assert not kept["2025-01-01"].conversations and not kept["2025-01-01"].handoffs
        assert kept["2026-12-01"].conversations == {"h1": ("webchat", "en")} and kept["2026-12-01"].handoffs
    finally:
        store.close()


async def test_no_file_is_served_from_outside_the_static_folder(shop: RunningGateway) -> None:
    manager = await signed_in(shop.url, MANAGER[0], MANAGER[2])
    try:
        for path in ("/console/static/../analytics.py", "/console/static/..%2fanalytics.py",
                     "/console/static/%2e%2e/dashboard.py", "/console/analytics.json/../../metrics/../agents.yml"):
            async with manager.get(shop.url + path) as resp:
                body = await resp.text()
                assert resp.status in (403, 404) or "def " not in body, path
                assert "password_hash" not in body and "import " not in body, path
    finally:
        await manager.close()


@pytest.mark.parametrize("query, message", [
    ({"from": "../../etc/passwd"}, "date like"),
    ({"from": "2026-02-30"}, "not a date"),
    ({"to": "2026-13-01"}, "not a date"),
    ({"from": "1900-01-01"}, "at most 400 days"),
    ({"from": "2020-01-01", "to": "2020-01-02"}, "nothing is kept before"),
    ({"to": "2999-01-01"}, "future"),
    ({"period": "year"}, "day or week"),
    ({"channel": "webchat' OR 1=1 --"}, "'channel' is one of"),
    ({"channel": "nosuchchannel"}, "'channel' is one of"),
    ({"language": "<script>"}, "en or zh"),
    ({"from": "2026-12-03", "to": "2026-12-01"}, "after"),
    ({"path": "/etc/passwd"}, "unknown parameter"),
])
async def test_bad_queries_are_refused_with_a_reason(shop: RunningGateway, query: dict[str, str], message: str) -> None:
    manager = await signed_in(shop.url, MANAGER[0], MANAGER[2])
    try:
        for ext in ("json", "csv"):
            async with manager.get(f"{shop.url}/console/analytics.{ext}", params=query) as resp:
                assert resp.status == 400
                body = await resp.json()
                assert body["error"] == "invalid_query" and message in body["message"], body
    finally:
        await manager.close()


async def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(shop: RunningGateway) -> None:
    """A handoff reason is data (a flow's rules name it): one made to look like a formula is
    written with a leading apostrophe; numbers stay numbers."""
    assert safe_cell("=1+1") == "'=1+1" and safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("-2") == "'-2" and safe_cell("+3") == "'+3" and safe_cell(3) == "3"
    service = shop.app[HANDOFF_KEY]
    chat = await ChatClient.connect(shop.ws_url)
    manager = await signed_in(shop.url, MANAGER[0], MANAGER[2])
    try:
        await chat.say("hello")
        await chat.replies_of_the_turn(shop)
        await service.start("webchat", chat.conversation_id or "", "=HYPERLINK(\"http://evil\")", "en")
        rows = await csv_rows(manager, shop.url)
        cells = [c for r in rows for c in r.values()]
        assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
        assert total(rows, "handoffs_by_reason.count", "'=HYPERLINK(\"http://evil\")") == "1"
        assert total(rows, "conversations") == "1" and total(rows, "containment") == "0.0"
    finally:
        await chat.close()
        await manager.close()


async def test_a_flood_of_requests_is_slowed_and_shoppers_are_still_answered(shop: RunningGateway) -> None:
    manager = await signed_in(shop.url, MANAGER[0], MANAGER[2])
    try:
        async def one() -> int:
            async with manager.get(f"{shop.url}/console/analytics.json",
                                   params={"from": (shop.app[ANALYTICS_KEY].today().replace(day=1)).isoformat()}) as r:
                return r.status
        statuses = await asyncio.gather(*(one() for _ in range(60)))
        assert statuses.count(200) >= 20 and statuses.count(429) >= 20 and set(statuses) <= {200, 429}
        chat = await ChatClient.connect(shop.ws_url)
        try:
            await chat.say("hello")
            assert await chat.replies_of_the_turn(shop)
        finally:
            await chat.close()
        await asyncio.sleep(1.1)
        assert await one() == 200  # the manager's allowance comes back
    finally:
        await manager.close()


async def test_bad_analytics_settings_stop_the_start_with_every_problem_named(fake_rasa: FakeRasa,
                                                                              tmp_path: Path) -> None:
    from bot.config import ConfigError
    from gateway.app import create_app

    environ = {**team_with_manager(tmp_path), "ANALYTICS_RETENTION_DAYS": "forever", "HANDOFF_RESOLUTION_HOURS": "-1"}
    with pytest.raises(ConfigError) as refused:
        create_app(make_settings(tmp_path, fake_rasa.url, environ=environ))
    assert "ANALYTICS_RETENTION_DAYS='forever'" in str(refused.value)
    assert "HANDOFF_RESOLUTION_HOURS='-1'" in str(refused.value)


@pytest.mark.parametrize("with_redis", [False, True])
async def test_erasing_a_shopper_unlinks_their_analytics_and_keeps_the_counts(
        fake_rasa: FakeRasa, tmp_path: Path, request: pytest.FixtureRequest, with_redis: bool) -> None:
    """`./aftersales shopper erase webchat:<id>`: the conversation's analytics records are renamed
    at random (nothing leads back to it), the shop's figures stay as they were."""
    import redis.asyncio as redis_asyncio

    from handoff.analytics import conversation_hash

    redis_url = request.getfixturevalue("redis_url") if with_redis else ""
    if with_redis:
        client = redis_asyncio.from_url(redis_url)
        for key in await client.keys("gateway:analytics:*"):
            await client.delete(key)
        await client.aclose()
    settings = make_settings(tmp_path, fake_rasa.url, environ=team_with_manager(tmp_path), redis_url=redis_url)
    running, runner = await start_gateway(settings)
    alice = await ConsoleClient.sign_in(running.url, "alice")
    manager = await signed_in(running.url, MANAGER[0], MANAGER[2])
    try:
        await _bot_conversation(running)
        key = await _handoff_with_csat(running, alice, 2)
        before = (await report(manager, running.url))["totals"]
        assert (before["conversations"], before["handoffs"], before["csat"]["answers"]) == (2, 1, 1)
        env = {**os.environ, "DATA_DIR": str(settings.data_dir), "GATEWAY_SECRET": settings.secret,
               "DATA_KEYS": settings.data_keys, "REDIS_URL": redis_url}
        done = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "shopper", "erase", key, "--yes",
                                                    env=env, cwd=Path(__file__).parents[2],
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await done.communicate()
        assert done.returncode == 0, out
        # Redis: the conversation, its handoff mark and its handoff; SQLite keeps the mark in the conversation's row.
        renamed = 3 if with_redis else 2
        assert f"{renamed} analytics record(s) renamed".encode() in out, out.decode()
        after = (await report(manager, running.url))["totals"]
        for figure in ("conversations", "contained", "handoffs", "handoffs_by_reason", "csat", "first_response"):
            assert after[figure] == before[figure], figure
        hid = conversation_hash(settings.secret, key).encode()
        if with_redis:
            client = redis_asyncio.from_url(redis_url)
            try:
                names = [n for k in await client.keys("gateway:analytics:*") for n in await client.hkeys(k)]
            finally:
                await client.aclose()
            assert names and not any(n.startswith(hid) for n in names)
        else:
            import sqlite3

            with sqlite3.connect(settings.data_dir / "analytics.sqlite3") as db:
                names = [r[0].encode() for r in db.execute("SELECT hid FROM conversations UNION SELECT hid FROM handoffs")]
            assert names and not any(n.startswith(hid) for n in names)
    finally:
        await alice.close()
        await manager.close()
        await runner.cleanup()
