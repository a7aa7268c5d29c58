"""The shopper's case page: `GET /case/<token>`, a signed link that expires (bot/links.py,
CASE_LINK_DAYS, 30 by default), showing one case's timeline (what was asked, decided, sent,
refunded, with dates in the shop's zone and the shopper's language), the photos they sent,
and what they still need to do. Rendered on the server (no script), readable on a phone.
A forged or altered link answers 403, an expired one 410, both with a page that says so in
both languages. The links are handed out with the case updates (flows/updates.py).
"""

from __future__ import annotations

import datetime as dt
import html
import time

from aiohttp import web

from bot.i18n import format_datetime, zone_label
from bot.links import LinkSigner
from bot.plugins import PluginContext
from bot.settings_schema import Setting, SettingsReader
from flows.cases import Case, CaseStore
from flows.replies import money
from flows.texts import Texts

PAGE_PATH = "/case"
CASE_LINK_DAYS = Setting("CASE_LINK_DAYS", 30.0, float, "how long a shopper's case page link stays valid")
_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f6f6f4;color:#1d1d1b}
main{max-width:40rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0} h2{font-size:1.05rem;margin:1.4rem 0 .4rem} .card h2{margin-top:0}
.card{background:#fff;border-radius:12px;padding:1rem;margin:.8rem 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.now{font-weight:600} .muted{color:#5b5b57;font-size:.9rem}
ol{list-style:none;padding:0;margin:0} li{padding:.5rem 0 .5rem 1.2rem;border-left:3px solid #d6d6d0;position:relative}
li:last-child{border-left-color:#2a7d4f} li time{display:block;color:#5b5b57;font-size:.85rem}
.photos{display:flex;flex-wrap:wrap;gap:.5rem} .photos img{width:6rem;height:6rem;object-fit:cover;border-radius:8px}
.todo{background:#fff8e6;border-left:4px solid #e0a100}
a.lang{float:right;display:inline-block;min-height:44px;line-height:44px;padding:0 .6rem}
"""


def _page(title: str, body: str, lang: str, status: int = 200) -> web.Response:
    document = (f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
                f"<style>{_STYLE}</style></head><body><main>{body}</main></body></html>")
    return web.Response(text=document, content_type="text/html", status=status, headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; img-src 'self' https: http:; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"})


class CasePages:
    def __init__(self, store: CaseStore, texts: Texts, zone: dt.tzinfo, secret: str, base_url: str,
                 valid_days: float = 30.0) -> None:
        self.store = store
        self.texts = texts
        self.zone = zone
        self.signer = LinkSigner(secret, "case page")
        self.base_url = base_url.rstrip("/")
        self.valid_seconds = valid_days * 86400

    def link(self, case_id: str, lang: str, now: float | None = None) -> str:
        token = self.signer.make({"case": case_id, "lang": lang}, (time.time() if now is None else now) + self.valid_seconds)
        return f"{self.base_url}{PAGE_PATH}/{token}"

    def _when(self, at: float, lang: str) -> str:
        return format_datetime(dt.datetime.fromtimestamp(at, self.zone), lang)

    def render(self, case: Case, lang: str, token: str) -> str:
        t, e = self.texts, html.escape
        kind = t(f"kind.{case.kind}", lang) if t.has(f"kind.{case.kind}") else case.kind
        item = case.details.get("item")
        item_name = item.get(lang) or item.get("en") if isinstance(item, dict) else ""
        status = t(f"status.{case.status}", lang) if t.has(f"status.{case.status}") else case.status
        other = "en" if lang == "zh" else "zh"
        parts = [f'<a class="lang" href="{PAGE_PATH}/{e(token)}?lang={other}">{e(t("casepage.other_language", lang))}</a>',
                 f"<h1>{e(t('casepage.heading', lang, kind=kind, case_id=case.id))}</h1>",
                 '<div class="card">']
        if case.order_number:
            parts.append(f"<div>{e(t('casepage.order', lang, order=case.order_number))}"
                         f"{' · ' + e(str(item_name)) if item_name else ''}</div>")
        parts.append(f'<div class="muted">{e(t("casepage.opened", lang, when=self._when(case.created_at, lang)))}</div>')
        parts.append(f'<div class="now">{e(t("casepage.status", lang, status=status))}</div>')
        if case.details.get("refund_amount"):
            parts.append(f"<div>{e(t('casepage.refund', lang, amount=money(case.details['refund_amount'])))}</div>")
        parts.append("</div>")
        todo_key = f"casepage.todo.{case.status}"
        todo = t(todo_key, lang, case_id=case.id) if t.has(todo_key) else t("casepage.todo.none", lang)
        parts.append(f'<div class="card todo"><h2>{e(t("casepage.todo", lang))}</h2><p>{e(todo)}</p></div>')
        steps = []
        for change in case.history:
            label = t(f"status.{change.status}", lang) if t.has(f"status.{change.status}") else change.status
            steps.append(f'<li><time>{e(self._when(change.at, lang))}</time>{e(label)}</li>')
        parts.append(f'<div class="card"><h2>{e(t("casepage.timeline", lang))}</h2><ol>{"".join(steps)}</ol></div>')
        photos = [u for u in [case.details.get("photo"), *(case.details.get("evidence") or [])]
                  if isinstance(u, str) and u.startswith(("https://", "http://", "/"))]
        if photos:
            images = "".join(f'<a href="{e(u)}"><img src="{e(u)}" alt="{e(t("casepage.photo", lang, n=i))}"></a>'
                             for i, u in enumerate(photos, 1))
            parts.append(f'<div class="card"><h2>{e(t("casepage.evidence", lang))}</h2>'
                         f'<div class="photos">{images}</div></div>')
        zone = zone_label(dt.datetime.now(self.zone), lang)
        parts.append(f'<p class="muted">{e(t("casepage.footer", lang, zone=zone))}</p>')
        return "".join(parts)

    def _refusal(self, key: str, status: int) -> web.Response:
        both = f"<h1>{html.escape(self.texts(key, 'en'))}</h1><p>{html.escape(self.texts(key, 'zh'))}</p>"
        return _page(self.texts(key, "en"), both, "en", status)

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        opened = self.signer.open(token)
        if opened is None or not isinstance(opened.payload.get("case"), str):
            return self._refusal("casepage.invalid", 403)
        if opened.expired:
            return self._refusal("casepage.expired", 410)
        case = await self.store.get(opened.payload["case"])
        if case is None:  # erased since (a shopper's deletion request) or past retention
            return self._refusal("casepage.expired", 410)
        lang = request.query.get("lang") if request.query.get("lang") in ("en", "zh") else opened.payload.get("lang")
        lang = lang if lang in ("en", "zh") else "en"
        kind = self.texts(f"kind.{case.kind}", lang) if self.texts.has(f"kind.{case.kind}") else case.kind
        return _page(f"{kind} {case.id}", self.render(case, lang, token), lang)


def base_url(ctx: PluginContext) -> str:
    settings = ctx.settings
    if settings.public_url:
        return settings.public_url
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def case_pages(ctx: PluginContext, store: CaseStore, texts: Texts, zone: dt.tzinfo) -> CasePages:
    days = SettingsReader(ctx.env).get(CASE_LINK_DAYS)
    return CasePages(store, texts, zone, ctx.secret, base_url(ctx), valid_days=days)


def add_route(app: web.Application, pages: CasePages) -> None:
    app.router.add_get(PAGE_PATH + "/{token}", pages.handle)
