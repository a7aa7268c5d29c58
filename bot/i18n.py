"""The two languages the product speaks, and how a conversation's language is decided.

Pure functions, standard library only: the gateway uses them for the conversation's
language and its own texts, and the Rasa action server (flows/) imports them too, so
both sides read a message's language the same way.

A conversation's language is set once, from the channel's locale or from the first message
with words in it, and then kept: button payloads, attachments, order numbers and short
replies ("ok", "好吧", "44") say nothing about the language. It switches only when the
shopper clearly writes in the other language, or when the client explicitly changes its
locale (the shopper switched the page's language).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-z]{2,}")
# Things that are the same in both languages: links, e-mail addresses, order numbers and
# case ids, sizes and units, product codes.
_NEUTRAL = re.compile(
    r"https?://\S+|\S+@\S+|\b[a-z]{1,4}[\s\-#]?\d{3,}\b|\b(?:rt|ex|tk|rp|cp)-\d+\b|"
    r"\b\d+(?:\.\d+)?\s*(?:ml|g|kg|cm|mm|eu|us|uk|spf)\b|\b(?:eu|us|uk|spf)\s*\d+\b|\b(?:ok|okay|ok+|kk|hi|hello|"
    r"thx|pls|plz|lol|emm+|hmm+|haha+|xd|no|yes|vs|app|qq|wechat|alipay|vip|diy|sku|id)\b")


def language_of_locale(locale: str | None) -> str | None:
    """`zh-CN`, `zh_Hans`, `en-GB`, `zh` ... -> the language the bot speaks, else None."""
    if not isinstance(locale, str) or not locale:
        return None
    head = locale.strip().replace("_", "-").split("-", 1)[0].lower()
    return head if head in LANGUAGES else None


@dataclass(frozen=True)
class TextLanguage:
    """What a text says about its language: `language` (None: nothing) and whether it is
    `clear` enough to switch a conversation that is in the other language."""

    language: str | None
    clear: bool = False


def text_language(text: str | None) -> TextLanguage:
    """The language a shopper's text is written in.

    A button payload (`/choose{...}`) says nothing. Chinese characters count as Chinese
    (two are clear: "好吧" is, "好" alone is not); English needs Latin words that are not
    order numbers, units or chat fillers (three are clear: "I want to return" is, "ok 44"
    says nothing). In mixed text the larger share wins ("我要refund" is Chinese).
    """
    if not text or text.lstrip().startswith("/"):
        return TextLanguage(None)
    t = (text if text.isascii() else unicodedata.normalize("NFKC", text)).lower()  # ASCII is NFKC already
    cjk = 0 if t.isascii() else len(_CJK.findall(t))
    words = len(_LATIN_WORD.findall(_NEUTRAL.sub(" ", t)))
    if cjk == 0 and words == 0:
        return TextLanguage(None)
    if cjk and cjk >= words:
        return TextLanguage("zh", clear=cjk >= 2)
    return TextLanguage("en", clear=words >= 3 and words >= 3 * cjk)


def detect_language(text: str | None) -> str | None:
    """The language of a text when it says anything about it, else None."""
    return text_language(text).language


@dataclass(frozen=True)
class LanguageState:
    """A conversation's language and the locale its client last declared."""

    language: str | None = None
    locale_language: str | None = None

    @property
    def known(self) -> str | None:
        """The language, if anything has said it yet (words or the client's locale)."""
        return self.language or self.locale_language

    @property
    def effective(self) -> str:
        return self.known or DEFAULT_LANGUAGE


def follow_language(state: LanguageState, text: str | None, locale: str | None) -> LanguageState:
    """The conversation's language after a message with `text` from a client declaring `locale`.

    - first message: clear words win, then the locale, then any words at all;
    - later messages: a clear text in the other language switches; so does the client
      changing its declared locale (not merely repeating it with every message).
    """
    declared = language_of_locale(locale)
    said = text_language(text)
    current = state.language
    if current is None:
        if said.language is not None and (said.clear or declared is None):
            return LanguageState(said.language, declared or state.locale_language)
        return LanguageState(declared or said.language, declared or state.locale_language)
    if said.clear and said.language not in (None, current):
        return LanguageState(said.language, declared or state.locale_language)
    if declared is not None and declared != state.locale_language:
        if state.locale_language is not None and declared != current:
            return LanguageState(declared, declared)  # the shopper switched the client's language
        return LanguageState(current, declared)
    return state


def pick(texts: dict[str, str], language: str | None) -> str:
    """The text in `language`, else English."""
    return texts.get(language or DEFAULT_LANGUAGE) or texts[DEFAULT_LANGUAGE]


# -- dates and times, in the shopper's format, with the shop's time zone -----------------------

_WEEKDAYS = {"en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), "zh": ("一", "二", "三", "四", "五", "六", "日")}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ZONE_NAMES = {
    # zones whose everyday name shoppers know better than an offset
    "Asia/Shanghai": ("China time", "北京时间"), "Asia/Chongqing": ("China time", "北京时间"),
    "Asia/Harbin": ("China time", "北京时间"), "PRC": ("China time", "北京时间"),
    "Asia/Hong_Kong": ("Hong Kong time", "香港时间"), "Asia/Taipei": ("Taipei time", "台北时间"),
    "Asia/Singapore": ("Singapore time", "新加坡时间"), "UTC": ("UTC", "UTC"), "Etc/UTC": ("UTC", "UTC"),
}


def format_date(day: dt.date | None, lang: str) -> str:
    """`Wed 2 Dec` / `12月2日（周三）`."""
    if day is None:
        return "-"
    if lang == "zh":
        return f"{day.month}月{day.day}日（周{_WEEKDAYS['zh'][day.weekday()]}）"
    return f"{_WEEKDAYS['en'][day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def zone_label(moment: dt.datetime, lang: str) -> str:
    """`China time` / `北京时间` for well-known zones, else the UTC offset (`UTC+5:30`)."""
    zone = moment.tzinfo
    key = getattr(zone, "key", None) or str(zone)
    names = _ZONE_NAMES.get(key)
    if names is not None:
        return names[1] if lang == "zh" else names[0]
    offset = moment.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def format_datetime(moment: dt.datetime, lang: str, *, now: dt.datetime | None = None,
                    zone: dt.tzinfo | None = None) -> str:
    """A point in time as a shopper reads it, always with its time zone.

    `today 14:30 (China time)` / `今天 14:30（北京时间）`; tomorrow likewise; other days with
    the date (`Fri 4 Dec, 09:00 (China time)` / `12月4日（周五）09:00（北京时间）`).
    A naive `moment` is refused: a time without a zone is exactly what shoppers misread.
    """
    if moment.tzinfo is None:
        raise ValueError("format_datetime needs an aware datetime")
    if zone is not None:
        moment = moment.astimezone(zone)
    reference = (now or dt.datetime.now(moment.tzinfo)).astimezone(moment.tzinfo)
    days = (moment.date() - reference.date()).days
    clock = f"{moment:%H:%M}"
    label = zone_label(moment, lang)
    if lang == "zh":
        day = {0: "今天 ", 1: "明天 "}.get(days) or format_date(moment.date(), lang)
        return f"{day}{clock}（{label}）"
    day = {0: "today", 1: "tomorrow"}.get(days) or format_date(moment.date(), lang) + ","
    return f"{day} {clock} ({label})"
