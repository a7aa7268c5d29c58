"""The value types the flows exchange with the Rasa actions: the shopper's message as the
flows see it (`Inbound`), who is asking (`Context`), what the bot says (`Reply`), and what a
form step decided (`StepResult`, `Parsed`). Plus the payload and money formats."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

from flows.reading import Facts

NO_ORDER = "none"


@dataclass
class Reply:
    text: str | None = None
    buttons: list[dict[str, str]] = field(default_factory=list)
    custom: dict[str, Any] | None = None


def choice_payload(value: str) -> str:
    """A button payload that answers the current question with `value`, whatever the NLU thinks."""
    return "/choose" + json.dumps({"choice": value}, ensure_ascii=False, separators=(",", ":"))


def intent_payload(intent: str, value: str | None = None, **entities: str | None) -> str:
    """`/intent{...}`: a button that starts a flow, carrying what is known already (the
    order and item, so a shopper switching flows by button is not asked again)."""
    data = {"choice": value, **entities} if value is not None else dict(entities)
    data = {k: v for k, v in data.items() if v}
    return f"/{intent}" + (json.dumps(data, ensure_ascii=False, separators=(",", ":")) if data else "")


def money(amount: Decimal | str | None) -> str:
    return f"¥{Decimal(str(amount or 0)):,.2f}"


@dataclass
class Inbound:
    """The shopper's latest message as the flows see it."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    choice: str | None = None  # value of a pressed /choose button (or a payload's `choice` entity)
    attachments: Sequence[Mapping[str, Any]] = ()
    entities: Mapping[str, str] = field(default_factory=dict)  # what a payload carried (order, item)
    facts: Facts | None = None  # the whole message read (flows/reading.py); set by AfterSales.inbound
    ranking: Sequence[tuple[str, float]] = ()  # the NLU's intents, most likely first

    @property
    def is_payload(self) -> bool:
        return self.text.startswith("/")

    @property
    def free_text(self) -> str:
        return "" if self.is_payload else self.text

    @property
    def has_files(self) -> bool:
        return bool(self.attachments)

    def read(self) -> Facts:
        return self.facts if self.facts is not None else Facts(text=self.free_text)


@dataclass
class Context:
    lang: str
    customer_id: str | None = None
    conversation_id: str | None = None
    last_case_id: str | None = None
    pending_photo: str | None = None  # a photo sent before any flow asked for one
    turn_id: str | None = None  # the gateway's id of the shopper's message: a retried turn makes no second case
    verified_orders: tuple[str, ...] = ()  # orders this shopper proved are theirs (flows/ownership.py)


@dataclass
class StepResult:
    updates: dict[str, Any] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    next_slot: str | None = None
    reject: bool = False


@dataclass
class Parsed:
    """One slot read from a message: `value`, or a `hint` (it was an attempt but wrong), or neither."""

    value: Any = None
    hint: Reply | None = None
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.value is not None


NOTHING = Parsed()
