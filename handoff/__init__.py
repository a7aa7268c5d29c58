"""Human handoff: queue, agent assignment, agent console, relaying and hand-back.

`setup` (the plugin contract, bot/plugins.py) wires it into the gateway: a hook on the conversation service (so a
handed-off conversation's messages go to the agent, not to Rasa), the console routes and
the store (memory, or Redis when REDIS_URL is set).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from aiohttp import web

from bot.config import ConfigError
from bot.files import write_private
from bot.i18n import format_datetime
from bot.plugins import Availability, PluginContext
from bot.serving import periodically
from bot.settings_schema import SettingsReader
from handoff.agents import AgentsFileError, ensure_agents_file, load_agents
from handoff.analytics import (
    ANALYTICS_RETENTION_DAYS,
    Analytics,
    AnalyticsRecorder,
    AnalyticsStore,
    RedisAnalyticsStore,
    SqliteAnalyticsStore,
)
from handoff.canned import load_canned
from handoff.config import load_handoff_settings
from handoff.console import STATIC_DIR, Console, ConsoleHub
from handoff.dashboard import Dashboard
from handoff.service import HandoffService
from handoff.sessions import ConsoleSessions, FileRevocations, RedisRevocations, Revocations
from handoff.sla import SlaWatcher
from handoff.staff_desk import MemoryThreadIndex, RedisThreadIndex, StaffDesk
from handoff.store import HandoffStore, MemoryHandoffStore, RedisHandoffStore
from handoff.texts import DEFAULT_CANNED

log = logging.getLogger("gateway.handoff")

HANDOFF_KEY = web.AppKey("handoff", HandoffService)
ANALYTICS_KEY = web.AppKey("analytics", Analytics)
REFRESH_SECONDS = 10.0
PURGE_ANALYTICS_EVERY_SECONDS = 3600.0


def setup(app: web.Application, ctx: PluginContext) -> bool:
    """The plugin contract (bot/plugins.py): the console is always on."""
    service, settings, secret, keys, redis_client = ctx.service, ctx.settings, ctx.secret, ctx.keys, ctx.redis
    reader = SettingsReader(settings.environ)
    retention_days = reader.get(ANALYTICS_RETENTION_DAYS)
    try:
        handoff_settings = load_handoff_settings(settings.environ, settings.data_dir)
    except ConfigError as exc:  # every problem of the module at once
        raise ConfigError([*exc.problems, *reader.problems]) from None
    if reader.problems:
        raise ConfigError(reader.problems)
    new_password = ensure_agents_file(handoff_settings.agents_file)
    if new_password is not None:
        # Written to a file only its owner can read (not to logs or stdout); only the hash is
        # kept in the agents file.
        secret_file = handoff_settings.agents_file.with_name("demo-agent-password.txt")
        write_private(secret_file, new_password + "\n")
        ctx.tell_operator(f"Agent console: created agent 'demo'; its password is in {secret_file} "
                          "(add agents with ./aftersales agent add)")
    try:
        agents = load_agents(handoff_settings.agents_file)
    except AgentsFileError as exc:
        raise ConfigError([str(exc)]) from exc
    store: HandoffStore = (RedisHandoffStore(redis_client, keys) if redis_client is not None
                           else MemoryHandoffStore())
    hub = ConsoleHub(store, service, agents, clock=time.time, fanout=ctx.fanout, zone=handoff_settings.hours.zone)
    handoff = HandoffService(service, store, handoff_settings, agents, cases=ctx.cases, clock=hub.clock, listener=hub)
    handoff.trail = ctx.continuations.trail  # a conversation carried over from another channel shows them all
    resolution_hours = handoff_settings.resolution_hours
    analytics_store: AnalyticsStore = (RedisAnalyticsStore(redis_client) if redis_client is not None
                                       else SqliteAnalyticsStore(settings.data_dir / "analytics.sqlite3"))
    zone = handoff_settings.hours.zone
    recorder = AnalyticsRecorder(analytics_store, secret, zone, retention_days, service.metrics, service)
    # First of all hooks: it sees every message, also one going to a person or a code that
    # continues a conversation from another channel (the core's continuation hook takes it).
    service.add_hook(recorder, first=True)
    service.add_hook(handoff)
    desk = StaffDesk(handoff, ctx.staff, RedisThreadIndex(redis_client) if redis_client is not None
                     else MemoryThreadIndex())
    handoff.observe(desk)  # threads in the team's chat (an agents' Slack channel), when one is configured
    handoff.observe(hub)  # SLA notices on the consoles
    handoff.observe(recorder)

    def people_now(language: str) -> Availability:
        hours = handoff_settings.hours
        now = dt.datetime.now(hours.zone)
        if not hours.is_open(now):
            return Availability("closed", format_datetime(hours.next_opening(now), language, now=now))
        return Availability("online" if hub.online_agents() else "offline")

    ctx.availability.provide(people_now)
    sla = SlaWatcher(handoff)
    ctx.staff.attach_desk(desk)
    revocations: Revocations = (RedisRevocations(redis_client) if redis_client is not None
                                else FileRevocations(settings.data_dir / "console-signouts.json"))
    sessions = ConsoleSessions(secret, revocations)
    # CANNED_REPLIES_FILE, else DATA_DIR/canned-replies.yml once a manager edited them (else built in).
    canned_path = handoff_settings.canned_file or settings.data_dir / "canned-replies.yml"
    console = Console(handoff, hub, sessions, settings,
                      load_canned(handoff_settings.canned_file or (canned_path if canned_path.exists() else None),
                                  DEFAULT_CANNED),
                      save_test=ctx.save_test, canned_path=canned_path)
    app[HANDOFF_KEY] = handoff
    analytics = Analytics(analytics_store, zone, handoff_settings.first_response_minutes, resolution_hours,
                          retention_days, case_facts=ctx.case_facts, channels=lambda: service.channels)
    app[ANALYTICS_KEY] = analytics
    Dashboard(analytics, sessions, agents, STATIC_DIR).add_routes(app)

    async def purge_analytics() -> None:
        oldest = dt.datetime.now(zone).date() - dt.timedelta(days=retention_days)
        gone = await analytics_store.purge(oldest.isoformat())
        if gone:
            log.info("analytics records past their retention deleted", extra={"count": gone})

    periodically(app, "purge-analytics", PURGE_ANALYTICS_EVERY_SECONDS, purge_analytics)

    app.router.add_get("/console", console.page)
    app.router.add_post("/console/login", console.login)
    app.router.add_post("/console/logout", console.logout)
    app.router.add_get("/console/ws", console.socket)
    app.router.add_static("/console/static/", STATIC_DIR)

    async def refresh_consoles(app: web.Application) -> Any:
        """Keep the consoles' live list fresh while shoppers talk to the bot; first make sure
        every conversation the store gives to a person is paused in Rasa."""
        reconciled = asyncio.create_task(handoff.reconcile(), name="handoff-reconcile")

        async def loop() -> None:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                try:
                    await hub.announce_presence()  # other gateways count agents signed in here
                except Exception:
                    log.exception("presence announcement failed")
                if hub.sockets:
                    try:
                        await console.end_invalid_sessions()  # e.g. signed out on another gateway
                        await hub.changed_here()
                    except Exception:
                        log.exception("console refresh failed")
        async def sla_loop() -> None:
            while True:
                await asyncio.sleep(handoff_settings.sla_check_seconds)
                try:
                    await sla.check()
                except Exception:
                    log.exception("SLA check failed")
        tasks = [asyncio.create_task(loop(), name="console-refresh"), reconciled,
                 asyncio.create_task(sla_loop(), name="sla-check"),
                 asyncio.create_task(console.watch_agents_file(handoff_settings.agents_file), name="agents-file")]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close_sockets(app: web.Application) -> None:
        await console.close_all()

    app.cleanup_ctx.append(refresh_consoles)
    app.on_shutdown.append(close_sockets)
    return True
