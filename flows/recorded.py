"""What a case records of the decision that made it, so the decision can be made again under
other rules (`./aftersales whatif`, flows/whatif.py).

A decided case's `details` (sealed, flows/cases.py) hold, besides what they always held:

- `rules_version`: the version of the rules that decided (flows/rules.py);
- `outcome`: the decision's outcome (`refund`, `fast_refund`, `replacement`,
  `compensation`, `refused`; `exchange`; `ticket` or the handoff reason for a complaint);
- `inputs`: the facts the decision was made from, and nothing about the shopper:
  - return, replacement, compensation: `flow: return`, `decided_on`, `delivered`,
    `delivered_on`, `category`, `item_total`, `item_opened` (what the shop knew), `reason`,
    `opened` (what the shopper said), `photo` (given or not), `resolution`,
    `return_method`, `exchange_in_stock` (another variant was in stock);
  - exchange: `flow: exchange`, `decided_on`, `delivered`, `delivered_on`, `category`,
    `in_stock` (true: the variant chosen was in stock);
  - complaint: `flow: complaint`, `decided_at`, `category`, `severity` (as given; none:
    not asked), `earlier_complaints` (in `repeat_window_days`), `repeat_window_days`.

Cases recorded before this have no `inputs`; whatif counts them and leaves them out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from flows.orders import Order, OrderItem

INPUTS = "inputs"
FLOW_OF_KIND = {"return": "return", "replacement": "return", "compensation": "return", "exchange": "exchange",
                "complaint": "complaint"}


def return_inputs(order: Order, item: OrderItem, values: Mapping[str, Any], today: dt.date,
                  exchange_in_stock: bool) -> dict[str, Any]:
    return {"flow": "return", "decided_on": today.isoformat(), "delivered": order.delivered,
            "delivered_on": order.delivered_on.isoformat() if order.delivered_on else None,
            "category": item.category, "item_total": str(item.total), "item_opened": item.opened,
            "reason": values.get("return_reason"), "opened": values.get("item_opened"),
            "photo": bool(values.get("photo_url")), "resolution": values.get("resolution"),
            "return_method": values.get("return_method"), "exchange_in_stock": exchange_in_stock}


def exchange_inputs(order: Order, item: OrderItem, today: dt.date, in_stock: bool) -> dict[str, Any]:
    return {"flow": "exchange", "decided_on": today.isoformat(), "delivered": order.delivered,
            "delivered_on": order.delivered_on.isoformat() if order.delivered_on else None,
            "category": item.category, "in_stock": in_stock}


def complaint_inputs(category: str, severity: str | None, earlier: int, repeat_window_days: int,
                     now: dt.datetime) -> dict[str, Any]:
    return {"flow": "complaint", "decided_at": now.isoformat(), "category": category, "severity": severity,
            "earlier_complaints": earlier, "repeat_window_days": repeat_window_days}


class NotReplayable(ValueError):
    """A case's recorded inputs are missing or cannot be read."""


def _date(inputs: Mapping[str, Any], name: str, optional: bool = False) -> dt.date | None:
    value = inputs.get(name)
    if value is None and optional:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise NotReplayable(f"'{name}' is not a date: {value!r}") from None


def decided_on(inputs: Mapping[str, Any]) -> dt.date:
    day = _date(inputs, "decided_on")
    assert day is not None
    return day


def order_and_item(number: str | None, inputs: Mapping[str, Any]) -> tuple[Order, OrderItem]:
    """The order and item as the decision saw them: what decides is the delivery, the
    category, the item's total and what the shop knew of it being opened."""
    delivered_on = _date(inputs, "delivered_on", optional=True)
    try:
        total = Decimal(str(inputs.get("item_total", "0")))
    except InvalidOperation:
        raise NotReplayable(f"'item_total' is not an amount: {inputs.get('item_total')!r}") from None
    opened = inputs.get("item_opened")
    item = OrderItem(sku="", product_id="", name={"en": "", "zh": ""}, category=str(inputs.get("category") or ""),
                     variant_label={}, quantity=1, unit_price=total,
                     opened=opened if isinstance(opened, bool) else None)
    order = Order(number=number or "", customer_id=None, placed_on=delivered_on or decided_on(inputs),
                  delivered_on=delivered_on, status="delivered" if inputs.get("delivered") else "shipped",
                  payment_method={}, items=(item,))
    return order, item
