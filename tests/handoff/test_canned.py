"""Canned replies: a text per language, variables filled from the conversation, and never
a reply sent with a variable nobody filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError
from handoff.canned import fill, load_canned, parse_canned
from handoff.texts import DEFAULT_CANNED
from tests.conftest import ChatClient, RunningGateway
from tests.handoff.conftest import ConsoleClient

ALLERGY_ZH = "涂了 AS10005 的精华脸上起红疹"


def test_canned_variables_are_filled_in_the_conversations_language_and_unknown_ones_left() -> None:
    replies = {c.title: c for c in load_canned(None, DEFAULT_CANNED)}
    refund = replies["Refund on its way"]
    known = {"order": "AS10005", "case": "RT-123456", "item": None, "name": None}
    assert fill(refund.text("en"), known, "en") == (
        "The refund for order AS10005 (case RT-123456) has been approved; it reaches your original payment "
        "method within 1-3 working days.")
    assert fill(refund.text("zh"), known, "zh") == "订单 AS10005 的退款（售后单 RT-123456）已审核通过，1-3 个工作日内原路退回。"
    # Not known: left for the agent, exactly as written; a name falls back to a neutral greeting.
    looking = replies["Looking into it"]
    assert fill(looking.text("en"), {}, "en") == "Hello, thanks for waiting! I'm looking into order {order} now."
    assert fill(looking.text("zh"), {}, "zh") == "您好！感谢您的耐心等待，我正在为您查询订单 {order}。"
    assert fill(looking.text("en"), {"name": "Li Na", "order": "AS10001"}, "en").startswith("Hi Li Na, thanks")
    assert fill(looking.text("zh"), {"name": "李娜"}, "zh").startswith("李娜，您好！")


def test_canned_replies_file_takes_texts_per_language_and_the_older_single_text(tmp_path: Path) -> None:
    path = tmp_path / "canned.yml"
    path.write_text('- {title: Hi, text: {en: "Hello {name}", zh: "{name}！"}}\n'
                    '- {title: Old, text: "Your order {order} is on its way."}\n', encoding="utf-8")
    new, old = load_canned(path, [])
    assert (new.text("zh"), old.text("en"), old.text("zh")) == ("{name}！", "Your order {order} is on its way.",
                                                                "Your order {order} is on its way.")
    with pytest.raises(ConfigError, match="entry 1"):
        parse_canned([{"title": "x", "text": {"fr": "Bonjour"}}], "CANNED_REPLIES_FILE=x")


async def test_canned_replies_come_filled_in_chinese_and_an_unfilled_variable_is_never_sent(
        team_gateway: RunningGateway) -> None:
    alice = await ConsoleClient.sign_in(team_gateway.url, "alice")
    zh = await ChatClient.connect(team_gateway.ws_url, locale="zh-CN")
    plain = await ChatClient.connect(team_gateway.ws_url)
    try:
        await zh.say(ALLERGY_ZH)
        await zh.replies_of_the_turn(team_gateway)
        await plain.say("I want to talk to a human")
        await plain.replies_of_the_turn(team_gateway)
        zh_key, plain_key = f"webchat:{zh.conversation_id}", f"webchat:{plain.conversation_id}"
        await alice.state_where(lambda s: len(s["queue"]) == 2)
        for key, chat in ((zh_key, zh), (plain_key, plain)):
            await alice.send(type="claim", key=key)
            assert (await alice.next("claimed"))["ok"] is True
            await chat.next_frame("reply")  # "you are now chatting with"

        await alice.send(type="open", key=zh_key)
        canned = {c["title"]: c["text"] for c in (await alice.next("conversation"))["canned"]}
        refund = canned["Refund on its way"]
        assert refund.startswith("订单 AS10005 的退款（售后单 RT-") and "{" not in refund
        await alice.send(type="reply", key=zh_key, text=refund)
        assert (await zh.next_frame("reply"))["text"] == refund

        await alice.send(type="open", key=plain_key)
        canned = {c["title"]: c["text"] for c in (await alice.next("conversation"))["canned"]}
        assert canned["Looking into it"] == "Hello, thanks for waiting! I'm looking into order {order} now."
        await alice.send(type="reply", key=plain_key, text=canned["Looking into it"])
        error = await alice.next("error")
        assert error["code"] == "unfilled_variable" and "{order}" in error["message"]
        assert await plain.unread_replies(team_gateway) == []  # the shopper never sees "{order}"
    finally:
        await zh.close()
        await plain.close()
        await alice.close()


