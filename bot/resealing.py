"""Re-sealing what Redis keeps with the newest data key (`./aftersales data rekey`) without
losing a write a running gateway makes meanwhile: a key is read under WATCH, the stale values
are sealed again, and the writes go in one transaction (LSET and HSET keep the key's expiry);
if the key changed in between, it is read again."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from redis.exceptions import WatchError

from bot.sealing import DataKeys

Writes = list[tuple[int | str, str]]  # (list index or hash field, new value)


def as_text(raw: bytes | str) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


async def rewrite_watched(redis: Any, name: str, plan: Callable[[Any], Awaitable[Writes]]) -> int:
    """Apply what `plan(pipe)` (reading `name` through the watching pipeline) says to write; how many."""
    while True:
        try:
            async with redis.pipeline(transaction=True) as pipe:
                await pipe.watch(name)
                writes = await plan(pipe)
                if writes:
                    pipe.multi()
                    for where, value in writes:
                        if isinstance(where, int):
                            pipe.lset(name, where, value)
                        else:
                            pipe.hset(name, where, value)
                    await pipe.execute()
                return len(writes)
        except WatchError:
            continue


async def reseal_list(redis: Any, name: str, keys: DataKeys, context: str) -> int:
    """Every entry of the list `name` not sealed with the newest key, sealed with it."""
    async def plan(pipe: Any) -> Writes:
        raws = [as_text(r) for r in await pipe.lrange(name, 0, -1)]
        return [(i, keys.seal_text(keys.open_text(r, context), context))
                for i, r in enumerate(raws) if not keys.text_is_current(r)]
    return await rewrite_watched(redis, name, plan)
