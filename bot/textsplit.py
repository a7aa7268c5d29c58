"""Cutting a long text into the pieces a platform accepts (Telegram 4096 UTF-16 units,
Slack sections and messages), for every channel the same way: at a line break, else a
space, else anywhere, and only in the second half of the window, so no piece is tiny
("Test Agent:" alone, then the body)."""

from __future__ import annotations

from typing import Callable

Units = Callable[[str], int]  # the size of one character as the platform counts it


def one(char: str) -> int:
    return 1


def utf16(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def measure(text: str, units: Units = one) -> int:
    return sum(units(c) for c in text)


def _fit(text: str, limit: int, units: Units) -> int:
    """How many characters of `text` fit in `limit` units."""
    used = 0
    for index, char in enumerate(text):
        used += units(char)
        if used > limit:
            return index
    return len(text)


def split_text(text: str, limit: int, units: Units = one) -> list[str]:
    """`text` in pieces of at most `limit` units. Nothing but the whitespace at a cut is lost;
    whitespace-only pieces are dropped (an empty text gives no piece)."""
    pieces: list[str] = []
    rest = text
    while measure(rest, units) > limit:
        fit = _fit(rest, limit, units)
        window = rest[:fit]
        cut = next((at for at in (window.rfind(sep) for sep in ("\n", " ")) if at >= fit // 2), fit)
        pieces.append(rest[:cut])
        rest = rest[cut:].lstrip("\n ")
    pieces.append(rest)
    return [p for p in (piece.rstrip() for piece in pieces) if p.strip()]
