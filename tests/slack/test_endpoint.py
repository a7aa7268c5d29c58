"""The Events API endpoint as Slack meets it: signatures, URL verification, configuration."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.signature import Clock, SignatureVerifier

from bot.config import ConfigError
from channels.slack.config import load_slack_config
from gateway.app import CHANNELS_KEY, create_app
from tests.conftest import make_settings, start_gateway, tasks_finished
from tests.fake_rasa import FakeRasa
from tests.slack.conftest import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlackApi,
    SlackGateway,
    dm,
    event_body,
    new_id,
    sign,
    slack_env,
)

# Slack's published example (docs "Verifying requests from Slack"; also slack_sdk's own tests).
EXAMPLE_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
EXAMPLE_TIMESTAMP = "1531420618"
EXAMPLE_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_slacks_published_signing_example_verifies_and_our_test_signer_matches_it() -> None:
    verifier = SignatureVerifier(EXAMPLE_SECRET, clock=FixedClock(float(EXAMPLE_TIMESTAMP) + 10))
    assert verifier.is_valid(EXAMPLE_BODY, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE)
    assert sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == EXAMPLE_SIGNATURE
    assert not verifier.is_valid(EXAMPLE_BODY.replace("roadrunner", "coyote"), EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE)
    stale = SignatureVerifier(EXAMPLE_SECRET, clock=FixedClock(float(EXAMPLE_TIMESTAMP) + 301))
    assert not stale.is_valid(EXAMPLE_BODY, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE)


async def test_url_verification_challenge_is_answered(slack_gateway: SlackGateway) -> None:
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    answer = await slack_gateway.slack.post(body, "application/json")
    assert answer.status == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in answer.body


async def test_forged_and_stale_requests_get_401_and_nothing_is_posted(slack_gateway: SlackGateway) -> None:
    slack, fake = slack_gateway.slack, slack_gateway.fake
    channel = new_id("D")
    body = json.dumps(event_body(dm("hello", channel)))
    now = int(time.time())
    attempts = [
        await slack.post(body, "application/json", secret="not-the-shops-signing-secret-000"),
        await slack.post(body, "application/json", timestamp=str(now - 600)),  # correctly signed, too old
        await slack.post(body, "application/json", signature="v0=" + "0" * 64),
        await slack.post(body, "application/json", timestamp="soon"),
    ]
    ts = str(now)
    tampered = await slack.post(body.replace("hello", "refund all"), "application/json", timestamp=ts,
                                signature=sign(SIGNING_SECRET, ts, body))
    assert [a.status for a in attempts + [tampered]] == [401] * 5
    await slack_gateway.settled()
    assert fake.posts(channel) == []
    async with slack_gateway.http.get(slack_gateway.gateway.url + "/metrics") as resp:
        assert 'gateway_frames_rejected_total{reason="slack_signature"} 5' in await resp.text()


async def test_without_slack_settings_the_gateway_runs_without_the_slack_endpoint(tmp_path: Path) -> None:
    gateway, runner = await start_gateway(make_settings(tmp_path, "http://127.0.0.1:9", environ={}))
    try:
        assert "slack" not in gateway.app[CHANNELS_KEY]
        async with aiohttp.ClientSession() as http:
            async with http.post(gateway.url + "/slack/events", data=b"{}") as resp:
                assert resp.status == 404
    finally:
        await runner.cleanup()


def test_wrong_settings_stop_the_start_with_every_problem_named_and_no_secret_shown(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxp-user-token-secret", "SLACK_MODE": "sockets",
           "SLACK_API_BASE": "slack.example/api"}
    with pytest.raises(ConfigError) as raised:
        create_app(make_settings(tmp_path, "http://127.0.0.1:9", environ=env))
    problems = "\n".join(raised.value.problems)
    assert len(raised.value.problems) == 4
    for name in ("SLACK_BOT_TOKEN", "SLACK_MODE", "SLACK_SIGNING_SECRET", "SLACK_API_BASE"):
        assert name in problems
    assert "xoxp-user-token-secret" not in str(raised.value)

    with pytest.raises(ConfigError) as raised:
        load_slack_config({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_MODE": "socket", "SLACK_APP_TOKEN": "xoxb-wrong"})
    assert raised.value.problems == ["SLACK_APP_TOKEN must be an app-level token starting with xapp- "
                                     "(Basic Information > App-Level Tokens)"]
    with pytest.raises(ConfigError) as raised:
        load_slack_config({"SLACK_SIGNING_SECRET": SIGNING_SECRET})
    assert [p.split(" ")[0] for p in raised.value.problems] == ["SLACK_BOT_TOKEN"]

    assert load_slack_config({"SLACK_API_BASE": "http://127.0.0.1:1/api"}) is None  # not switched on
    config = load_slack_config({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET})
    assert config is not None and config.mode == "http" and config.api_base == "https://slack.com/api/"
    assert BOT_TOKEN not in repr(config) and SIGNING_SECRET not in repr(config)


async def test_a_gateway_that_cannot_bind_does_not_start_on_slack(fake_rasa: FakeRasa, tmp_path: Path,
                                                                  fake_slack: FakeSlackApi) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = make_settings(tmp_path, fake_rasa.url, port=taken.getsockname()[1],
                                 environ=slack_env(fake_slack))
        before = asyncio.all_tasks()
        with pytest.raises(OSError):
            await start_gateway(settings)
        await tasks_finished(before)  # the failed start left nothing running that could still call Slack
        assert fake_slack.calls_of("auth.test", ok_only=False) == []  # nothing told Slack we are up
