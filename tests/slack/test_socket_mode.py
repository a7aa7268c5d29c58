"""Socket Mode, for shops without a public URL: the gateway connects out, acks envelopes, answers."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.slack.conftest import APP_TOKEN, click_payload, dm, event_body, new_id, slack_env, slack_settled
from tests.slack.fake_web_api import FakeSlackApi


async def test_socket_mode_acks_envelopes_and_answers_messages_and_clicks(
        fake_rasa: FakeRasa, tmp_path: Path, fake_slack: FakeSlackApi) -> None:
    channel, event_id = new_id("D"), new_id("Ev")
    settings = make_settings(tmp_path, fake_rasa.url, environ=slack_env(fake_slack, mode="socket"))
    gateway, runner = await start_gateway(settings)
    try:
        [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_of("apps.connections.open"), 15)
        assert opened.token == APP_TOKEN  # the app-level token opens the socket, not the bot token

        envelope = {"envelope_id": "env-1", "type": "events_api", "accepts_response_payload": False,
                    "retry_attempt": 0, "retry_reason": "", "payload": event_body(dm("hello", channel), event_id)}
        await fake_slack.push_envelope(envelope)
        await fake_slack.wait_for(lambda: [a for a in fake_slack.socket_acks if a.get("envelope_id") == "env-1"])
        [greeting] = await fake_slack.wait_for_posts(channel)
        assert "after-sales assistant" in greeting.block_text()

        # Slack redelivers when it missed the ack: acked again, not answered again.
        await fake_slack.push_envelope({**envelope, "envelope_id": "env-2", "retry_attempt": 1,
                                        "retry_reason": "timeout"})
        await fake_slack.wait_for(lambda: [a for a in fake_slack.socket_acks if a.get("envelope_id") == "env-2"])

        await fake_slack.push_envelope({"envelope_id": "env-3", "type": "interactive",
                                        "accepts_response_payload": False,
                                        "payload": click_payload(greeting, "Return / refund")})
        await fake_slack.wait_for(lambda: [a for a in fake_slack.socket_acks if a.get("envelope_id") == "env-3"])
        answer = (await fake_slack.wait_for_posts(channel, 2))[1]
        assert answer.text.startswith("I can sort this out for you")
        await slack_settled(gateway)
        assert len(fake_slack.posts(channel)) == 2

        async with aiohttp.ClientSession() as http:
            async with http.post(gateway.url + "/slack/events", data=b"{}") as resp:
                assert resp.status in (404, 405)  # no public endpoint in Socket Mode
    finally:
        await runner.cleanup()
    await fake_slack.wait_for(lambda: fake_slack.open_sockets == 0, 5)  # the gateway closed its socket
