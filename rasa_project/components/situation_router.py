"""`SituationRouter`: the last step of the NLU pipeline. It reads the whole message with
the business rules' own reader (flows/reading.py) and corrects the intent where what
happened decides the flow (flows/routing.py): a leaked parcel is a replacement, not a
complaint; "hi, the scarf looks nothing like the photos" is a return, not a greeting.

The rules stay in flows/ (policies.yml, understanding.yml, or FLOWS_RULES_DIR); this module
only adapts them to Rasa's component interface. It needs no training. It follows the
designer's edits as the action server does (flows/rules.py: a cheap look at the files per
message, a valid edit reads the next message, a broken one is refused in the log). The
decision is added to the parse data as `routed` (old intent and why), so the tracker shows it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from flows.reading import Reader
from flows.routing import route
from flows.rules import LiveRules

log = logging.getLogger(__name__)


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class SituationRouter(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    def __init__(self, reader: Optional[Reader] = None) -> None:
        self._reader = reader  # fixed (tests), else the live rules' reader
        self._live: Optional[LiveRules] = None

    @property
    def reader(self) -> Reader:
        if self._reader is not None:
            return self._reader
        if self._live is None:  # loaded on first use: policies.yml and understanding.yml
            self._live = LiveRules()
        return self._live.check().reader

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "SituationRouter":
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            intent = message.get(INTENT) or {}
            ranking = [(r.get(INTENT_NAME_KEY), float(r.get(PREDICTED_CONFIDENCE_KEY) or 0.0))
                       for r in message.get(INTENT_RANKING_KEY) or []]
            decision = route(self.reader.read(text), intent.get(INTENT_NAME_KEY),
                             float(intent.get(PREDICTED_CONFIDENCE_KEY) or 0.0), ranking)
            if decision is None:
                continue
            log.debug("intent %s routed to %s (%s)", intent.get(INTENT_NAME_KEY), decision.intent, decision.why)
            message.set(INTENT, {INTENT_NAME_KEY: decision.intent, PREDICTED_CONFIDENCE_KEY: 1.0}, add_to_output=True)
            message.set(INTENT_RANKING_KEY,
                        [{INTENT_NAME_KEY: decision.intent, PREDICTED_CONFIDENCE_KEY: 1.0}]
                        + [r for r in message.get(INTENT_RANKING_KEY) or []
                           if r.get(INTENT_NAME_KEY) != decision.intent], add_to_output=True)
            message.set("routed", {"from": intent.get(INTENT_NAME_KEY), "confidence": intent.get(PREDICTED_CONFIDENCE_KEY),
                                   "why": decision.why}, add_to_output=True)  # same intent: confirmed by the facts
        return messages
