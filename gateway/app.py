"""The aiohttp application that hosts every channel, plus health and metrics."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

import handoff
from bot import serving
from bot.config import Settings, ensure_data_keys, ensure_secret
from bot.continuation import ContinuationHook, Continuations, MemoryCodeStore, RedisCodeStore
from bot.conversation import ConversationService
from bot.dedupe import Deduper, MemoryDeduper, RedisDeduper
from bot.fanout import Fanout, RedisFanout
from bot.inbox import Inbox, Liveness, MemoryInbox, RedisInbox, default_gateway_id
from bot.metrics import Metrics
from bot.plugins import CaseFact, Plugin, PluginContext
from bot.rasa_client import RasaClient
from bot.serving import GUARD_KEY, ConnectionGuard, periodically
from bot.transcript import RedisTranscriptJournal, TranscriptStore
from channels import slack, telegram, webchat
from flows import updates
from flows.cases import CaseStore, analytics_facts, console_cases
from flows.ownership import ProofLedger

log = logging.getLogger("gateway.app")

# Every plugin, in the order they are set up: the web chat and the console always; the
# others only when their settings are there.
PLUGINS: tuple[tuple[str, Plugin], ...] = (("webchat", webchat.setup), ("handoff", handoff.setup),
                                           ("case-updates", updates.setup))
OPTIONAL_CHANNELS: tuple[tuple[str, Plugin], ...] = (("telegram", telegram.setup), ("slack", slack.setup))

SERVICE_KEY = web.AppKey("conversation_service", ConversationService)
CHANNELS_KEY = web.AppKey("optional_channels", list)
READY_TIMEOUT_SECONDS = 2.0
DRAINING_KEY = web.AppKey("draining", asyncio.Event)  # set by `drain`: /readyz answers 503
NOTICES_KEY = web.AppKey("operator_notices", list)  # PluginContext.notices: the CLI prints them

MAX_REQUEST_BYTES = 256 * 1024
PURGE_CASES_EVERY_SECONDS = 3600.0


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Unexpected errors become a JSON 500 and a log entry; the gateway keeps running."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request failed", extra={"path": request.path})
        return web.json_response({"error": "internal_error", "message": "the gateway failed on this request"},
                                 status=500)


def security_headers(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Headers every page gets: no sniffing, no referrer leaks, scripts and connections only
    from the gateway itself; only the shop's own sites may frame the web chat, nobody the console."""
    framers = " ".join(o for o in settings.webchat_allowed_origins if o != "*")

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if (response.content_type or "").startswith("text/html") or request.path in ("/", "/console"):
            console = request.path.startswith("/console")
            ancestors = "'none'" if console else f"'self' {framers}".strip()
            response.headers.setdefault("Content-Security-Policy", (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data: https: http:; connect-src 'self' ws: wss:; object-src 'none'; "
                f"base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"))
            if console:
                response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return middleware


async def drain(app: web.Application, timeout: float) -> int:
    """A graceful stop's first part (SIGTERM): /readyz turns 503 so the load balancer sends
    no one new, new messages are refused (web chat sockets are closed with a reconnect hint,
    REST answers 503 "draining"), the accepted ones are answered for up to `timeout`
    seconds. How many are left (those kept are answered after the restart). The app's
    shutdown then closes every socket with the reconnect hint."""
    app[DRAINING_KEY].set()
    service = app[SERVICE_KEY]
    service.stop_accepting()
    left = await service.drained(timeout)
    log.info("drained", extra={"unanswered": left})
    await serving.drained(app)  # the web chat closes its sockets with the reconnect hint
    return left


def create_app(settings: Settings) -> web.Application:
    guard = ConnectionGuard(settings.max_connections_per_address, settings.header_timeout_seconds,
                            settings.trusted_proxies)
    app = web.Application(middlewares=[guard.middleware, error_middleware, security_headers(settings)],
                          client_max_size=MAX_REQUEST_BYTES)
    app[GUARD_KEY] = guard
    metrics = Metrics()
    rasa = RasaClient(settings.rasa_url, settings.rasa_timeout_seconds, settings.rasa_token, metrics=metrics)
    keys = ensure_data_keys(settings)  # seals what is kept at rest; the action server has the same
    deduper: Deduper
    inbox: Inbox
    redis_client = None
    journal = None
    liveness: Liveness | None = None
    fanout = Fanout()
    if settings.redis_url:
        import redis.asyncio as redis_asyncio

        redis_client = redis_asyncio.from_url(settings.redis_url)  # type: ignore[no-untyped-call]
        liveness = Liveness(redis_client, settings.gateway_id or default_gateway_id())
        fanout = RedisFanout(redis_client)
        deduper, inbox = RedisDeduper(redis_client), RedisInbox(redis_client, keys, liveness=liveness)
        journal = RedisTranscriptJournal(redis_client, keys)
    else:
        deduper, inbox = MemoryDeduper(), MemoryInbox()
    service = ConversationService(
        rasa,
        metrics=metrics,
        transcripts=TranscriptStore(journal=journal),
        max_pending=settings.max_pending_per_conversation,
        max_pending_total=settings.max_pending_total,
        retry_initial_seconds=settings.rasa_retry_initial_seconds,
        retry_max_seconds=settings.rasa_retry_max_seconds,
        holding_after_seconds=settings.holding_after_seconds,
    )
    app[SERVICE_KEY] = service
    app[DRAINING_KEY] = asyncio.Event()
    async def save_test(key: str, outcome: str, handed_off: bool, name: str) -> list[str]:
        """A conversation as an evaluation dialogue and a Rasa test story (gateway/saved_tests.py)."""
        from gateway import saved_tests
        from gateway.rasa_runtime import REPO_ROOT

        saved = saved_tests.build(await rasa.tracker(key), outcome, handed_off, name)
        tests_dir = Path(settings.saved_tests_dir) if settings.saved_tests_dir else \
            REPO_ROOT / "tests" / "evaluation" / "corpus_saved"
        written = await asyncio.to_thread(saved_tests.write, saved, tests_dir, tests_dir / "stories")
        log.info("conversation saved as a test", extra={"conversation": key, "test": name, "outcome": outcome})
        return [str(p) for p in written]

    continuations = Continuations(RedisCodeStore(redis_client) if redis_client is not None else MemoryCodeStore())

    async def repoint_cases(old_key: str, new_key: str) -> None:
        """A conversation continued elsewhere: its cases' updates go to where the shopper is now."""
        moved = await asyncio.to_thread(CaseStore(keys=keys).move_conversation_sync, old_key, new_key)
        log.info("cases follow the shopper to another channel", extra={"conversation": new_key, "cases": moved})

    continuations.on_continued(repoint_cases)
    service.add_hook(ContinuationHook(service, continuations))
    read_facts = analytics_facts(keys)

    async def case_facts(since: float, until: float) -> list[CaseFact]:
        """The flows' cases as the analytics count them (bot/plugins.py `CaseFacts`)."""
        return [CaseFact(**fact) for fact in await read_facts(since, until)]

    ctx = PluginContext(service=service, settings=settings, env=settings.environ, secret=ensure_secret(settings),
                        keys=keys, deduper=deduper, inbox=inbox, redis=redis_client, cases=console_cases(keys),
                        case_facts=case_facts, fanout=fanout,
                        liveness=liveness, save_test=save_test, continuations=continuations)
    for _, setup in PLUGINS:
        setup(app, ctx)

    async def start_rasa_client(app: web.Application) -> None:
        await rasa.start()  # before any channel's start-up hook replays kept deliveries
        await service.transcripts.start()  # the history kept in Redis, before anything is added
        if liveness is not None:
            await liveness.start()  # this gateway's kept deliveries are its own while it beats
        await fanout.start()  # the other gateways' frames for sockets held here

    app.on_startup.append(start_rasa_client)
    app[CHANNELS_KEY] = [name for name, setup in OPTIONAL_CHANNELS if setup(app, ctx)]
    if app[CHANNELS_KEY]:
        log.info("optional channels enabled", extra={"channels": app[CHANNELS_KEY]})
    app[NOTICES_KEY] = ctx.notices

    async def healthz(request: web.Request) -> web.Response:
        """Live: this process answers (200 while it runs); what it depends on, for people."""
        rasa_up = await rasa.is_ready()
        return web.json_response({"status": "ok", "rasa": "up" if rasa_up else "down",
                                  "pending_messages": service.total_pending})

    async def readyz(request: web.Request) -> web.Response:
        """Ready for shoppers: Redis (when configured) answers and at least one Rasa server
        has a model loaded; 503 otherwise, so that a load balancer sends them elsewhere."""
        ready_rasa = await rasa.ready_servers()
        redis_ok: bool | None = None
        if redis_client is not None:
            try:
                redis_ok = bool(await asyncio.wait_for(redis_client.ping(), READY_TIMEOUT_SECONDS))
            except Exception:
                redis_ok = False
        draining = app[DRAINING_KEY].is_set()
        ready = bool(ready_rasa) and redis_ok is not False and not draining
        body = {"ready": ready, "draining": draining, "rasa": {"ready": ready_rasa, "servers": [s.url for s in rasa.servers]},
                "redis": {None: "not configured", True: "up", False: "down"}[redis_ok]}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        body = service.metrics.render({"pending_messages": service.total_pending})
        return web.Response(text=body, content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)

    async def on_cleanup(app: web.Application) -> None:
        await service.close()
        await fanout.close()
        if liveness is not None:
            await liveness.stop()  # what is left unanswered goes to a survivor at once
        await service.transcripts.close()
        await rasa.close()
        if redis_client is not None:
            await redis_client.aclose()

    app.on_cleanup.append(on_cleanup)
    stores: list[tuple[CaseStore, ProofLedger]] = []

    async def purge_cases() -> None:
        """The flows' cases past `CASE_RETENTION_DAYS` and wrong ownership answers past their
        window (the stores are opened on first use)."""
        if not stores:
            cases = await asyncio.to_thread(CaseStore, None, keys)
            stores.append((cases, await asyncio.to_thread(ProofLedger, cases.path)))
        cases, ledger = stores[0]
        await cases.purge(settings.case_retention_days * 86400)
        await asyncio.to_thread(ledger.expire_sync)

    periodically(app, "purge-cases", PURGE_CASES_EVERY_SECONDS, purge_cases)
    return app
