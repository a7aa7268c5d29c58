"""Structured logging for the gateway.

One JSON object per line (or plain text with LOG_FORMAT=text). Loggers are named per
concern (`gateway.conversation`, `gateway.rasa`, `gateway.webchat`, ...). Message text
written by shoppers or the bot is only ever passed in the `text` extra and is dropped
unless the level is DEBUG, so INFO logs never carry personal content.

Identifiers that name a person (an e-mail or phone number used as a REST sender, inside a
conversation key) are masked in every field at every level: `ja***@ex***.com`,
`+86 138****78`. A failed sign-in's username is logged through `mask_name` (it is often a
password typed into the wrong box).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from itertools import islice
from typing import Any

from bot import jsoncodec

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_RECORD_FIELDS = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
_LEVEL_NAMES = {level: logging.getLevelName(level).lower() for level in range(0, 60, 10)}
_MASKED_EVENTS: dict[str, str] = {}  # a log call's fixed message (no arguments), masked once
_PRIVATE_FIELDS = {"text"}

_EMAIL = re.compile(r"([A-Za-z0-9._%+-]{1,64})@([A-Za-z0-9-]{1,63})((?:\.[A-Za-z0-9-]{1,63})+)")
# An international number (+ and 7-15 digits, spaces or dashes allowed) or a mainland mobile
# (11 digits from 13-19, perhaps after 86). Telegram chat ids (at most 10 digits, no +) are left readable.
# Written as `(?<!\d)(?:86)?1[3-9]\d{9}(?!\d)` would be, but with each alternative starting with
# its first character ("1(?<!\d.)" is "(?<!\d)1"): the regex engine then skips every position
# that holds none of "+", "8", "1" instead of trying each (several times faster on ids).
_PHONE = re.compile(r"\+\d[\d -]{5,18}\d|8(?<!\d.)61[3-9]\d{9}(?!\d)|1(?<!\d.)[3-9]\d{9}(?!\d)")


def _mask_email(m: re.Match[str]) -> str:
    top_level = m.group(3).rsplit(".", 1)[-1]
    return f"{m.group(1)[:2]}***@{m.group(2)[:2]}***.{top_level}"


def _mask_phone(m: re.Match[str]) -> str:
    digits = m.group(0)
    return digits[:4 if digits.startswith("+") else 3] + "****" + digits[-2:]


def mask_identifiers(text: str) -> str:
    """E-mail addresses and phone numbers in `text` reduced to a few characters."""
    if "@" in text:
        text = _EMAIL.sub(_mask_email, text)
    return _PHONE.sub(_mask_phone, text)


def mask_name(name: str) -> str:
    """A username nobody has (or a password typed as one): its first two characters and length."""
    return f"{name[:2]}***({len(name)})"


def _scrub(value: Any) -> Any:
    return mask_identifiers(value) if isinstance(value, str) else value


def _encode(entry: dict[str, Any]) -> str:
    return jsoncodec.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.args or not isinstance(record.msg, str):
            event = mask_identifiers(record.getMessage())
        else:  # the usual call, log.info("message accepted", extra=...): a message fixed in the code
            masked = _MASKED_EVENTS.get(record.msg)
            if masked is None:
                masked = mask_identifiers(record.msg)
                if len(_MASKED_EVENTS) < 10_000:
                    _MASKED_EVENTS[record.msg] = masked
            event = masked
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": _LEVEL_NAMES.get(record.levelno) or record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        private = _PRIVATE_FIELDS if record.levelno > logging.DEBUG else ()
        # The `extra` fields, in the call's order: `makeRecord` adds them after the record's own.
        fields = record.__dict__
        for key in [k for k in islice(fields, _RECORD_FIELDS, None) if k not in _STANDARD]:
            if key in private or key.startswith("_"):
                continue
            value = fields[key]
            entry[key] = mask_identifiers(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={_scrub(v)}" for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
            and not (k in _PRIVATE_FIELDS and record.levelno > logging.DEBUG)
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {mask_identifiers(record.getMessage())}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    # Neither format shows where a call was made from, nor the thread or process: logging
    # need not look them up for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
