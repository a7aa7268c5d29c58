"""The transcript journal keeps every field of an entry, as `dataclasses.asdict` would."""

from __future__ import annotations

import dataclasses
import json

from bot.transcript import TranscriptEntry


def test_an_entry_is_kept_with_every_field() -> None:
    entries = [TranscriptEntry("bot", "Pick one", ({"title": "Return", "payload": "/return"},), None, 1.5),
               TranscriptEntry("shopper", "我要退货", ts=2.0, message_id="m-1"),
               TranscriptEntry("agent", "Here you go", image="https://shop.example/a.png", author="Ann")]
    for entry in entries:
        assert json.dumps(entry.kept(), ensure_ascii=False) == json.dumps(dataclasses.asdict(entry), ensure_ascii=False)
        read_back = json.loads(json.dumps(entry.kept()))
        assert TranscriptEntry(**{**read_back, "buttons": tuple(read_back["buttons"])}) == entry
