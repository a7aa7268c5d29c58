"""Demo catalogue, customers and orders for the built-in order store.

Dates are relative: `delivered_days_ago` is applied to today's date every time the action
server starts, so every policy branch stays reachable. `python -m flows.demo_data` prints
the table that docs/flows.md shows to people trying the bot.
"""

from __future__ import annotations

from typing import Any

PAY_ALIPAY = {"en": "Alipay", "zh": "支付宝"}
PAY_WECHAT = {"en": "WeChat Pay", "zh": "微信支付"}
PAY_CARD = {"en": "Visa card ending 4242", "zh": "Visa 信用卡（尾号 4242）"}


def _shoe_variants(code: str, colours: dict[str, tuple[str, str]], stock: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for key, qty in stock.items():
        colour, size = key.split("-")
        en, zh = colours[colour]
        out.append({"sku": f"SH-{code}-{colour}-{size}", "label": {"en": f"{en}, EU {size}", "zh": f"{zh} {size}码"},
                    "attributes": {"colour": en.lower(), "size": size}, "stock": qty})
    return out


PRODUCTS: list[dict[str, Any]] = [
    {"product_id": "SHOE-OXF", "aliases": ["oxford", "oxfords", "oxford shoes", "牛津鞋", "牛津"],
     "category": "shoes", "price": "599.00",
     "name": {"en": "Classic Oxford leather shoes", "zh": "经典牛津皮鞋"},
     "variants": _shoe_variants("OXF", {"BLK": ("Black", "黑色"), "BRN": ("Brown", "棕色")},
                                {"BLK-40": 4, "BLK-41": 3, "BLK-42": 2, "BLK-43": 0, "BLK-44": 5,
                                 "BRN-41": 1, "BRN-42": 0, "BRN-43": 2})},
    {"product_id": "SHOE-CHS", "aliases": ["chelsea", "chelsea boots", "boots", "boot", "切尔西", "切尔西靴", "靴子", "短靴"],
     "category": "shoes", "price": "799.00",
     "name": {"en": "Chelsea leather boots", "zh": "切尔西真皮短靴"},
     "variants": _shoe_variants("CHS", {"BRN": ("Brown", "棕色")},
                                {"BRN-39": 2, "BRN-40": 1, "BRN-41": 3, "BRN-42": 0})},
    {"product_id": "SHOE-LOF", "aliases": ["loafers", "loafer", "penny loafers", "乐福鞋", "乐福"],
     "category": "shoes", "price": "659.00",
     "name": {"en": "Penny loafers", "zh": "便士乐福鞋"},
     "variants": _shoe_variants("LOF", {"BLK": ("Black", "黑色")}, {"BLK-40": 2, "BLK-41": 2, "BLK-42": 1})},
    {"product_id": "SKIN-SER", "aliases": ["serum", "hyaluronic", "hydrating serum", "精华", "精华液", "玻尿酸"],
     "category": "skincare", "price": "259.00",
     "name": {"en": "Hyaluronic hydrating serum", "zh": "玻尿酸保湿精华"},
     "variants": [{"sku": "SK-SER-30", "label": {"en": "30 ml", "zh": "30ml"}, "attributes": {"size": "30ml"}, "stock": 12},
                  {"sku": "SK-SER-50", "label": {"en": "50 ml", "zh": "50ml"}, "attributes": {"size": "50ml"}, "stock": 0}]},
    {"product_id": "SKIN-CRM", "aliases": ["cream", "vitamin c", "vit c", "face cream", "面霜", "维c", "维c面霜", "亮肤霜"],
     "category": "skincare", "price": "329.00",
     "name": {"en": "Vitamin C brightening cream", "zh": "维C亮肤面霜"},
     "variants": [{"sku": "SK-CRM-50", "label": {"en": "50 g", "zh": "50g"}, "attributes": {"size": "50g"}, "stock": 20}]},
    {"product_id": "SKIN-CLN", "aliases": ["cleanser", "face wash", "facial wash", "洗面奶", "洁面", "洁面乳", "洗脸"],
     "category": "skincare", "price": "129.00",
     "name": {"en": "Amino acid gentle cleanser", "zh": "氨基酸温和洁面乳"},
     "variants": [{"sku": "SK-CLN-120", "label": {"en": "120 ml", "zh": "120ml"}, "attributes": {"size": "120ml"}, "stock": 30}]},
    {"product_id": "SKIN-SUN", "aliases": ["sunscreen", "sunblock", "sun cream", "防晒", "防晒霜"],
     "category": "skincare", "price": "199.00",
     "name": {"en": "Mineral sunscreen SPF50", "zh": "物理防晒霜 SPF50"},
     "variants": [{"sku": "SK-SUN-40", "label": {"en": "40 ml", "zh": "40ml"}, "attributes": {"size": "40ml"}, "stock": 8}]},
    {"product_id": "BB-STAR", "aliases": ["star bunny", "bunny", "bunnies", "星星兔", "兔子", "兔"],
     "category": "blind_box", "price": "69.00",
     "name": {"en": "Star Bunny series blind box", "zh": "星星兔系列盲盒"},
     "variants": [
         {"sku": "BB-STAR-RND", "label": {"en": "random figure", "zh": "随机款"}, "stock": 40, "swappable": False},
         {"sku": "BB-STAR-AST", "label": {"en": "Astronaut Bunny", "zh": "宇航员兔"}, "attributes": {"figure": "astronaut"}, "stock": 3},
         {"sku": "BB-STAR-CHF", "label": {"en": "Chef Bunny", "zh": "厨师兔"}, "attributes": {"figure": "chef"}, "stock": 5},
         {"sku": "BB-STAR-PNT", "label": {"en": "Painter Bunny", "zh": "画家兔"}, "attributes": {"figure": "painter"}, "stock": 0},
         {"sku": "BB-STAR-SLP", "label": {"en": "Sleepy Bunny", "zh": "瞌睡兔"}, "attributes": {"figure": "sleepy"}, "stock": 4},
         {"sku": "BB-STAR-MON", "label": {"en": "Moon Bunny (secret)", "zh": "月亮兔（隐藏款）"}, "attributes": {"figure": "moon"},
          "stock": 1, "swappable": False}]},
    {"product_id": "BB-FRST", "aliases": ["forest spirit", "spirit", "sprite", "森林精灵", "精灵", "森林"],
     "category": "blind_box", "price": "79.00",
     "name": {"en": "Forest Spirit series blind box", "zh": "森林精灵系列盲盒"},
     "variants": [
         {"sku": "BB-FRST-RND", "label": {"en": "random figure", "zh": "随机款"}, "stock": 25, "swappable": False},
         {"sku": "BB-FRST-MOS", "label": {"en": "Moss Sprite", "zh": "苔藓精灵"}, "attributes": {"figure": "moss"}, "stock": 2},
         {"sku": "BB-FRST-FRN", "label": {"en": "Fern Sprite", "zh": "蕨叶精灵"}, "attributes": {"figure": "fern"}, "stock": 6}]},
    {"product_id": "GEN-TOTE", "aliases": ["tote", "tote bag", "canvas bag", "bag", "托特包", "帆布包", "包包", "帆布"],
     "category": "general", "price": "149.00",
     "name": {"en": "Canvas tote bag", "zh": "帆布托特包"},
     "variants": [{"sku": "GN-TOTE-NAT", "label": {"en": "Natural", "zh": "原色"}, "attributes": {"colour": "natural"}, "stock": 9},
                  {"sku": "GN-TOTE-BLK", "label": {"en": "Black", "zh": "黑色"}, "attributes": {"colour": "black"}, "stock": 4}]},
    {"product_id": "GEN-SCRF", "aliases": ["scarf", "wool scarf", "merino", "围巾", "羊毛围巾"],
     "category": "general", "price": "299.00",
     "name": {"en": "Merino wool scarf", "zh": "美丽诺羊毛围巾"},
     "variants": [{"sku": "GN-SCRF-GRY", "label": {"en": "Grey", "zh": "灰色"}, "attributes": {"colour": "grey"}, "stock": 3},
                  {"sku": "GN-SCRF-CAM", "label": {"en": "Camel", "zh": "驼色"}, "attributes": {"colour": "camel"}, "stock": 5}]},
]

# The phone and e-mail are what a shopper who is not signed in gives to prove an order is theirs.
CUSTOMERS = {
    "C1001": {"en": "Li Na", "zh": "李娜", "phone": "+86 138 0013 5821", "email": "li.na@example.com"},
    "C1002": {"en": "Tom Chen", "zh": "陈涛", "phone": "+86 139 1122 4407", "email": "tom.chen@example.com"},
    "C1003": {"en": "Wang Fang", "zh": "王芳", "phone": "+86 137 0036 9163", "email": "wang.fang@example.com"},
}


def proof_of(order_number: str) -> tuple[str, str]:
    """(the last four digits of the phone, the e-mail) on a demo order."""
    order = next(o for o in ORDERS if o["number"] == order_number)
    buyer = CUSTOMERS[order["customer_id"]]
    return "".join(ch for ch in buyer["phone"] if ch.isdigit())[-4:], buyer["email"]

# `opened` is what the shop already knows (None: the bot asks the shopper).
# `tries` lists what to say to reach each branch; docs/flows.md shows it.
ORDERS: list[dict[str, Any]] = [
    {"number": "AS10001", "customer_id": "C1001", "delivered_days_ago": 5, "payment": PAY_ALIPAY,
     "items": [{"sku": "SH-OXF-BLK-42"}],
     "tries": "return, changed mind, unworn -> accepted no-reason return (free pick-up); wrong size -> size "
              "exchange first; exchange to 44 (in stock) or 43 (sold out -> alternatives)"},
    {"number": "AS10002", "customer_id": "C1001", "delivered_days_ago": 45, "payment": PAY_CARD,
     "items": [{"sku": "SH-CHS-BRN-40"}],
     "tries": "defective -> quality return within the 90-day window; changed mind -> refused (30-day window)"},
    {"number": "AS10003", "customer_id": "C1002", "delivered_days_ago": 120, "payment": PAY_WECHAT,
     "items": [{"sku": "SH-LOF-BLK-41"}],
     "tries": "any reason -> out of every window: refused, offers repair, care tips and a person"},
    {"number": "AS10004", "customer_id": "C1001", "delivered_days_ago": 3, "payment": PAY_WECHAT,
     "items": [{"sku": "BB-STAR-RND"}, {"sku": "BB-FRST-RND"}],
     "tries": "Star Bunny: changed mind/duplicate, opened -> no refund, swap a duplicate, coupon or second draw; "
              "unopened -> refund minus return shipping; defective -> refund"},
    {"number": "AS10005", "customer_id": "C1002", "delivered_days_ago": 10, "payment": PAY_ALIPAY,
     "items": [{"sku": "SK-SER-30"}],
     "tries": "allergic reaction, opened -> photo, fast refund, skincare expert (handoff); changed mind -> refused "
              "(7-day window over)"},
    {"number": "AS10006", "customer_id": "C1002", "delivered_days_ago": 2, "payment": PAY_ALIPAY,
     "items": [{"sku": "SK-CRM-50"}, {"sku": "SK-CLN-120"}],
     "tries": "leaked in transit -> immediate replacement; changed mind unopened -> refund; opened -> refused with "
              "skin advice"},
    {"number": "AS10007", "customer_id": "C1003", "delivered_days_ago": 40, "payment": PAY_WECHAT,
     "items": [{"sku": "SK-SUN-40"}],
     "tries": "out of the 30-day quality window -> refused; has a finished return (RT-900001) for progress"},
    {"number": "AS10008", "customer_id": "C1003", "delivered_days_ago": 12, "payment": PAY_CARD,
     "items": [{"sku": "GN-TOTE-NAT"}, {"sku": "GN-SCRF-GRY"}],
     "tries": "not as described / defective -> quality return (15 days); changed mind -> refused (7 days); "
              "has an open complaint (TK-900002)"},
    {"number": "AS10009", "customer_id": "C1003", "delivered_days_ago": 20, "payment": PAY_ALIPAY,
     "items": [{"sku": "BB-STAR-RND", "opened": True}],
     "tries": "blind box opened in the app 20 days ago -> out of every window, refused"},
    {"number": "AS10010", "customer_id": "C1002", "delivered_days_ago": None, "status": "shipped", "shipping_days": 1,
     "payment": PAY_ALIPAY, "items": [{"sku": "SH-OXF-BRN-43"}],
     "tries": "not delivered yet -> no return yet, explains what to do"},
]

# Cases that already exist, for trying progress tracking. (status, days ago, note)
CASES: list[dict[str, Any]] = [
    {"id": "RT-900001", "kind": "return", "order_number": "AS10007", "customer_id": "C1003", "language": "en",
     "details": {"item_sku": "SK-SUN-40", "item": {"en": "Mineral sunscreen SPF50 (40 ml)", "zh": "物理防晒霜 SPF50（40ml）"},
                 "reason": "changed_mind", "refund_amount": "189.00", "refund_method": PAY_WECHAT,
                 "return_method": "pickup"},
     "history": [("submitted", 38, ""), ("pickup_scheduled", 38, ""), ("picked_up", 37, ""),
                 ("received", 35, ""), ("refunded", 34, "")]},
    {"id": "TK-900002", "kind": "complaint", "order_number": "AS10008", "customer_id": "C1003", "language": "zh",
     "details": {"category": "delivery", "severity": "medium", "queue": "logistics",
                 "description": "快递员没有送货上门，直接放在驿站也没通知。"},
     "history": [("open", 1, ""), ("in_progress", 0, "")]},
]


def table() -> str:
    """The demo orders as a Markdown table (for docs/flows.md)."""
    names = {v["sku"]: (p["name"]["en"], v["label"]["en"], p["category"]) for p in PRODUCTS for v in p["variants"]}
    rows = ["| order | customer | proof (phone ends / e-mail) | category | item(s) | delivered | opened? | try |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in ORDERS:
        items = "; ".join(f"{names[i['sku']][0]} ({names[i['sku']][1]})" for i in o["items"])
        category = ", ".join(sorted({names[i["sku"]][2] for i in o["items"]}))
        days = o["delivered_days_ago"]
        delivered = f"{days} days ago" if days is not None else "not yet (shipped)"
        opened = {True: "yes (known)", False: "no (known)"}.get(o["items"][0].get("opened"), "asked")
        last4, email = proof_of(o["number"])
        rows.append(f"| {o['number']} | {o['customer_id']} | {last4} / {email} | {category} | {items} | {delivered} | {opened} | {o['tries']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
