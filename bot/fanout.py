"""Frames for sockets on any gateway: one publish, every gateway delivers to the sockets it
holds (the web chat's shopper sockets, the agents' console sockets).

With several gateways on one Redis, a reply or an agent's message is often made on another
gateway than the one holding the shopper's socket. `RedisFanout` publishes each frame on a
Redis pub/sub channel per topic; every gateway, this one included, hears it and hands it to
its local handler. Frames of one conversation stay in order: one gateway publishes them one
after the other on one connection, and Redis delivers in that order. `LocalFanout` (no
Redis) hands frames to the handler directly. If Redis cannot take a frame, or this gateway
is not subscribed at the moment (Redis came back, the subscription is being renewed), the
frame is handed to the local handler too, so a socket on this gateway still gets it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from bot import jsoncodec
from bot.ordering import backoff
from bot.redis_batch import RedisBatch

log = logging.getLogger("gateway.fanout")

Handler = Callable[[dict[str, Any]], Awaitable[None]]
RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


class Fanout:
    """In one process: `publish` calls the topic's handler at once."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def subscribe(self, topic: str, handler: Handler) -> None:
        """`handler` gets every frame published on `topic`, from any gateway (call before `start`)."""
        self._handlers[topic] = handler

    async def publish(self, topic: str, frame: dict[str, Any]) -> None:
        await self._deliver(topic, frame)

    async def _deliver(self, topic: str, frame: dict[str, Any]) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            await handler(frame)
        except Exception:
            log.exception("a fanned-out frame could not be delivered", extra={"topic": topic})

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class RedisFanout(Fanout):
    def __init__(self, redis: Any, prefix: str = "gateway:fanout:") -> None:
        super().__init__()
        self.redis = redis
        self.batch = RedisBatch.of(redis)  # a turn's frames share round trips with its other commands
        self.prefix = prefix
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, topic: str, frame: dict[str, Any]) -> None:
        hearing = self._subscribed.is_set()  # else this gateway would not hear its own frame
        try:
            await self.batch.publish(self.prefix + topic, jsoncodec.dumps(frame))
        except Exception as exc:
            log.error("cannot publish a frame to the other gateways; delivered here only",
                      extra={"topic": topic, "error": repr(exc)})
            hearing = False
        if not hearing:
            await self._deliver(topic, frame)

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="fanout-reader")
        try:  # frames published from now on reach this gateway's sockets
            await asyncio.wait_for(self._subscribed.wait(), 1.0)
        except TimeoutError:
            log.error("not subscribed to the other gateways' frames yet (Redis away?); retrying")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def _read_forever(self) -> None:
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*(self.prefix + topic for topic in self._handlers))
                self._subscribed.set()
                attempt = 0
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    topic = (channel.decode() if isinstance(channel, bytes) else channel)[len(self.prefix):]
                    try:
                        frame = jsoncodec.loads(message["data"])
                    except ValueError:
                        log.error("a fanned-out frame is not JSON", extra={"topic": topic})
                        continue
                    await self._deliver(topic, frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                attempt += 1
                log.error("lost the other gateways' frames (Redis away?); resubscribing",
                          extra={"error": repr(exc)})
                await asyncio.sleep(backoff(attempt, RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS))
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
