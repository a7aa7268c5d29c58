"""Custom actions run by `rasa run actions`. Business rules live in the repo's `flows/`
package (on PYTHONPATH when ./aftersales starts the action server); this module only
adapts them to Rasa's tracker and dispatcher.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction
from rasa_sdk.types import DomainDict

from flows.policies import load_policies, summary

log = logging.getLogger(__name__)

POLICIES = load_policies()  # fails the action server's start with a clear error if malformed


def _language_from_metadata(tracker: Tracker) -> Optional[Text]:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    language = metadata.get("language")
    return language if language in ("en", "zh") else None


class ValidateSlotMappings(ValidationAction):
    """Runs after every shopper message: keeps the `language` slot on the shopper's language."""

    def name(self) -> Text:
        return "action_validate_slot_mappings"

    async def extract_language(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Dict[Text, Any]:
        language = _language_from_metadata(tracker)
        if language is None or language == tracker.get_slot("language"):
            return {}
        return {"language": language}


class ActionReturnPolicy(Action):
    def name(self) -> Text:
        return "action_return_policy"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[Dict[Text, Any]]:
        language = tracker.get_slot("language") or _language_from_metadata(tracker) or "en"
        dispatcher.utter_message(text=summary(POLICIES, language))
        return []
