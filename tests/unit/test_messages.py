from __future__ import annotations

import pytest

from bot.messages import Attachment, Button, InboundMessage, MessageFormatError, OutboundReply, parse_rasa_replies


def test_rasa_reply_dicts_are_parsed_into_typed_replies() -> None:
    replies = parse_rasa_replies([
        {"recipient_id": "x", "text": "Pick one", "buttons": [{"title": "Yes", "payload": "/affirm"}]},
        {"recipient_id": "x", "image": "https://shop.example/a.png"},
        {"recipient_id": "x", "custom": {"handoff": {"reason": "allergy"}}},
        {"recipient_id": "x", "text": "plain"},
    ])
    assert replies[0] == OutboundReply(text="Pick one", buttons=(Button("Yes", "/affirm"),))
    assert replies[1].image == "https://shop.example/a.png" and replies[1].text is None
    assert replies[2].handoff_request is not None and replies[2].handoff_request.payload() == {"reason": "allergy",
                                                                                              "priority": "normal"}
    assert replies[3].handoff_request is None and replies[3].buttons == ()


def test_button_without_payload_sends_its_title() -> None:
    (reply,) = parse_rasa_replies([{"text": "t", "buttons": [{"title": "Size 42"}]}])
    assert reply.buttons == (Button("Size 42", "Size 42"),)


@pytest.mark.parametrize("raw", [
    {"text": "not a list"},
    ["a string"],
    [{"text": 5}],
    [{"text": "t", "buttons": "yes"}],
    [{"text": "t", "buttons": [{"payload": "/x"}]}],
    [{"recipient_id": "only"}],
])
def test_malformed_rasa_answers_are_refused(raw: object) -> None:
    with pytest.raises(MessageFormatError):
        parse_rasa_replies(raw)


def test_reply_round_trips_to_rasa_shape() -> None:
    reply = OutboundReply(text="Hi", buttons=(Button("A", "/a"),))
    assert reply.to_rasa_dict("u1") == {"recipient_id": "u1", "text": "Hi", "buttons": [{"title": "A", "payload": "/a"}]}


def test_inbound_message_becomes_a_rasa_request_with_metadata() -> None:
    msg = InboundMessage(channel="telegram", conversation_id="42", sender_id="7", text="Size 42",
                         payload="/choose{\"size\": 42}", locale="zh-CN", message_id="m1", language="zh",
                         attachments=(Attachment(kind="image", url="https://x/p.jpg"),))
    body = msg.rasa_request()
    assert body["sender"] == "telegram:42"
    assert body["message"] == "/choose{\"size\": 42}"
    assert body["input_channel"] == "telegram"
    assert body["metadata"]["language"] == "zh"
    assert body["metadata"]["attachments"] == [{"kind": "image", "url": "https://x/p.jpg"}]


def test_a_message_of_files_only_reaches_rasa_as_the_attachment_intent_not_as_words() -> None:
    photo = Attachment(kind="image", url="https://x/p.jpg", name="IMG_2041.jpg")
    msg = InboundMessage(channel="webchat", conversation_id="c", sender_id="s", text="", attachments=(photo,))
    assert msg.rasa_request()["message"] == "/share_attachment"
    assert msg.summary == "\U0001f4ce IMG_2041.jpg"  # what the transcript and the agent see
    captioned = InboundMessage(channel="webchat", conversation_id="c", sender_id="s", text="the box was crushed",
                               attachments=(photo,))
    assert captioned.rasa_request()["message"] == "the box was crushed"


def test_handoff_signals_are_taken_out_of_what_channels_see() -> None:
    (signal, shown) = parse_rasa_replies([{"custom": {"handoff": {"reason": "allergy"}}},
                                          {"text": "ok", "custom": {"handoff": {"reason": "x"}, "card": 1}}])
    assert signal.handoff_request is not None and signal.handoff_request.reason == "allergy" and not signal.visible
    assert shown.custom == {"card": 1} and shown.handoff_request is not None and shown.handoff_request.reason == "x"
    assert "handoff" not in shown.to_rasa_dict("u")["custom"]
