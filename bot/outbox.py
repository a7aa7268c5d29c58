"""Replies kept for a client that is not there to take them yet (a REST sender's next
request, a socket.io client's next session), bounded three ways: per key, by number of
keys (least recently used first) and by age. A client gone for good costs nothing forever.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

PER_KEY = 200
MAX_KEYS = 10_000
MAX_AGE_SECONDS = 24 * 3600.0


class Outbox(Generic[T]):
    def __init__(self, per_key: int = PER_KEY, max_keys: int = MAX_KEYS, max_age: float = MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_age = max_age
        self.clock = clock
        self._boxes: OrderedDict[str, deque[tuple[float, T]]] = OrderedDict()

    def put(self, key: str, item: T) -> None:
        now = self.clock()
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = deque(maxlen=self.per_key)
        else:
            self._boxes.move_to_end(key)
        box.append((now, item))
        self._prune(now)

    def take(self, key: str) -> list[T]:
        """Everything kept for `key` that is not too old; the box is emptied."""
        box = self._boxes.pop(key, None)
        if not box:
            return []
        oldest = self.clock() - self.max_age
        return [item for stamp, item in box if stamp >= oldest]

    def _prune(self, now: float) -> None:
        while len(self._boxes) > self.max_keys:
            self._boxes.popitem(last=False)
        # The least recently written box first: once one is fresh, all after it are.
        oldest = now - self.max_age
        while self._boxes:
            key, box = next(iter(self._boxes.items()))
            if box[-1][0] >= oldest:
                break
            del self._boxes[key]

    def __len__(self) -> int:
        return len(self._boxes)
