"""Bot replies as Slack messages: mrkdwn-safe text and Block Kit blocks (pure functions).

Text from the bot (or relayed from a shopper or agent) is escaped so `&`, `<` and `>`
cannot form Slack mentions (`<@U..>`, `<!channel>`) or links. Every message carries a
plain `text` fallback for notifications and clients that do not render blocks.
"""

from __future__ import annotations

from typing import Any, Sequence

from bot.channels import buttons_as_text
from bot.messages import Button
from bot.textsplit import split_text
from channels.slack.convert import BUTTON_ACTION_PREFIX

Block = dict[str, Any]

SECTION_LIMIT = 3000  # characters in a section block's text
MESSAGE_CHUNK = 3900  # characters per posted message (Slack truncates after 40,000; 4,000 read well)
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
MAX_BUTTONS = 25  # elements in one actions block
CHOICE_MARK = "\u2713"  # ✓


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to (mentions, links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text_messages(text: str) -> list[str]:
    """The escaped text of the messages one bot text is posted as."""
    return split_text(escape_mrkdwn(text), MESSAGE_CHUNK)


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button_value(button: Button) -> tuple[str, bool]:
    """The value a button carries (its payload) and whether it fit in Slack's limit; an overlong
    payload is replaced by the title, which Rasa then interprets as text."""
    if len(button.payload) <= BUTTON_VALUE_LIMIT:
        return button.payload, True
    return button.title[:BUTTON_VALUE_LIMIT], False


def button_blocks(text: str | None, buttons: Sequence[Button], conversation_id: str) -> list[Block]:
    """Section block(s) with the text, then an actions block with one button per choice.

    The actions block's `block_id` names the conversation, so a click is routed back to it;
    each button's `action_id` is unique in the message and its `value` is the payload.
    """
    blocks = [_section(piece) for piece in split_text(escape_mrkdwn(text), SECTION_LIMIT)] if text else []
    elements = []
    for index, button in enumerate(buttons[:MAX_BUTTONS]):
        value, _ = button_value(button)
        elements.append({
            "type": "button",
            "text": {"type": "plain_text", "text": button.title[:BUTTON_TEXT_LIMIT], "emoji": True},
            "value": value,
            "action_id": f"{BUTTON_ACTION_PREFIX}{index}",
        })
    blocks.append({"type": "actions", "block_id": conversation_id[:255], "elements": elements})
    return blocks


def buttons_fallback(text: str | None, buttons: Sequence[Button]) -> str:
    """The notification/fallback text of a message with buttons."""
    return escape_mrkdwn(buttons_as_text(text, buttons))[:MESSAGE_CHUNK]


def image_blocks(url: str, alt_text: str = "image") -> list[Block]:
    return [{"type": "image", "image_url": url, "alt_text": alt_text}]


def chosen_blocks(original: Sequence[Block], chosen: str) -> list[Block]:
    """The clicked message's blocks with its buttons replaced by a context line `✓ <chosen>`."""
    kept = [dict(b) for b in original if isinstance(b, dict) and b.get("type") != "actions"]
    kept.append({"type": "context",
                 "elements": [{"type": "mrkdwn", "text": f"{CHOICE_MARK} {escape_mrkdwn(chosen)}"}]})
    return kept


def chosen_fallback(original: Sequence[Block], chosen: str) -> str:
    """The fallback text of a clicked message once its buttons are gone: its text, then `✓ <chosen>`."""
    texts = [b["text"]["text"] for b in original
             if isinstance(b, dict) and b.get("type") == "section" and isinstance(b.get("text"), dict)
             and isinstance(b["text"].get("text"), str)]
    line = f"{CHOICE_MARK} {escape_mrkdwn(chosen)}"
    return "\n".join([*texts, line])[-MESSAGE_CHUNK:]
