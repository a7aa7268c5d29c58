"""SLA escalation (handoff/sla.py): a handed-off conversation whose first response comes near
its deadline gets a warning on every console and in its agents' Slack thread; once the
deadline passes, a breach notice, once, in the thread and in the agents' channel, and the
conversation is escalated to the supervisors (marked, named in the notice and the log). The
resolution deadline is watched the same way. With two gateways on one Redis each alert is
raised once, and every console hears it.

Deadlines are fast-forwarded: the test moves a handoff's due time into the past in the store
instead of waiting 30 minutes (the check itself runs on its own timer, every 0.2 s here)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from handoff import HANDOFF_KEY
from tests.conftest import ChatClient, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.handoff.conftest import ConsoleClient, team_environ
from tests.handoff.test_handoff import ask_for_a_person
from tests.slack.conftest import new_id, slack_env
from tests.slack.fake_web_api import FakeSlackApi

SLA_ENV = {"HANDOFF_FIRST_RESPONSE_MINUTES": "5", "HANDOFF_SLA_CHECK_SECONDS": "0.2", "HANDOFF_SUPERVISORS": "carol"}


def notices(console: ConsoleClient, level: str | None = None, timer: str | None = None) -> list[dict[str, Any]]:
    return [f for f in console.frames if f["type"] == "notice" and (level is None or f["level"] == level)
            and (timer is None or f["timer"] == timer)]


async def test_warning_then_breach_once_escalated_to_the_supervisors_in_console_and_slack(
        fake_rasa: FakeRasa, fake_slack: FakeSlackApi, tmp_path: Path) -> None:
    channel = new_id("C")
    environ = team_environ(tmp_path, **slack_env(fake_slack), **SLA_ENV, SLACK_AGENTS_CHANNEL=channel)
    gateway, runner = await start_gateway(make_settings(tmp_path, fake_rasa.url, environ=environ))
    alice = await ConsoleClient.sign_in(gateway.url, "alice")
    carol = await ConsoleClient.sign_in(gateway.url, "carol")
    shopper = await ChatClient.connect(gateway.ws_url)
    key = f"webchat:{shopper.conversation_id}"
    store = gateway.app[HANDOFF_KEY].store
    try:
        await ask_for_a_person(shopper, gateway)
        # Due in 5 minutes, within the 10-minute warning: a warning, on every console.
        warning = await alice.next("notice")
        assert (warning["level"], warning["timer"], warning["key"]) == ("warning", "first_response", key)
        assert "first response is due at" in warning["text"] and "CST" in warning["text"]  # the team's zone
        assert (await carol.next("notice"))["level"] == "warning"
        [parent] = await fake_slack.wait_for_posts(channel)
        await fake_slack.wait_for(lambda: [p for p in fake_slack.posts(channel)
                                           if p.params.get("thread_ts") == parent.ts and "First response due" in p.text])

        # Nobody answered: the deadline passes.
        now = gateway.app[HANDOFF_KEY].clock()
        await store.update(key, first_response_due=now - 1)
        breach = await alice.next("notice")
        assert (breach["level"], breach["timer"], breach["escalated"]) == ("breached", "first_response", True)
        assert "escalated to the supervisors" in breach["text"]
        state = await carol.state_where(lambda s: any(i["key"] == key and i["escalated"] for i in s["queue"]))
        assert next(i for i in state["queue"] if i["key"] == key)["sla"] == "breached"
        top_level = await fake_slack.wait_for(lambda: [p for p in fake_slack.posts(channel)
                                                       if not p.params.get("thread_ts") and "SLA breached" in p.text])
        assert "escalated to Carol Wu" in top_level[0].text and "shopper request, webchat, en" in top_level[0].text
        await alice.send(type="claim", key=key)
        assert (await alice.next("claimed"))["ok"] is True
        await alice.send(type="open", key=key)
        view = await alice.next("conversation")
        assert any(e["role"] == "system" and e["text"] == "First response late: escalated to Carol Wu"
                   for e in view["transcript"])

        # Raised once: several more checks change nothing.
        await asyncio.sleep(1.0)
        assert len(notices(alice, "breached", "first_response")) == 1
        assert len([p for p in fake_slack.posts(channel) if "SLA breached" in p.text]) == 2  # thread + channel

        # The resolution deadline (24 h) comes near: warned too.
        await store.update(key, resolution_due=gateway.app[HANDOFF_KEY].clock() + 60)
        resolution = await alice.next("notice")
        assert (resolution["level"], resolution["timer"]) == ("warning", "resolution")
        assert shopper.frames[-1]["type"] != "notice"  # nothing of this reaches the shopper
    finally:
        await shopper.close()
        await alice.close()
        await carol.close()
        await runner.cleanup()


async def test_with_two_gateways_an_alert_is_raised_once_and_heard_on_both(
        fake_rasa: FakeRasa, tmp_path: Path, redis_url: str) -> None:
    environ = team_environ(tmp_path, **SLA_ENV)
    a, runner_a = await start_gateway(make_settings(tmp_path / "a", fake_rasa.url, environ=environ, redis_url=redis_url))
    b, runner_b = await start_gateway(make_settings(tmp_path / "b", fake_rasa.url, environ=environ, redis_url=redis_url))
    on_a = await ConsoleClient.sign_in(a.url, "alice")
    on_b = await ConsoleClient.sign_in(b.url, "bob")
    shopper = await ChatClient.connect(a.ws_url)
    key = f"webchat:{shopper.conversation_id}"
    try:
        await ask_for_a_person(shopper, a)
        assert (await on_a.next("notice"))["key"] == key
        assert (await on_b.next("notice"))["key"] == key
        await b.app[HANDOFF_KEY].store.update(key, first_response_due=b.app[HANDOFF_KEY].clock() - 1)
        assert (await on_a.next("notice"))["level"] == "breached"
        assert (await on_b.next("notice"))["level"] == "breached"
        await asyncio.sleep(1.0)  # both gateways checked several times more
        for console in (on_a, on_b):
            assert [(n["level"], n["timer"]) for n in notices(console)] == \
                [("warning", "first_response"), ("breached", "first_response")]
    finally:
        await shopper.close()
        await on_a.close()
        await on_b.close()
        await runner_b.cleanup()
        await runner_a.cleanup()
