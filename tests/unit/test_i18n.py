"""The conversation's language (bot/i18n.py) and times with their zone, as shoppers see them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.i18n import LanguageState, follow_language, format_datetime, text_language


def conversation(*turns: tuple[str | None, str | None]) -> list[str]:
    """The language after each (text, locale) turn; a None text is a payload or a file."""
    state, seen = LanguageState(), []
    for text, locale in turns:
        state = follow_language(state, text, locale)
        seen.append(state.effective)
    return seen


def test_a_chinese_shopper_tapping_buttons_stays_in_chinese() -> None:
    # rasa-webchat and the REST contract send only payloads after the first message.
    assert conversation(("我想退货", None), ('/choose{"choice":"AS10001"}', None), ("44", None), ("ok", None),
                        ("AS10001", None), (None, None), ("好", None)) == ["zh"] * 7


def test_the_first_message_with_words_beats_the_locale_then_only_a_clear_switch_counts() -> None:
    assert conversation(("hi", "zh-CN"), ("I want to return my boots", "zh-CN")) == ["zh", "en"]
    assert conversation(("我要退货", "en-GB"), ("thanks", "en-GB"), ("ok bye", "en-GB")) == ["zh", "zh", "zh"]
    assert conversation(("return please", None), ("不想要了", None)) == ["en", "zh"]  # clearly Chinese now
    assert conversation(("换货 AS10001 换成 44 码", "en-US")) == ["zh"]
    assert conversation(("我要refund", None)) == ["zh"]  # mostly Chinese


def test_the_client_changing_its_locale_switches_but_repeating_it_does_not() -> None:
    assert conversation(("hello", "en"), ("/x", "en"), ("/x", "zh-CN"), ("/x", "zh-CN")) == ["en", "en", "zh", "zh"]


@pytest.mark.parametrize("text", ["AS10001", "44", "ok", "/choose{\"choice\":\"pickup\"}", "EU 43", "", "👍"])
def test_ids_numbers_fillers_and_payloads_say_nothing_about_the_language(text: str) -> None:
    assert text_language(text).language is None


def test_times_carry_the_zone_in_the_shoppers_format() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    now = dt.datetime(2026, 12, 2, 9, 0, tzinfo=shanghai)
    due = dt.datetime(2026, 12, 2, 9, 30, tzinfo=shanghai)
    assert format_datetime(due, "en", now=now) == "today 09:30 (China time)"
    assert format_datetime(due, "zh", now=now) == "今天 09:30（北京时间）"
    later = dt.datetime(2026, 12, 4, 9, 30, tzinfo=shanghai)
    assert format_datetime(later, "en", now=now) == "Fri 4 Dec, 09:30 (China time)"
    assert format_datetime(later, "zh", now=now) == "12月4日（周五）09:30（北京时间）"
    utc = due.astimezone(dt.timezone.utc)  # a zone without a well-known name: its offset
    assert format_datetime(utc.astimezone(ZoneInfo("Asia/Kolkata")), "en", now=now).endswith("(UTC+5:30)")
    with pytest.raises(ValueError):
        format_datetime(dt.datetime(2026, 12, 2, 9, 30), "en")  # a time without a zone is refused
