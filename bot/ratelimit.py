"""Token buckets: `burst` messages at once, then `rate` per second on average."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Hashable


class TokenBucket:
    def __init__(self, burst: int, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class KeyedBuckets:
    """One token bucket per key (a conversation, an address), bounded in memory: past
    `max_keys` the least recently used bucket is dropped (it is the one most likely full
    again, so dropping it changes nothing for its owner)."""

    def __init__(self, burst: int, rate: float, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def allow(self, key: Hashable) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.burst, self.rate)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.allow()

    def __len__(self) -> int:
        return len(self._buckets)
