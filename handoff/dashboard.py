"""The managers' analytics dashboard: `GET /console/analytics` (the page), its data
`GET /console/analytics.json?...` and the same figures as `GET /console/analytics.csv?...`.

Only a signed-in manager (`role: manager` in AGENTS_FILE) gets them: without a console session
the page redirects to the sign-in and the data answers 401; an agent's session gets 403.
Query: `from`, `to` (YYYY-MM-DD, days in the shop's time zone, at most ANALYTICS_RETENTION_DAYS
apart and not before the retention), `period` (`day` | `week`), `channel`, `language`
(`en` | `zh`); anything else is refused with 400 and a reason. Each manager may ask 20 times at
once then 2 per second (429 after that), and at most 4 reports are computed at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any, Mapping

from aiohttp import web

from bot.ratelimit import KeyedBuckets
from handoff.agents import Agent
from handoff.analytics import Analytics, Query, report_csv
from handoff.sessions import ConsoleSessions

COOKIE = "console_session"
CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DAYS = 14
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class QueryError(ValueError):
    pass


def parse_query(params: Mapping[str, str], today: dt.date, retention_days: int,
                channels: list[str]) -> Query:
    unknown = set(params) - {"from", "to", "period", "channel", "language"}
    if unknown:
        raise QueryError(f"unknown parameter {sorted(unknown)[0][:40]!r}")

    def date(name: str, default: dt.date) -> dt.date:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        if not DATE.match(raw):
            raise QueryError(f"'{name}' must be a date like 2026-12-03")
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise QueryError(f"'{name}' is not a date") from None

    last = date("to", today)
    first = date("from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise QueryError("'from' is after 'to'")
    if (last - first).days + 1 > retention_days:
        raise QueryError(f"at most {retention_days} days at once (ANALYTICS_RETENTION_DAYS)")
    if last > today + dt.timedelta(days=1):
        raise QueryError("'to' is in the future")
    if first < today - dt.timedelta(days=retention_days):
        raise QueryError(f"nothing is kept before {(today - dt.timedelta(days=retention_days)).isoformat()}")
    period = params.get("period") or "day"
    if period not in ("day", "week"):
        raise QueryError("'period' is day or week")
    channel = params.get("channel") or None
    if channel is not None and (not CHANNEL.match(channel) or channel not in channels):
        raise QueryError(f"'channel' is one of {', '.join(channels)}")
    language = params.get("language") or None
    if language not in (None, "en", "zh"):
        raise QueryError("'language' is en or zh")
    return Query(first, last, period, channel, language)


class Dashboard:
    def __init__(self, analytics: Analytics, sessions: ConsoleSessions, agents: dict[str, Agent],
                 static_dir: Any) -> None:
        self.analytics = analytics
        self.sessions = sessions
        self.agents = agents  # the dict the agents-file watcher updates in place
        self.static_dir = static_dir
        self.buckets = KeyedBuckets(burst=20, rate=2.0, max_keys=1000)
        self.computing = asyncio.Semaphore(4)

    async def _manager(self, request: web.Request, page: bool = False) -> Agent:
        session = await self.sessions.verify(request.cookies.get(COOKIE), self.agents)
        agent = self.agents.get(session.username) if session is not None else None
        if agent is None:
            if page:
                raise web.HTTPSeeOther("/console")
            raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}', content_type="application/json")
        if not agent.is_manager:
            raise web.HTTPForbidden(text='{"error": "managers_only", "message": "the analytics are for managers"}',
                                    content_type="application/json")
        return agent

    async def page(self, request: web.Request) -> web.StreamResponse:
        await self._manager(request, page=True)
        return web.FileResponse(self.static_dir / "analytics.html", headers={
            "Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8", "X-Frame-Options": "DENY",
            "Content-Security-Policy": PAGE_POLICY})

    async def _report(self, request: web.Request) -> dict[str, Any]:
        agent = await self._manager(request)
        if not self.buckets.allow(agent.username):
            raise web.HTTPTooManyRequests(text='{"error": "too_many_requests"}', content_type="application/json",
                                          headers={"Retry-After": "1"})
        try:
            query = parse_query(request.query, self.analytics.today(), self.analytics.retention_days,
                                self.analytics.channels)
        except QueryError as exc:
            raise web.HTTPBadRequest(text=web.json_response({"error": "invalid_query", "message": str(exc)}).text,
                                     content_type="application/json") from None
        async with self.computing:
            return await self.analytics.report(query)

    async def data(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self._report(request), headers={"Cache-Control": "no-store"})

    async def csv(self, request: web.Request) -> web.StreamResponse:
        report = await self._report(request)
        name = f"analytics-{report['from']}-{report['to']}-{report['period']}.csv"
        return web.Response(text=report_csv(report), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"',
                                     "Cache-Control": "no-store"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/console/analytics", self.page)
        app.router.add_get("/console/analytics.json", self.data)
        app.router.add_get("/console/analytics.csv", self.csv)
