"""JSON on the gateway's hot path (web chat frames, Rasa's webhook, the fan-out, log lines):
orjson, several times faster than the standard library's `json` at both ends, with the same
results for what the gateway sends and reads. Differences that matter here: NaN and infinity
are written as `null` and refused when read (neither is JSON); integers beyond 64 bits are
refused when read (no id or count of ours is one). Everything else in the code base keeps
using `json` where speed does not matter."""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError, as json.JSONDecodeError is

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: ...} becomes {"1": ...}, as json.dumps does


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """`json.dumps(value, ensure_ascii=False)` with no spaces: one line of UTF-8 text.
    Raises TypeError for what JSON cannot hold (unless `default` turns it into what it can)."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except TypeError:  # what only the standard library writes (an integer beyond 64 bits)
        return json.dumps(value, ensure_ascii=False, default=default, separators=(",", ":"))


def dumps_bytes(value: Any) -> bytes:
    """`dumps`, already encoded (what a socket or Redis is written)."""
    return orjson.dumps(value, option=_OPTIONS)


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """`json.loads`; raises `JSONDecodeError` (a ValueError) for what is not JSON."""
    return orjson.loads(text)
