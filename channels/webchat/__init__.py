"""The shop's web chat: the gateway's own page and websocket, plus Rasa's REST and
socket.io contracts so tools and widgets written for Rasa work unchanged."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from bot import serving
from bot.messages import ConversationRef
from bot.outbox import MemoryOutbox, Outbox, RedisOutbox
from bot.plugins import PluginContext
from channels.webchat.rest import RestInput, RestOutput
from channels.webchat.session import SessionSigner
from channels.webchat.socketio import Presence, SocketIOInput
from channels.webchat.uploads import UploadLimits, Uploads
from channels.webchat.websocket import WebchatInput, WebchatOutput

STATIC_DIR = Path(__file__).with_name("static")
EXPIRE_EVERY_SECONDS = 3600.0
log = logging.getLogger("gateway.webchat")

WEBCHAT_KEY = web.AppKey("webchat", WebchatInput)


def setup(app: web.Application, ctx: PluginContext) -> bool:
    """The plugin contract (bot/plugins.py): the web chat is always on."""
    service, settings, secret, keys, inbox = ctx.service, ctx.settings, ctx.secret, ctx.keys, ctx.inbox
    signer = SessionSigner(secret)

    webchat_output = WebchatOutput(ctx.fanout)
    service.register_output("webchat", webchat_output)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    page = (settings.public_url or f"http://{host}:{settings.port}").rstrip("/")
    ctx.continuations.add_way("webchat", lambda code, lang: (
        f"网页客服：{page}/?continue={code}" if lang == "zh" else f"Web chat: {page}/?continue={code}"))
    uploads = Uploads(settings.data_dir / "uploads", signer, secret, settings.public_url, keys=keys,
                      language_of=lambda conversation_id: service.language_of(ConversationRef("webchat", conversation_id).key),
                      limits=UploadLimits(max_files=settings.upload_max_files,
                                          max_bytes=int(settings.upload_max_mb * 1024 * 1024),
                                          per_minute=settings.upload_rate_per_minute,
                                          retention_seconds=settings.upload_retention_days * 86400))
    webchat = WebchatInput(service, webchat_output, signer, settings, uploads, inbox, ctx.availability)
    app[WEBCHAT_KEY] = webchat

    # Replies for a REST sender's next request or a socket.io client's next session: in Redis
    # when there is one, so that the next request or session may reach any gateway.
    rest_outbox: Outbox = RedisOutbox(ctx.redis, keys, "rest") if ctx.redis is not None else MemoryOutbox()
    rest_output = RestOutput(rest_outbox)
    service.register_output("rest", rest_output)
    rest = RestInput(service, rest_output, settings)

    socketio_outbox: Outbox = RedisOutbox(ctx.redis, keys, "socketio") if ctx.redis is not None else MemoryOutbox()
    socketio_input = SocketIOInput(service, signer, settings, socketio_outbox, Presence(ctx.redis, ctx.liveness))
    service.register_output("socketio", socketio_input.output)
    socketio_input.sio.attach(app, socketio_path="socket.io")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    app.router.add_get("/webchat/ws", webchat.handle)
    app.router.add_static("/webchat/static/", STATIC_DIR)
    app.router.add_post("/webchat/upload", uploads.upload)
    app.router.add_get("/webchat/files/{file_id}", uploads.serve)
    app.router.add_get("/webhooks/rest/", rest.health)
    app.router.add_get("/version", rest.version)
    app.router.add_post("/webhooks/rest/webhook", rest.webhook)

    async def close_sockets(app: web.Application) -> None:
        await webchat.close_all()
        await webchat.stop_tracking()

    async def close_socketio(app: web.Application) -> None:
        await socketio_input.close()

    serving.every_while_listening(app, "webchat-takeover", ctx.settings.takeover_seconds, webchat.replay_kept)
    async def close_sockets_when_drained(app: web.Application) -> None:
        await webchat.close_all()

    serving.on_drained(app, close_sockets_when_drained)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(close_socketio)
    serving.periodically(app, "expire-uploads", EXPIRE_EVERY_SECONDS, uploads.expire)
    return True
