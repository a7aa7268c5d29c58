"""One way of cutting long texts for every channel (bot/textsplit.py)."""

from __future__ import annotations

from bot.textsplit import measure, split_text, utf16


def test_an_early_space_does_not_make_a_tiny_first_piece() -> None:
    reply = "Test Agent: " + "x" * 5000  # an agent's name, then a body with no spaces
    pieces = split_text(reply, 4096)
    assert len(pieces[0]) == 4096 and pieces[0].startswith("Test Agent: ")  # not "Test Agent:" alone
    assert "".join(pieces) == reply


def test_cuts_prefer_line_breaks_then_spaces_in_the_second_half() -> None:
    text = "\n".join(f"line {n} " + "word " * 30 for n in range(100))
    pieces = split_text(text, 1000)
    assert all(len(p) <= 1000 for p in pieces) and all(len(p) > 500 for p in pieces[:-1])
    assert all(not p.startswith(" ") for p in pieces)
    assert " ".join(pieces).split() == text.split()  # only whitespace at the cuts is lost


def test_telegram_counts_utf16_units() -> None:
    text = "😀" * 3000  # 2 units each
    pieces = split_text(text, 4096, utf16)
    assert all(measure(p, utf16) <= 4096 for p in pieces) and "".join(pieces) == text
    assert split_text("   ", 10) == [] and split_text("short", 10) == ["short"]
