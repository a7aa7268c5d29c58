"""Shoppers talking to the shop's Slack app, through the gateway, to the real Rasa."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings, start_gateway
from tests.slack.conftest import BOT_USER, SlackGateway, click_payload, dm, mention, new_id, slack_ts


async def test_a_direct_message_is_answered_with_text_and_block_kit_buttons(slack_gateway: SlackGateway) -> None:
    channel = new_id("D")
    delivered = await slack_gateway.slack.event(dm("hello", channel))
    assert delivered.status == 200
    [post] = await slack_gateway.fake.wait_for_posts(channel)
    assert "after-sales assistant" in post.block_text()
    assert [b["text"]["text"] for b in post.buttons()] == ["Return / refund", "Exchange", "Make a complaint",
                                                           "Track a case", "Talk to a person"]
    assert [b["value"] for b in post.buttons()] == ["/request_return", "/request_exchange", "/file_complaint",
                                                    "/check_progress", "/request_human"]
    assert len({b["action_id"] for b in post.buttons()}) == 5
    assert "after-sales assistant" in post.text and "Return / refund" in post.text  # notification fallback
    assert "thread_ts" not in post.params  # a DM is one conversation, not threads


async def test_a_button_click_is_acknowledged_at_once_then_answered_and_the_buttons_replaced(
        slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("D")
    await slack_gateway.slack.event(dm("hello", channel))
    [greeting] = await fake.wait_for_posts(channel)

    ack = await slack_gateway.slack.interaction(click_payload(greeting, "Return / refund"))
    assert ack.status == 200 and ack.seconds < 3.0
    assert len(fake.posts(channel)) == 1  # acknowledged before the answer exists: work is done after

    answer = (await fake.wait_for_posts(channel, 2))[1]
    assert answer.text.startswith("I can sort this out for you")
    update = await fake.wait_for(lambda: fake.calls_of("chat.update"))
    assert update[0].params["channel"] == channel and update[0].params["ts"] == greeting.ts
    assert [b["type"] for b in update[0].blocks] == ["section", "context"]  # no buttons left to press twice
    assert "\u2713 Return / refund" in update[0].block_text()


async def test_a_mention_in_a_channel_is_answered_in_its_thread_and_the_thread_continues(
        slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("C")
    question = mention("hello", channel)
    await slack_gateway.slack.event(question)
    [greeting] = await fake.wait_for_posts(channel)
    assert greeting.params["thread_ts"] == question["ts"]
    assert "after-sales assistant" in greeting.block_text()
    tracker = await slack_gateway.gateway.service.rasa.tracker(f"slack:{channel}:{question['ts']}")
    assert tracker["latest_message"]["text"] == "hello"  # the app's mention is not part of what was said

    # A reply in the thread without mentioning the app (message.channels subscription).
    follow_up = {"type": "message", "channel": channel, "channel_type": "channel", "user": "UBUYER01",
                 "text": "thanks", "ts": slack_ts(), "thread_ts": question["ts"]}
    await slack_gateway.slack.event(follow_up)
    welcome = (await fake.wait_for_posts(channel, 2))[1]
    assert welcome.text.startswith("You're welcome") and welcome.params["thread_ts"] == question["ts"]

    # Chatter elsewhere in the channel is not the app's business.
    await slack_gateway.slack.event({"type": "message", "channel": channel, "channel_type": "channel",
                                     "user": "UOTHER01", "text": "hello team", "ts": slack_ts()})
    await slack_gateway.settled()
    assert len(fake.posts(channel)) == 2


async def test_the_apps_own_messages_and_edits_are_ignored(slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("D")
    ignored = [
        dm("thanks", channel, user=BOT_USER),  # the app's own message echoed back
        dm("thanks", channel, bot_id="BAPPBOT", subtype="bot_message"),
        dm("thanks", channel, bot_id="BOTHERBOT"),  # another bot: no bot-to-bot loops
        {"type": "message", "subtype": "message_changed", "channel": channel, "channel_type": "im",
         "ts": slack_ts(), "message": {"type": "message", "user": "UBUYER01", "text": "thanks", "ts": slack_ts()}},
        {"type": "message", "subtype": "message_deleted", "channel": channel, "channel_type": "im",
         "ts": slack_ts(), "deleted_ts": slack_ts()},
    ]
    for event in ignored:
        assert (await slack_gateway.slack.event(event)).status == 200
    await slack_gateway.slack.event(dm("hello", channel))
    await fake.wait_for_posts(channel)
    await slack_gateway.settled()
    assert ["after-sales assistant" in p.block_text() for p in fake.posts(channel)] == [True]


async def test_a_retried_delivery_is_answered_once(slack_gateway: SlackGateway) -> None:
    fake, channel, event_id = slack_gateway.fake, new_id("D"), new_id("Ev")
    event = dm("hello", channel)
    first = await slack_gateway.slack.event(event, event_id=event_id)
    retry = await slack_gateway.slack.event(event, event_id=event_id, retry_num=1)
    assert first.status == retry.status == 200
    await fake.wait_for_posts(channel)
    late_retry = await slack_gateway.slack.event(event, event_id=event_id, retry_num=2)
    assert late_retry.status == 200
    await slack_gateway.settled()
    assert len(fake.posts(channel)) == 1


async def test_rate_limited_replies_wait_for_retry_after_and_arrive_in_order(slack_gateway: SlackGateway) -> None:
    fake = slack_gateway.fake
    busy, other = new_id("D"), new_id("D")
    fake.rate_limit("chat.postMessage", times=1, retry_after=1, channel=busy)
    await slack_gateway.slack.event(dm("hello", busy))
    await slack_gateway.slack.event(dm("thanks", busy))
    await slack_gateway.slack.event(dm("hello", other))

    posts = await fake.wait_for_posts(busy, 2)
    assert "after-sales assistant" in posts[0].block_text()
    assert posts[1].text.startswith("You're welcome")
    [refused] = [c for c in fake.calls_of("chat.postMessage", ok_only=False) if c.status == 429]
    assert refused.channel == busy and "after-sales assistant" in refused.text  # the same message, resent
    assert posts[0].at - refused.at >= 0.9  # Retry-After: 1 was honoured
    [other_post] = await fake.wait_for_posts(other)
    assert other_post.at < posts[0].at  # the other conversation did not wait


async def test_text_is_escaped_so_it_cannot_mention_or_link(slack_gateway: SlackGateway) -> None:
    channel = new_id("D")
    output = slack_gateway.gateway.service.output_for("slack")
    await output.send_text(channel, "<script>&<@U123> <!channel> <https://evil.example|your order>")
    [post] = await slack_gateway.fake.wait_for_posts(channel)
    assert post.text == ("&lt;script&gt;&amp;&lt;@U123&gt; &lt;!channel&gt; "
                         "&lt;https://evil.example|your order&gt;")


async def test_a_shared_file_reaches_the_conversation_and_is_fetched_through_the_gateway(
        slack_gateway: SlackGateway, tmp_path: Path) -> None:
    fake, channel, file_id = slack_gateway.fake, new_id("D"), new_id("F")
    photo = b"\x89PNG\r\n\x1a\n" + b"damaged parcel" * 100
    shared = fake.add_file(file_id, photo, "parcel.png", "image/png")
    await slack_gateway.slack.event(dm("my parcel arrived damaged", channel, subtype="file_share", files=[shared]))
    await fake.wait_for_posts(channel)

    tracker = await slack_gateway.gateway.service.rasa.tracker(f"slack:{channel}")
    [attachment] = tracker["latest_message"]["metadata"]["attachments"]
    assert attachment["kind"] == "image" and attachment["name"] == "parcel.png"
    assert attachment["url"].startswith(slack_gateway.gateway.url + f"/slack/files/{file_id}")
    async with slack_gateway.http.get(attachment["url"]) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert await resp.read() == photo
    assert fake.file_downloads[-1] == (file_id, "Bearer xoxb-1111-2222-testbottoken")

    # After a restart (nothing in memory) the link still works: the file is looked up with files.info.
    path = attachment["url"].removeprefix(slack_gateway.gateway.url)
    settings = make_settings(tmp_path, "http://127.0.0.1:9", environ=slack_gateway.gateway.settings.environ)
    restarted, runner = await start_gateway(settings)
    try:
        async with slack_gateway.http.get(restarted.url + path) as resp:
            assert resp.status == 200 and await resp.read() == photo
        assert [c.params["file"] for c in fake.calls_of("files.info")] == [file_id]
    finally:
        await runner.cleanup()

    base = slack_gateway.gateway.url + "/slack/files/"
    for url in (base + new_id("F"), base + new_id("F") + "?sig=" + attachment["url"].split("sig=")[1],
                attachment["url"][:-4] + "0000", base + file_id):
        async with slack_gateway.http.get(url) as resp:
            assert resp.status == 404, url  # not an open proxy: only links the gateway handed out


async def test_a_bare_mention_gets_a_greeting_and_a_second_click_on_the_same_message_is_ignored(
        slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("C")
    await slack_gateway.slack.event({"type": "app_mention", "channel": channel, "user": "UBUYER01",
                                     "text": f"<@{BOT_USER}>", "ts": slack_ts()})
    [greeting] = await fake.wait_for_posts(channel)
    assert "after-sales assistant" in greeting.block_text()
    first = await slack_gateway.slack.interaction(click_payload(greeting, "Return / refund"))
    again = await slack_gateway.slack.interaction(click_payload(greeting, "Talk to a person"))
    assert first.status == again.status == 200
    answer = (await fake.wait_for_posts(channel, 2))[1]
    assert answer.text.startswith("I can sort this out for you")
    assert answer.params["thread_ts"] == greeting.params["thread_ts"]  # the click stays in the thread
    await slack_gateway.settled()
    assert len(fake.posts(channel)) == 2, "the second click was answered too"
