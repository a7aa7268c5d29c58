"""The shop's orders, as the after-sales flows see them.

`OrderBackend` is the interface; two implementations:

- `SqliteOrderBackend`: the built-in demo store (SQLite, in the flows database), seeded with
  the demo orders of `flows.demo_data` at every start, dated relative to today.
- `HttpOrderBackend`: a shop's own order API over HTTP, chosen by `ORDER_API_URL`
  (optional `ORDER_API_TOKEN` is sent as a bearer token). The JSON it expects is
  documented in docs/flows.md and in `order_from_json` / `variant_from_json` below.

`make_backend()` picks one from the environment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from flows.db import connect, db_path, enable_wal


@dataclass(frozen=True)
class OrderNumberFormat:
    """The shop's order numbers: a prefix and five digits, e.g. AS10001 (`ORDER_NUMBER_PREFIX`)."""

    prefix: str
    number: re.Pattern[str]
    attempt: re.Pattern[str]  # something that looks like an attempt at one (for a precise hint)


@functools.lru_cache(maxsize=1)
def order_number_format() -> OrderNumberFormat:
    """Read from the environment on first use (not at import)."""
    prefix = os.environ.get("ORDER_NUMBER_PREFIX", "AS").strip().upper() or "AS"
    quoted = re.escape(prefix)
    return OrderNumberFormat(
        prefix=prefix,
        number=re.compile(rf"(?<![A-Za-z0-9])({quoted})[\s\-#]?(\d{{5}})(?!\d)", re.IGNORECASE),
        attempt=re.compile(rf"(?<![A-Za-z0-9]){quoted}[\s\-#]?\d{{1,9}}(?!\d)|(?<!\d)\d{{4,9}}(?!\d)", re.IGNORECASE))

LANGS = ("en", "zh")


class OrderBackendError(RuntimeError):
    """The order system cannot answer right now (network, server error, bad data)."""


def _texts(value: Any, fallback: str = "") -> Mapping[str, str]:
    """`{"en": ..., "zh": ...}` from either such a mapping or one plain string."""
    if isinstance(value, Mapping):
        en = str(value.get("en") or value.get("zh") or fallback)
        return {"en": en, "zh": str(value.get("zh") or en)}
    text = str(value) if value is not None else fallback
    return {"en": text, "zh": text}


@dataclass(frozen=True)
class Variant:
    sku: str
    product_id: str
    label: Mapping[str, str]
    attributes: Mapping[str, str] = field(default_factory=dict)
    stock: int = 0
    swappable: bool = True  # False for e.g. a blind box's secret figure

    @property
    def in_stock(self) -> bool:
        return self.stock > 0


@dataclass(frozen=True)
class OrderItem:
    sku: str
    product_id: str
    name: Mapping[str, str]
    category: str
    variant_label: Mapping[str, str]
    quantity: int
    unit_price: Decimal
    opened: bool | None = None  # known to the shop (e.g. a blind box opened in the app), else None
    aliases: tuple[str, ...] = ()  # what shoppers call it ("vit c cream", "洗面奶"), any language

    def title(self, lang: str) -> str:
        label = self.variant_label.get(lang) or self.variant_label.get("en") or ""
        name = self.name.get(lang) or self.name["en"]
        if not label:
            return name
        return f"{name}（{label}）" if lang == "zh" else f"{name} ({label})"

    @property
    def total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Order:
    number: str
    customer_id: str | None
    placed_on: dt.date
    delivered_on: dt.date | None
    status: str  # "processing" | "shipped" | "delivered" | "cancelled"
    payment_method: Mapping[str, str]
    items: tuple[OrderItem, ...]
    currency: str = "CNY"
    # What only the buyer knows, asked of a shopper the shop has not signed in before the
    # bot shows or acts on the order (flows/ownership.py).
    phone: str | None = None
    email: str | None = None

    def item(self, sku: str) -> OrderItem | None:
        return next((i for i in self.items if i.sku == sku), None)

    @property
    def delivered(self) -> bool:
        return self.status == "delivered" and self.delivered_on is not None

    def days_since_delivery(self, today: dt.date) -> int | None:
        if not self.delivered or self.delivered_on is None:
            return None
        return max(0, (today - self.delivered_on).days)


def normalize_order_number(text: str) -> str | None:
    """`as 10001`, `AS-10001`, `#AS10001` -> `AS10001`; None when there is none in `text`."""
    match = order_number_format().number.search(text or "")
    if not match:
        return None
    return f"{match.group(1).upper()}{match.group(2)}"


class OrderBackend(ABC):
    """Where orders come from. Implementations must not block the event loop."""

    @abstractmethod
    async def get_order(self, number: str) -> Order | None:
        """The order with this number, or None when there is no such order."""

    @abstractmethod
    async def recent_orders(self, customer_id: str, limit: int = 5) -> list[Order]:
        """A customer's most recent orders, newest first."""

    @abstractmethod
    async def variants(self, product_id: str) -> list[Variant]:
        """All variants of a product with their current stock."""

    async def close(self) -> None:
        return None


# -- JSON (the HTTP API's format, also used by the demo data) -----------------------------


def _date(value: Any, where: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise OrderBackendError(f"{where}: not an ISO date: {value!r}") from None


def _money(value: Any, where: str) -> Decimal:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise OrderBackendError(f"{where}: not an amount: {value!r}") from None


def item_from_json(raw: Mapping[str, Any], where: str = "item") -> OrderItem:
    try:
        return OrderItem(
            sku=str(raw["sku"]), product_id=str(raw.get("product_id") or raw["sku"]),
            name=_texts(raw["name"]), category=str(raw.get("category") or "general"),
            variant_label=_texts(raw.get("variant") or raw.get("variant_label") or ""),
            quantity=int(raw.get("quantity", 1)), unit_price=_money(raw["unit_price"], where),
            opened=raw.get("opened") if isinstance(raw.get("opened"), bool) else None,
            aliases=tuple(str(a) for a in raw.get("aliases") or () if isinstance(a, str))[:20],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OrderBackendError(f"{where}: malformed order item ({exc!r})") from None


def _contact(raw: Mapping[str, Any], name: str) -> str | None:
    """The buyer's phone or e-mail: `"phone"` at the top or in `"contact": {...}`."""
    contact = raw.get("contact")
    value = raw.get(name) or (contact.get(name) if isinstance(contact, Mapping) else None)
    return str(value)[:200] if isinstance(value, (str, int)) and str(value).strip() else None


def order_from_json(raw: Mapping[str, Any]) -> Order:
    """An order as the HTTP API returns it:

    {"number": "AS10001", "customer_id": "C1001", "placed_at": "2026-11-10", "delivered_at": "2026-11-13",
     "status": "delivered", "payment_method": {"en": "Alipay", "zh": "支付宝"}, "currency": "CNY",
     "items": [{"sku": "SH-OXF-BLK-42", "product_id": "SHOE-OXF", "category": "shoes",
                "name": {"en": "Classic Oxford leather shoes", "zh": "经典牛津皮鞋"},
                "variant": {"en": "Black, EU 42", "zh": "黑色 42码"}, "quantity": 1, "unit_price": "599.00",
                "opened": null}],
     "phone": "+86 138 0013 5821", "email": "li.na@example.com"}
    """
    try:
        number = str(raw["number"])
        items = tuple(item_from_json(i, f"order {number} item {n}") for n, i in enumerate(raw["items"]))
        return Order(
            number=number, customer_id=raw.get("customer_id"),
            placed_on=_date(raw.get("placed_at") or raw.get("placed_on"), number) or dt.date.today(),
            delivered_on=_date(raw.get("delivered_at") or raw.get("delivered_on"), number),
            status=str(raw.get("status") or ("delivered" if raw.get("delivered_at") else "processing")),
            payment_method=_texts(raw.get("payment_method"), "original payment method"),
            items=items, currency=str(raw.get("currency") or "CNY"),
            phone=_contact(raw, "phone"), email=_contact(raw, "email"),
        )
    except (KeyError, TypeError) as exc:
        raise OrderBackendError(f"malformed order ({exc!r})") from None


def variant_from_json(raw: Mapping[str, Any], product_id: str) -> Variant:
    """{"sku": "SH-OXF-BLK-43", "label": {"en": "Black, EU 43", "zh": "黑色 43码"},
        "attributes": {"colour": "black", "size": "43"}, "stock": 0, "swappable": true}"""
    try:
        return Variant(sku=str(raw["sku"]), product_id=str(raw.get("product_id") or product_id),
                       label=_texts(raw.get("label") or raw["sku"]),
                       attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
                       stock=int(raw.get("stock", 0)), swappable=bool(raw.get("swappable", True)))
    except (KeyError, TypeError, ValueError) as exc:
        raise OrderBackendError(f"malformed variant of {product_id} ({exc!r})") from None


def order_to_json(order: Order) -> dict[str, Any]:
    return {
        "number": order.number, "customer_id": order.customer_id,
        "placed_at": order.placed_on.isoformat(),
        "delivered_at": order.delivered_on.isoformat() if order.delivered_on else None,
        "status": order.status, "payment_method": dict(order.payment_method), "currency": order.currency,
        "phone": order.phone, "email": order.email,
        "items": [{"sku": i.sku, "product_id": i.product_id, "category": i.category, "name": dict(i.name),
                   "variant": dict(i.variant_label), "quantity": i.quantity, "unit_price": str(i.unit_price),
                   "opened": i.opened, "aliases": list(i.aliases)} for i in order.items],
    }


# -- the demo store ------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_products (
    product_id TEXT PRIMARY KEY, category TEXT NOT NULL, name_en TEXT NOT NULL, name_zh TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS demo_variants (
    sku TEXT PRIMARY KEY, product_id TEXT NOT NULL, label_en TEXT NOT NULL, label_zh TEXT NOT NULL,
    attributes TEXT NOT NULL, stock INTEGER NOT NULL, swappable INTEGER NOT NULL DEFAULT 1, price TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS demo_orders (
    number TEXT PRIMARY KEY, customer_id TEXT, placed_on TEXT NOT NULL, delivered_on TEXT, status TEXT NOT NULL,
    payment_en TEXT NOT NULL, payment_zh TEXT NOT NULL, currency TEXT NOT NULL, phone TEXT, email TEXT);
CREATE TABLE IF NOT EXISTS demo_order_items (
    number TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL,
    unit_price TEXT NOT NULL, opened INTEGER, PRIMARY KEY (number, line));
CREATE INDEX IF NOT EXISTS demo_orders_customer ON demo_orders (customer_id, placed_on);
"""


class SqliteOrderBackend(OrderBackend):
    """The built-in demo store: orders, products and stock in the flows SQLite database."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or db_path()
        enable_wal(self.path)
        with connect(self.path) as conn:
            conn.executescript(_SCHEMA)
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(demo_products)")}
            if "aliases" not in columns:  # a demo store made before products had aliases
                conn.execute("ALTER TABLE demo_products ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]'")
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(demo_orders)")}
            for column in ("phone", "email"):  # a demo store made before orders had the buyer's contact
                if column not in columns:
                    conn.execute(f"ALTER TABLE demo_orders ADD COLUMN {column} TEXT")

    # sync helpers (run in a worker thread)

    def _order_sync(self, number: str) -> Order | None:
        with connect(self.path) as conn:
            row = conn.execute("SELECT * FROM demo_orders WHERE number = ?", (number,)).fetchone()
            if row is None:
                return None
            lines = conn.execute(
                "SELECT i.*, v.product_id, v.label_en, v.label_zh, p.category, p.name_en, p.name_zh, p.aliases "
                "FROM demo_order_items i JOIN demo_variants v ON v.sku = i.sku "
                "JOIN demo_products p ON p.product_id = v.product_id WHERE i.number = ? ORDER BY i.line",
                (number,)).fetchall()
        items = tuple(OrderItem(
            sku=r["sku"], product_id=r["product_id"], name={"en": r["name_en"], "zh": r["name_zh"]},
            category=r["category"], variant_label={"en": r["label_en"], "zh": r["label_zh"]},
            quantity=r["quantity"], unit_price=Decimal(r["unit_price"]),
            opened=None if r["opened"] is None else bool(r["opened"]),
            aliases=tuple(json.loads(r["aliases"] or "[]"))) for r in lines)
        return Order(number=row["number"], customer_id=row["customer_id"],
                     placed_on=dt.date.fromisoformat(row["placed_on"]),
                     delivered_on=dt.date.fromisoformat(row["delivered_on"]) if row["delivered_on"] else None,
                     status=row["status"], payment_method={"en": row["payment_en"], "zh": row["payment_zh"]},
                     items=items, currency=row["currency"], phone=row["phone"], email=row["email"])

    def _recent_sync(self, customer_id: str, limit: int) -> list[Order]:
        with connect(self.path) as conn:
            numbers = [r["number"] for r in conn.execute(
                "SELECT number FROM demo_orders WHERE customer_id = ? ORDER BY placed_on DESC, number DESC LIMIT ?",
                (customer_id, limit))]
        return [o for o in (self._order_sync(n) for n in numbers) if o is not None]

    def _variants_sync(self, product_id: str) -> list[Variant]:
        with connect(self.path) as conn:
            rows = conn.execute("SELECT * FROM demo_variants WHERE product_id = ? ORDER BY sku", (product_id,)).fetchall()
        return [Variant(sku=r["sku"], product_id=r["product_id"], label={"en": r["label_en"], "zh": r["label_zh"]},
                        attributes=json.loads(r["attributes"]), stock=r["stock"], swappable=bool(r["swappable"]))
                for r in rows]

    async def get_order(self, number: str) -> Order | None:
        return await asyncio.to_thread(self._order_sync, number)

    async def recent_orders(self, customer_id: str, limit: int = 5) -> list[Order]:
        return await asyncio.to_thread(self._recent_sync, customer_id, limit)

    async def variants(self, product_id: str) -> list[Variant]:
        return await asyncio.to_thread(self._variants_sync, product_id)

    def seed(self, today: dt.date) -> int:
        """(Re)write the demo catalogue and orders, dated relative to `today`. Returns the order count."""
        from flows import demo_data

        with connect(self.path) as conn:
            for table in ("demo_order_items", "demo_orders", "demo_variants", "demo_products"):
                conn.execute(f"DELETE FROM {table}")
            for p in demo_data.PRODUCTS:
                conn.execute("INSERT INTO demo_products VALUES (?, ?, ?, ?, ?)",
                             (p["product_id"], p["category"], p["name"]["en"], p["name"]["zh"],
                              json.dumps(p.get("aliases", []), ensure_ascii=False)))
                for v in p["variants"]:
                    conn.execute("INSERT INTO demo_variants VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (v["sku"], p["product_id"], v["label"]["en"], v["label"]["zh"],
                                  json.dumps(v.get("attributes", {}), ensure_ascii=False), v["stock"],
                                  int(v.get("swappable", True)), str(p["price"])))
            prices = {v["sku"]: p["price"] for p in demo_data.PRODUCTS for v in p["variants"]}
            for o in demo_data.ORDERS:
                delivered = o.get("delivered_days_ago")
                placed = today - dt.timedelta(days=(delivered if delivered is not None else 0) + o.get("shipping_days", 2))
                buyer = demo_data.CUSTOMERS[o["customer_id"]]
                conn.execute("INSERT INTO demo_orders (number, customer_id, placed_on, delivered_on, status, "
                             "payment_en, payment_zh, currency, phone, email) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (o["number"], o["customer_id"], placed.isoformat(),
                              (today - dt.timedelta(days=delivered)).isoformat() if delivered is not None else None,
                              o.get("status", "delivered" if delivered is not None else "shipped"),
                              o["payment"]["en"], o["payment"]["zh"], "CNY", buyer["phone"], buyer["email"]))
                for line, item in enumerate(o["items"]):
                    opened = item.get("opened")
                    conn.execute("INSERT INTO demo_order_items VALUES (?, ?, ?, ?, ?, ?)",
                                 (o["number"], line, item["sku"], item.get("quantity", 1),
                                  str(item.get("unit_price", prices[item["sku"]])),
                                  None if opened is None else int(opened)))
        return len(demo_data.ORDERS)


# -- a shop's order API over HTTP ---------------------------------------------------------


class HttpOrderBackend(OrderBackend):
    """Calls a shop's order API:

    GET {base}/orders/{number}                     -> an order (see `order_from_json`), 404 if unknown
    GET {base}/customers/{id}/orders?limit=N       -> {"orders": [order, ...]} newest first
    GET {base}/products/{product_id}/variants      -> {"variants": [variant, ...]} (see `variant_from_json`)
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: Any = None

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(headers=headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(self.base_url + path, params=params) as resp:
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    raise OrderBackendError(f"order API answered {resp.status} for {path}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise OrderBackendError(f"order API unreachable for {path}: {exc!r}") from exc

    async def get_order(self, number: str) -> Order | None:
        raw = await self._get(f"/orders/{quote(number, safe='')}")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise OrderBackendError("order API: expected an object for an order")
        return order_from_json(raw)

    async def recent_orders(self, customer_id: str, limit: int = 5) -> list[Order]:
        raw = await self._get(f"/customers/{quote(customer_id, safe='')}/orders", {"limit": limit})
        if raw is None:
            return []
        orders = raw.get("orders") if isinstance(raw, Mapping) else raw
        if not isinstance(orders, Sequence):
            raise OrderBackendError("order API: expected {'orders': [...]}")
        return [order_from_json(o) for o in orders][:limit]

    async def variants(self, product_id: str) -> list[Variant]:
        raw = await self._get(f"/products/{quote(product_id, safe='')}/variants")
        if raw is None:
            return []
        variants = raw.get("variants") if isinstance(raw, Mapping) else raw
        if not isinstance(variants, Sequence):
            raise OrderBackendError("order API: expected {'variants': [...]}")
        return [variant_from_json(v, product_id) for v in variants]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_backend(today: dt.date | None = None) -> OrderBackend:
    """`HttpOrderBackend` when `ORDER_API_URL` is set, else the demo store (seeded now)."""
    url = os.environ.get("ORDER_API_URL", "").strip()
    if url:
        return HttpOrderBackend(url, os.environ.get("ORDER_API_TOKEN") or None,
                                float(os.environ.get("ORDER_API_TIMEOUT", "5")))
    backend = SqliteOrderBackend()
    backend.seed(today or dt.date.today())
    return backend
