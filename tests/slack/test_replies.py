"""How replies look in Slack: images, long texts, signals, handoff, and a busy conversation."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bot.messages import OutboundReply
from tests.conftest import free_port, make_settings, start_gateway
from tests.fake_rasa import FakeRasa
from tests.slack.conftest import SlackClient, SlackGateway, click_payload, dm, new_id, slack_env, slack_settled
from tests.slack.fake_web_api import FakeSlackApi


async def test_images_long_texts_and_signals_render_as_a_shopper_expects(slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("C")
    conversation = f"{channel}:1700000000.000100"
    output = slack_gateway.gateway.service.output_for("slack")
    await output.send_reply(conversation, OutboundReply(text="Here is the label:",
                                                        image="https://shop.example/label.png?a=1&b=2"))
    await output.send_reply(conversation, OutboundReply(custom={"handoff": {"reason": "shopper_request"}}))
    long_text = "\n".join(f"Line {i}: " + "x" * 90 for i in range(100))  # ~10,000 characters
    await output.send_text(conversation, long_text)

    posts = await fake.wait_for_posts(channel, 5)
    assert posts[0].text == "Here is the label:"
    assert posts[1].blocks == [{"type": "image", "image_url": "https://shop.example/label.png?a=1&b=2",
                                "alt_text": "image"}]
    assert posts[1].text  # a fallback for notifications
    pieces = [p.text for p in posts[2:]]
    assert all(len(p) <= 4000 for p in pieces) and "\n".join(pieces) == long_text  # split at lines, in order
    assert all(p.params["thread_ts"] == "1700000000.000100" for p in posts)
    await slack_gateway.settled()
    assert len(fake.posts(channel)) == 5  # the handoff signal itself is not shown as a message
    assert not any("handoff" in p.text or "shopper_request" in p.text for p in fake.posts(channel))


async def test_asking_for_a_person_shows_the_handoff_text_not_its_payload(slack_gateway: SlackGateway) -> None:
    fake, channel = slack_gateway.fake, new_id("D")
    await slack_gateway.slack.event(dm("hello", channel))
    [greeting] = await fake.wait_for_posts(channel)
    await slack_gateway.slack.interaction(click_payload(greeting, "Talk to a person"))
    reply = (await fake.wait_for_posts(channel, 2))[1]
    assert reply.text.strip()  # the shopper is told what happens, in words
    await slack_gateway.settled()
    for post in fake.posts(channel)[1:]:
        shown = post.text + post.block_text()
        assert "{" not in shown and "handoff" not in shown and "shopper_request" not in shown


async def test_a_shopper_who_keeps_writing_while_unanswered_is_asked_to_wait(
        tmp_path: Path, fake_slack: FakeSlackApi) -> None:
    channel = new_id("D")
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}", environ=slack_env(fake_slack),
                             max_pending_per_conversation=1, holding_after_seconds=30.0)
    gateway, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            slack = SlackClient(gateway.url, http)
            assert (await slack.event(dm("hello", channel))).status == 200
            assert (await slack.event(dm("are you there?", channel))).status == 200  # acked: no Slack retries
        [busy] = await fake_slack.wait_for_posts(channel)
        assert busy.text.startswith("Please wait for an answer")
    finally:
        await runner.cleanup()


async def test_messages_sent_while_the_first_is_unanswered_are_all_answered_in_order(
        fake_rasa: FakeRasa, tmp_path: Path, fake_slack: FakeSlackApi) -> None:
    """The one full-queue policy (bot/intake.py): Slack was told each message arrived, so none
    is refused; the ones beyond the limit wait, and the shopper is told so once."""
    channel = new_id("D")
    settings = make_settings(tmp_path, fake_rasa.url, environ=slack_env(fake_slack),
                             max_pending_per_conversation=1)
    gateway, runner = await start_gateway(settings)
    try:
        async with aiohttp.ClientSession() as http:
            slack = SlackClient(gateway.url, http)
            for text in ("hello", "thanks", "bye"):
                assert (await slack.event(dm(text, channel))).status == 200
        posts = await fake_slack.wait_for_posts(channel, 4)
        await slack_settled(gateway)
        texts = [p.text for p in fake_slack.posts(channel)]
        notices = [t for t in texts if t.startswith("Please wait for an answer")]
        answers = [t for t in texts if t not in notices]
        assert len(notices) == 1 and "will answer it" in notices[0]
        assert len(answers) == 3 and "after-sales assistant" in answers[0]
        assert answers[1].startswith("You're welcome") and answers[2].startswith("Goodbye")
        assert len(posts) == 4
    finally:
        await runner.cleanup()
