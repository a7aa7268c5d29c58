"""Redis commands of many turns in one round trip.

A web chat turn with REDIS_URL asks Redis several small things (keep the message, look up a
handoff, publish the typing and reply frames, forget the answered message, append to the
transcript). Sent one by one, each is a round trip of its own, and in redis-py most of a
command's cost is the round trip (the pool, the write, the wait, the read), not the command.

`RedisBatch` sends the commands it is given in one pipeline (not a transaction: each
command is atomic on its own, as it was): those given while the loop runs one pass go
together, and those given while a pipeline is on its way go in the next one. One pipeline
is on its way at a time, on one connection, so Redis runs the commands in the order they
were given (but for a script Redis no longer holds after a restart: it is sent again, with
a later pipeline). Scripts go as EVALSHA once Redis has them. Each caller still awaits its
own command's answer (or its own error: a
command Redis refuses fails alone; a lost connection fails every command of its pipeline,
with the client's retries as for a single command).
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import Any

from redis.exceptions import NoScriptError

MAX_PIPELINE = 500  # commands in one pipeline, at most

_Waiting = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
_BATCHES: weakref.WeakKeyDictionary[Any, RedisBatch] = weakref.WeakKeyDictionary()


_SCRIPT_SHAS: dict[str, str] = {}


def _copy(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


class RedisBatch:
    """The commands the hot path uses, with redis-py's names and answers."""

    def __init__(self, redis: Any) -> None:
        self._redis = weakref.ref(redis)  # `of` keeps one per client, for as long as the client lives
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, redis: Any) -> RedisBatch:
        """The one batch of a client (so that every part of the gateway shares its pipelines)."""
        batch = _BATCHES.get(redis)
        if batch is None:
            batch = _BATCHES[redis] = cls(redis)
        return batch

    def execute_command(self, *args: Any, **options: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, options, answer))
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write(), name="redis-batch")
        return answer

    def publish(self, channel: str, message: str | bytes) -> asyncio.Future[Any]:
        return self.execute_command("PUBLISH", channel, message)

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> asyncio.Future[Any]:
        """EVALSHA (Redis keeps the script it was sent once; not its text with every call), and
        EVAL when Redis does not have it (the first call, or Redis restarted)."""
        sha = _SCRIPT_SHAS.get(script)
        if sha is None:  # the first call: EVAL loads it
            _SCRIPT_SHAS[script] = hashlib.sha1(script.encode()).hexdigest()
            return self.execute_command("EVAL", script, numkeys, *keys_and_args)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        first = self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

        def settle(outcome: asyncio.Future[Any]) -> None:
            if answer.done():
                return
            if outcome.cancelled():
                answer.cancel()
            elif isinstance(outcome.exception(), NoScriptError):  # Redis restarted without it
                retry = self.execute_command("EVAL", script, numkeys, *keys_and_args)
                retry.add_done_callback(lambda again: _copy(again, answer))
            else:
                _copy(outcome, answer)

        first.add_done_callback(settle)
        answer.add_done_callback(lambda a: first.cancel() if a.cancelled() else None)  # not sent if not yet
        return answer

    def hgetall(self, name: str) -> asyncio.Future[Any]:
        return self.execute_command("HGETALL", name)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_PIPELINE], self._waiting[MAX_PIPELINE:]
            await self._send([item for item in batch if not item[2].done()])  # a cancelled caller's is left out

    async def _send(self, batch: list[_Waiting]) -> None:
        if not batch:
            return
        try:
            redis = self._redis()
            if redis is None:
                raise RuntimeError("the Redis client of this batch is gone")
            async with redis.pipeline(transaction=False) as pipe:
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                answers = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:  # the connection: every command of the pipeline failed
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, _, answer), result in zip(batch, answers, strict=True):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)
