"""Rasa's in-memory tracker store, kept for the life of the Rasa process instead of the life
of one loaded model.

Rasa 3.6 builds a new tracker store from the endpoints each time a model is loaded
(`PUT /model`, rasa/server.py `load_model`); with its default `InMemoryTrackerStore` that
swap would forget every conversation in progress. Without `REDIS_URL` the gateway writes
`tracker_store: {type: process_store.ProcessTrackerStore}` (gateway/rasa_runtime.py
`rasa_endpoints`), so that `./aftersales train` can swap a better model into a running
server without dropping a conversation. Nothing is written anywhere: a Rasa restart still
starts empty, as before (with Redis, `sealed_store.SealedRedisTrackerStore` keeps them).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Text

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain

# sender id -> serialised tracker, shared by every store this process makes
_TRACKERS: Dict[Text, Text] = {}


class ProcessTrackerStore(InMemoryTrackerStore):
    def __init__(self, domain: Domain, event_broker: Optional[EventBroker] = None,
                 host: Optional[Text] = None, **kwargs: Any) -> None:
        super().__init__(domain, event_broker, **kwargs)
        self.store = _TRACKERS
