"""Acknowledged Slack deliveries survive a gateway restart (Redis), and are answered once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import redis.asyncio as redis_asyncio

from tests.conftest import free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.slack.conftest import SlackClient, dm, new_id, slack_env, slack_settled
from tests.slack.fake_web_api import FakeSlackApi


async def test_an_acknowledged_message_is_answered_after_a_restart_and_retries_stay_duplicates(
        fake_rasa: FakeRasa, tmp_path: Path, fake_slack: FakeSlackApi, redis_url: str) -> None:
    env, channel, event_id = slack_env(fake_slack), new_id("D"), new_id("Ev")
    dead_rasa = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as http:
        first, runner = await start_gateway(make_settings(tmp_path, dead_rasa, redis_url=redis_url, environ=env))
        try:
            delivered = await SlackClient(first.url, http).event(dm("hello", channel), event_id=event_id)
            assert delivered.status == 200  # Slack considers it delivered
            [holding] = await fake_slack.wait_for_posts(channel)
            assert "taking longer than usual" in holding.text
        finally:
            await runner.cleanup()  # the gateway stops before Rasa came back

        second, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, redis_url=redis_url,
                                                           environ=env))
        try:
            answer = (await fake_slack.wait_for_posts(channel, 2))[1]
            assert "after-sales assistant" in answer.block_text()
        finally:
            await runner.cleanup()

        # A third start, with fresh memory: nothing is replayed twice, and Slack's late retry of
        # the same event is recognised from Redis and not answered again.
        third, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, redis_url=redis_url,
                                                          environ=env))
        try:
            retry = await SlackClient(third.url, http).event(dm("hello", channel), event_id=event_id, retry_num=3)
            assert retry.status == 200
            await slack_settled(third)
            # The delivery is no longer kept (bot/inbox.py), so no take-over can answer it again.
            store = redis_asyncio.Redis.from_url(redis_url)
            try:
                async with asyncio.timeout(10):
                    while await store.hexists("gateway:inbox:slack", f"event:{event_id}"):
                        await asyncio.sleep(0.05)
            finally:
                await store.aclose()
            await slack_settled(third)
            assert len(fake_slack.posts(channel)) == 2
        finally:
            await runner.cleanup()


async def test_when_redis_is_down_the_delivery_is_refused_so_slack_retries_it(
        fake_rasa: FakeRasa, tmp_path: Path, fake_slack: FakeSlackApi) -> None:
    channel = new_id("D")
    settings = make_settings(tmp_path, fake_rasa.url, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                             environ=slack_env(fake_slack))
    gateway, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            delivered = await SlackClient(gateway.url, http).event(dm("hello", channel))
        assert delivered.status >= 500  # not acknowledged: Slack delivers it again later
        await slack_settled(gateway)
        assert fake_slack.posts(channel) == []
    finally:
        await runner.cleanup()
