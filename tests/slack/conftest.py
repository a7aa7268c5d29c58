"""Slack fixtures: the fake Web API, a gateway with Slack configured against it, and a client that
sends requests to the gateway's real endpoint signed the way Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import RunningGateway, make_settings, settled, start_gateway
from tests.slack.fake_web_api import ApiCall, FakeSlackApi

BOT_TOKEN = "xoxb-1111-2222-testbottoken"
APP_TOKEN = "xapp-1-A111-2222-testapptoken"
SIGNING_SECRET = "5c0ffee5ecret0123456789abcdef0123"
BOT_USER = "UAPPBOT"
SHOPPER = "UBUYER01"


def new_id(prefix: str) -> str:
    """A fresh Slack-style id (channels, events, files) so tests never share state."""
    return prefix + uuid.uuid4().hex[:12].upper()


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's request signature: v0= HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def slack_env(fake: FakeSlackApi, mode: str = "http") -> dict[str, str]:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_BASE": fake.api_base}
    if mode == "socket":
        env.update({"SLACK_MODE": "socket", "SLACK_APP_TOKEN": APP_TOKEN})
    else:
        env["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
    return env


def event_body(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """An Events API `event_callback` envelope around `event`."""
    return {"token": "legacy-verification-token", "team_id": "TSHOP", "api_app_id": "AFAKE", "event": event,
            "type": "event_callback", "event_id": event_id or new_id("Ev"), "event_time": int(time.time()),
            "authorizations": [{"team_id": "TSHOP", "user_id": BOT_USER, "is_bot": True}]}


def slack_ts() -> str:
    return f"{time.time():.6f}"


def dm(text: str, channel: str, user: str = SHOPPER, **extra: Any) -> dict[str, Any]:
    """A direct message from a shopper to the app."""
    return {"type": "message", "channel": channel, "channel_type": "im", "user": user, "text": text,
            "ts": slack_ts(), **extra}


def mention(text: str, channel: str, user: str = SHOPPER, **extra: Any) -> dict[str, Any]:
    """An `app_mention` in a channel: `<@app> text`."""
    return {"type": "app_mention", "channel": channel, "user": user, "text": f"<@{BOT_USER}> {text}",
            "ts": slack_ts(), **extra}


def click_payload(post: ApiCall, title: str, user: str = SHOPPER) -> dict[str, Any]:
    """The block_actions payload Slack sends when `user` clicks the button titled `title` on `post`."""
    message_ts = post.ts
    actions_block = next(b for b in post.blocks if b["type"] == "actions")
    button = next(e for e in actions_block["elements"] if e["text"]["text"] == title)
    message = {"type": "message", "user": BOT_USER, "bot_id": "BAPPBOT", "text": post.text, "ts": message_ts,
               "blocks": post.blocks}
    container = {"type": "message", "message_ts": message_ts, "channel_id": post.channel, "is_ephemeral": False}
    if post.params.get("thread_ts"):
        message["thread_ts"] = container["thread_ts"] = post.params["thread_ts"]
    return {
        "type": "block_actions", "user": {"id": user, "username": "buyer", "team_id": "TSHOP"},
        "api_app_id": "AFAKE", "token": "legacy-verification-token", "container": container,
        "trigger_id": "1337.42.abcdef", "team": {"id": "TSHOP", "domain": "shop"},
        "channel": {"id": post.channel, "name": "directmessage"}, "message": message,
        "response_url": "https://hooks.slack.com/actions/TSHOP/1/abc",
        "actions": [{**button, "block_id": actions_block["block_id"], "action_ts": slack_ts()}],
    }


@dataclass
class Delivered:
    status: int
    body: str
    seconds: float


class SlackClient:
    """Sends requests to the gateway's /slack/events the way Slack does (signed, form or JSON)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.url = base_url + "/slack/events"
        self.session = session

    async def post(self, body: str, content_type: str, *, secret: str = SIGNING_SECRET,
                   timestamp: str | None = None, headers: dict[str, str] | None = None,
                   signature: str | None = None) -> Delivered:
        ts = timestamp if timestamp is not None else str(int(time.time()))
        all_headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                       "X-Slack-Signature": signature or sign(secret, ts, body), **(headers or {})}
        started = time.monotonic()
        async with self.session.post(self.url, data=body.encode(), headers=all_headers) as resp:
            text = await resp.text()
        return Delivered(resp.status, text, time.monotonic() - started)

    async def event(self, event: dict[str, Any], event_id: str | None = None, retry_num: int | None = None,
                    **kwargs: Any) -> Delivered:
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        return await self.post(json.dumps(event_body(event, event_id)), "application/json", headers=headers, **kwargs)

    async def interaction(self, payload: dict[str, Any]) -> Delivered:
        return await self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")


async def slack_settled(gateway: RunningGateway) -> None:
    """Until the gateway has finished every Slack delivery it accepted (tests/conftest.py
    `settled`): each was handed to the conversation service and answered, and its bookkeeping
    (button updates, inbox removal) is done. Bolt runs the listeners before it answers Slack
    (`process_before_response`), so whatever a delivery the gateway acknowledged starts is in
    the intake's tasks by then; asserting "nothing more was posted" is safe after this."""
    from channels.slack import SLACK_KEY

    intake = gateway.app[SLACK_KEY].intake
    await settled(gateway.service, lambda: any(not t.done() for t in list(intake._tasks)))


@dataclass
class SlackGateway:
    gateway: RunningGateway
    fake: FakeSlackApi
    slack: SlackClient
    http: aiohttp.ClientSession

    async def settled(self) -> None:
        await slack_settled(self.gateway)


@pytest.fixture
async def slack_gateway(rasa_url: str, tmp_path: Path, fake_slack: FakeSlackApi) -> AsyncIterator[SlackGateway]:
    """A gateway with Slack (HTTP mode) against the fake Web API, in front of the fake Rasa (`rasa_url`)."""
    settings = make_settings(tmp_path, rasa_url, environ=slack_env(fake_slack))
    running, runner = await start_gateway(settings)
    http = aiohttp.ClientSession()
    try:
        yield SlackGateway(running, fake_slack, SlackClient(running.url, http), http)
    finally:
        await http.close()
        await runner.cleanup()
