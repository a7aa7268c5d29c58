from __future__ import annotations

import logging
import time

from bot.log import JsonFormatter, mask_identifiers
from bot.ratelimit import TokenBucket
from channels.webchat.session import SessionSigner


def test_tokens_verify_only_under_the_secret_that_issued_them() -> None:
    signer = SessionSigner("a" * 40)
    conversation_id, token = signer.issue()
    assert signer.verify(token) == conversation_id
    assert SessionSigner("b" * 40).verify(token) is None
    assert signer.verify(conversation_id) is None
    assert signer.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert signer.verify(f"other{conversation_id[5:]}.{token.split('.')[1]}") is None
    assert signer.verify(None) is None and signer.verify(42) is None


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(burst=3, rate=20.0)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    time.sleep(0.06)
    assert bucket.allow() is True


def test_info_logs_never_carry_message_text() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("gateway.conversation", logging.INFO, __file__, 1, "message accepted", None, None)
    record.text = "my address is 1 Secret Street"
    record.conversation = "webchat:abc"
    line = formatter.format(record)
    assert "Secret Street" not in line and "webchat:abc" in line
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    assert "Secret Street" in formatter.format(record)


def test_identifiers_are_masked_but_ids_an_operator_needs_stay_readable() -> None:
    assert mask_identifiers("rest:ana.li+shop@example.com") == "rest:an***@ex***.com"
    assert mask_identifiers("rest:+86 138 0013 8000") == "rest:+86 ****00"
    assert mask_identifiers("rest:13800138000") == "rest:138****00"
    for kept in ("telegram:8123456789", "webchat:3f2a9c", "case RT-900001 order AS10001", "2026-12-02T11:34:34"):
        assert mask_identifiers(kept) == kept
