"""Rasa's Redis tracker store, with every tracker sealed at rest.

Loaded by the Rasa server from the endpoints file the gateway writes when `REDIS_URL` is set
(gateway/rasa_runtime.py `rasa_endpoints`): `tracker_store: {type: sealed_store.SealedRedisTrackerStore}`.
A tracker holds everything a shopper said; like the gateway's own Redis data, it is sealed
with the shop's data keys (bot/sealing.py, AES-256-GCM, bound to the conversation), given to
the Rasa server in `DATA_KEYS`. Everything else (locking, merging sessions, expiry) is Rasa's
own `RedisTrackerStore`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Text, Union

from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker

from bot.sealing import DataKeys


def _purpose(sender_id: Text) -> str:
    return f"rasa-tracker:{sender_id}"


class SealedRedisTrackerStore(RedisTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ring = os.environ.get("DATA_KEYS", "")
        if not ring:
            raise RuntimeError("DATA_KEYS is not set: the Rasa server cannot seal its trackers")
        self._keys = DataKeys.parse(ring)

    def serialise_tracker(self, tracker: DialogueStateTracker) -> Text:  # type: ignore[override]
        return self._keys.seal_text(RedisTrackerStore.serialise_tracker(tracker), _purpose(tracker.sender_id))

    def deserialise_tracker(self, sender_id: Text,
                            serialised_tracker: Union[Text, bytes]) -> Optional[DialogueStateTracker]:
        raw = serialised_tracker.decode() if isinstance(serialised_tracker, bytes) else serialised_tracker
        return super().deserialise_tracker(sender_id, self._keys.open_text(raw, _purpose(sender_id)))
