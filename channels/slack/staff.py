"""The agents' Slack channel as a staff room (bot/staff.py): each handoff is a thread there,
opened with its summary and buttons; the handoff module (handoff/staff_desk.py) does the rest.

`SLACK_AGENTS_CHANNEL` names the channel (the app must be a member, with `chat:write` and,
to see agents' thread replies, the `message.channels` event, or `message.groups` for a
private channel); `SLACK_AGENT_USERS` maps Slack users to console agents (`U0123=alice`).
Everything the gateway posts is escaped: a shopper's `<!channel>` stays text.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from bot.staff import StaffAction, StaffActionKind, StaffButton, StaffThread
from channels.slack.output import SlackOutput
from channels.slack.render import escape_mrkdwn

ROOM = "slack"
ACTION_PREFIX = "staff_"
SECTION_LIMIT = 2900  # Slack's section text limit is 3000 characters


def summary_blocks(summary: str, buttons: Sequence[StaffButton]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn",
                                                                 "text": escape_mrkdwn(summary)[:SECTION_LIMIT]}}]
    if buttons:
        elements = []
        for button in buttons:
            element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": button.title},
                                       "action_id": ACTION_PREFIX + button.action.value, "value": button.action.value}
            if button.style:
                element["style"] = button.style
            elements.append(element)
        blocks.append({"type": "actions", "block_id": "staff", "elements": elements})
    return blocks


class SlackStaffRoom:
    """Posts into the agents' channel, and reads the team's actions out of Slack's deliveries."""

    name = ROOM

    def __init__(self, output: SlackOutput, channel: str, agents: Mapping[str, str]) -> None:
        self.output = output
        self.channel = channel
        self.agents = dict(agents)  # Slack user id -> console agent

    def _lane(self, thread_id: str = "") -> str:
        return f"staff-room:{self.channel}:{thread_id}"  # rate-limit lane only, never parsed

    async def open_thread(self, summary: str, buttons: Sequence[StaffButton]) -> StaffThread:
        result = await self.output.call_in_lane(self._lane(), "chat.postMessage", lambda: self.output.client.chat_postMessage(
            channel=self.channel, text=escape_mrkdwn(summary), blocks=summary_blocks(summary, buttons)))
        return StaffThread(ROOM, self.channel, str(result["ts"]))

    async def post(self, thread: StaffThread, text: str) -> None:
        await self.output.call_in_lane(self._lane(thread.thread_id), "chat.postMessage",
                                       lambda: self.output.client.chat_postMessage(
                                           channel=thread.channel, thread_ts=thread.thread_id,
                                           text=escape_mrkdwn(text)))

    async def update_summary(self, thread: StaffThread, summary: str, buttons: Sequence[StaffButton]) -> None:
        await self.output.call_in_lane(self._lane(thread.thread_id), "chat.update",
                                       lambda: self.output.client.chat_update(
                                           channel=thread.channel, ts=thread.thread_id, text=escape_mrkdwn(summary),
                                           blocks=summary_blocks(summary, buttons)))

    async def announce(self, text: str) -> None:
        await self.output.call_in_lane(self._lane(), "chat.postMessage", lambda: self.output.client.chat_postMessage(
            channel=self.channel, text=escape_mrkdwn(text)))

    # -- reading Slack's deliveries -------------------------------------------------------------

    def concerns(self, body: Mapping[str, Any]) -> bool:
        """The delivery is about the agents' channel (never a shopper's message)."""
        event = body.get("event") if body.get("type") == "event_callback" else None
        if isinstance(event, dict):
            return event.get("channel") == self.channel
        if body.get("type") == "block_actions":
            return (body.get("channel") or {}).get("id") == self.channel
        return False

    def action(self, body: Mapping[str, Any]) -> tuple[str, StaffAction] | None:
        """(a key to deduplicate it by, the team's action) for a thread reply or a button click
        in the agents' channel; None for anything else there (the app's own posts, top-level talk)."""
        if body.get("type") == "event_callback":
            event = body.get("event") or {}
            user, thread_ts = event.get("user"), event.get("thread_ts")
            if (event.get("type") != "message" or event.get("subtype") or event.get("bot_id")
                    or not isinstance(user, str) or not isinstance(thread_ts, str) or thread_ts == event.get("ts")):
                return None
            thread = StaffThread(ROOM, self.channel, thread_ts)
            text = event.get("text")
            return (f"event:{body.get('event_id')}",
                    StaffAction(StaffActionKind.REPLY, thread, f"<@{user}>", self.agents.get(user),
                                text if isinstance(text, str) else ""))
        if body.get("type") == "block_actions":
            user = (body.get("user") or {}).get("id")
            message = body.get("message") or {}
            ts = message.get("ts")
            for action in body.get("actions") or []:
                action_id = action.get("action_id") if isinstance(action, dict) else None
                if not isinstance(action_id, str) or not action_id.startswith(ACTION_PREFIX):
                    continue
                try:
                    kind = StaffActionKind(action_id.removeprefix(ACTION_PREFIX))
                except ValueError:
                    return None
                if kind is StaffActionKind.REPLY or kind is StaffActionKind.NOTE or not isinstance(user, str) \
                        or not isinstance(ts, str):
                    return None
                return (f"click:{ts}:{action.get('action_ts')}:{user}",
                        StaffAction(kind, StaffThread(ROOM, self.channel, ts), f"<@{user}>", self.agents.get(user)))
        return None
