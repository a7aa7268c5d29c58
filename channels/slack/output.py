"""Replies to Slack conversations through the Web API (chat.postMessage, chat.update).

Each conversation has its own lane: its messages are sent one after another, in the order
they were handed over. When Slack answers 429 (rate limited), the lane waits the
`Retry-After` seconds and sends the same message again, so nothing is lost or reordered;
other conversations' lanes keep going meanwhile. A send returns once Slack accepted the
message, so the conversation service knows a turn is really delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping, Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels import OutputChannel
from bot.messages import Button
from bot.ordering import KeyedLocks
from channels.slack.convert import CHANNEL, SlackTarget
from channels.slack.logtext import LogText, log
from channels.slack.render import (
    Block,
    button_blocks,
    button_value,
    buttons_fallback,
    chosen_blocks,
    chosen_fallback,
    escape_mrkdwn,
    image_blocks,
    text_messages,
)

DEFAULT_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 300.0


def retry_after(error: SlackApiError) -> float | None:
    """Seconds to wait before resending, when `error` is Slack's 429; None for any other error."""
    response = error.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    raw = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    try:
        seconds = float(raw) if raw is not None else DEFAULT_RETRY_AFTER
    except (TypeError, ValueError):
        seconds = DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class SlackOutput(OutputChannel):
    """The Slack channel's output role: text, Block Kit buttons and images, in order per conversation."""

    name = CHANNEL

    def __init__(self, client: AsyncWebClient, *, max_rate_limit_waits: int = 10) -> None:
        self.client = client
        self._max_waits = max_rate_limit_waits
        self._lanes = KeyedLocks()

    async def send_text(self, conversation_id: str, text: str) -> None:
        target = SlackTarget.parse(conversation_id)
        for piece in text_messages(text):
            await self._post(conversation_id, target, text=piece)

    async def send_buttons(self, conversation_id: str, text: str | None, buttons: Sequence[Button]) -> None:
        for button in buttons:
            if not button_value(button)[1]:
                log.warning(LogText.BUTTON_PAYLOAD_TOO_LONG, extra={"conversation": conversation_id,
                                                                    "length": len(button.payload)})
        await self._post(conversation_id, SlackTarget.parse(conversation_id),
                         text=buttons_fallback(text, buttons), blocks=button_blocks(text, buttons, conversation_id))

    async def send_image(self, conversation_id: str, url: str) -> None:
        await self._post(conversation_id, SlackTarget.parse(conversation_id),
                         text=escape_mrkdwn(url), blocks=image_blocks(url))

    async def show_choice(self, conversation_id: str, channel: str, ts: str, original: Sequence[Block],
                          chosen: str) -> None:
        """Replace the buttons of a clicked message with `✓ <chosen>` (chat.update), in the conversation's lane."""
        try:
            await self.call_in_lane(conversation_id, "chat.update", lambda: self.client.chat_update(
                channel=channel, ts=ts, text=chosen_fallback(original, chosen), blocks=chosen_blocks(original, chosen)))
        except Exception as exc:  # cosmetic: the click itself is already on its way
            log.warning(LogText.CHOICE_UPDATE_FAILED, extra={"conversation": conversation_id, "error": repr(exc)})

    async def _post(self, conversation_id: str, target: SlackTarget, **fields: Any) -> None:
        kwargs: dict[str, Any] = {"channel": target.channel, **fields}
        if target.thread_ts is not None:
            kwargs["thread_ts"] = target.thread_ts
        await self.call_in_lane(conversation_id, "chat.postMessage", lambda: self.client.chat_postMessage(**kwargs))

    async def call_in_lane(self, conversation_id: str, method: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Web API call in the conversation's lane, waiting out 429s and resending."""
        async with self._lanes.hold(conversation_id):
            waits = 0
            while True:
                try:
                    return await call()
                except SlackApiError as exc:
                    delay = retry_after(exc)
                    if delay is None:
                        raise
                    if waits >= self._max_waits:
                        log.error(LogText.RATE_LIMIT_GAVE_UP, extra={"conversation": conversation_id,
                                                                     "method": method, "waits": waits})
                        raise
                    waits += 1
                    log.warning(LogText.RATE_LIMITED, extra={"conversation": conversation_id, "method": method,
                                                             "retry_after": delay, "attempt": waits})
                    await asyncio.sleep(delay)
