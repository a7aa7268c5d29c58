"""The payload contract between the flows (in Rasa's action server) and the gateway.

A flow asks for a person by adding `{"handoff": {...}}` to a reply's custom payload;
`HandoffRequest` is that request, built by the flows with `.payload()` and read once by
the gateway at the Rasa edge with `HandoffRequest.from_payload` (bot/messages.py), which
takes it out of the reply so no channel ever shows it. Standard library only: the action
server imports this file under Rasa's Python 3.10, the gateway under its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

HANDOFF = "handoff"  # the key of the request in a reply's custom payload
_TEXT_LIMIT = 200


@dataclass(frozen=True)
class HandoffRequest:
    reason: str  # shopper_request | fallback | disputed_refusal | allergy | severe_complaint | ...
    language: str | None = None
    flow: str | None = None  # the flow that was running ("return", "complaint", ...)
    case_id: str | None = None
    ticket_id: str | None = None
    order_number: str | None = None
    customer_id: str | None = None
    queue: str | None = None  # the team that should take it (product_expert, logistics, ...)
    priority: str = "normal"  # "normal" | "high"
    severity: str | None = None
    photo: str | None = None
    first_response_due: str | None = None  # ISO 8601 with its zone

    def payload(self) -> dict[str, Any]:
        """The request as the flows put it into a reply's custom payload (no empty fields)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def detail(self) -> dict[str, Any]:
        """Everything but the reason, as the handoff record keeps it."""
        return {k: v for k, v in self.payload().items() if k != "reason"}

    @classmethod
    def from_payload(cls, raw: Mapping[str, Any]) -> "HandoffRequest":
        """Read a request from Rasa's reply; unknown keys are dropped, texts are cut to a
        sane length, a missing reason is "unspecified"."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name in known and isinstance(value, str) and value:
                values[name] = value[:_TEXT_LIMIT]
        values.setdefault("reason", "unspecified")
        if values.get("priority") not in ("normal", "high"):
            values["priority"] = "normal"
        return cls(**values)
