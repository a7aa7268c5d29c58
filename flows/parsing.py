"""Reading a shopper's free-text answers in English or Chinese (typos and colloquial forms
included): order numbers, case ids, reasons, yes/no, sizes and colours, photos.

Pure functions, no I/O. English keywords match whole words (so "hole" does not match
"whole"); Chinese keywords match anywhere, since Chinese has no spaces.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterable, Mapping, Sequence

from bot import i18n
from flows.cases import normalize_case_id
from flows.orders import Variant, normalize_order_number, order_number_format

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def normalize(text: str) -> str:
    """Lower case, full-width to half-width (Chinese keyboards), no apostrophes (shoppers type
    "dont" as often as "don't"; keywords are normalized the same way)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return text.replace("\u2019", "").replace("\u2018", "").replace("'", "").strip()


@functools.lru_cache(maxsize=8192)
def _keyword(word: str) -> str:
    return normalize(word)


@functools.lru_cache(maxsize=8192)
def latin_pattern(keyword: str) -> re.Pattern[str]:
    """A whole-word pattern for an English keyword; each word may take a plural ending
    ("refund take" finds "refunds take", "box" finds "boxes")."""
    words = [re.escape(w) + ("(?:s|es)?" if w[-1:].isalpha() else "") for w in keyword.split()]
    return re.compile(r"(?<![a-z0-9])" + r"\s+".join(words) + r"(?![a-z0-9])")


def has_chinese(text: str) -> bool:
    return bool(_CJK.search(text or ""))


def detect_language(text: str) -> str | None:
    """The language of a text (`bot/i18n.py`, the one detector of the product), else None."""
    return i18n.detect_language(text)


def _keyword_hit(text: str, keyword: str) -> bool:
    keyword = _keyword(keyword)
    if has_chinese(keyword):
        return keyword in text
    return bool(keyword) and latin_pattern(keyword).search(text) is not None


def keyword_score(text: str, keywords: Mapping[str, Sequence[str]]) -> int:
    """Length of the longest keyword (of either language) found in `text`; 0 for none."""
    t = normalize(text)
    best = 0
    for words in keywords.values():
        for k in words:
            weight = len(k) * (3 if has_chinese(k) else 1)  # a Chinese character carries a word's meaning
            if weight > best and _keyword_hit(t, k):
                best = weight
    return best


def best_keyword_match(text: str, candidates: Mapping[str, Mapping[str, Sequence[str]]],
                       allowed: Iterable[str] | None = None) -> str | None:
    """The candidate key whose keywords match `text` best (longest keyword wins)."""
    allowed_set = set(allowed) if allowed is not None else None
    scored = [(keyword_score(text, kws), key) for key, kws in candidates.items()
              if allowed_set is None or key in allowed_set]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        return None
    scored.sort(key=lambda s: -s[0])
    return scored[0][1]


def exact_choice(text: str, options: Mapping[str, Iterable[str]]) -> str | None:
    """The option whose key or one of whose titles equals `text` (a pressed button's title)."""
    t = normalize(text).strip(" .!。！")
    for key, titles in options.items():
        if t == key.lower().replace("_", " ") or t == key.lower():
            return key
        if any(t == normalize(title).strip(" .!。！") for title in titles):
            return key
    return None


# -- numbers and ids ------------------------------------------------------------------------


def find_order_number(text: str) -> str | None:
    return normalize_order_number(normalize(text))


def order_prefix() -> str:
    return order_number_format().prefix


def looks_like_order_attempt(text: str) -> bool:
    return bool(order_number_format().attempt.search(normalize(text)))


def find_case_id(text: str) -> str | None:
    return normalize_case_id(normalize(text))


_CASE_ATTEMPT = re.compile(r"(?<![a-z0-9])(rt|ex|tk|rp|cp)[\s\-]?\d{1,9}(?!\d)")


def looks_like_case_attempt(text: str) -> bool:
    return bool(_CASE_ATTEMPT.search(normalize(text)))


# -- yes / no, opened / unopened --------------------------------------------------------------

_UNOPENED = tuple(normalize(w) for w in (("unopened", "un-opened", "not opened", "never opened", "haven't opened", "havent opened",
             "didn't open", "didnt open", "sealed", "still sealed", "seal intact", "unused", "not used",
             "never used", "haven't used", "havent used", "unworn", "not worn", "never worn", "haven't worn",
             "only tried on", "tried on at home", "tried them on", "brand new", "still new", "new", "original packaging",
             "tags on", "tags still", "in the box", "untouched",
             "没拆", "未拆", "没开", "未开封", "没开封", "没有拆", "没有开封", "没打开", "没有打开", "未使用", "没用过", "没有用过",
             "没用", "没穿过", "没有穿过", "只试穿", "试穿了一下", "全新", "吊牌还在", "包装完好", "原包装", "还没拆", "密封")))
_OPENED = tuple(normalize(w) for w in (("opened", "open", "used", "worn", "wore", "tried it", "tried some", "applied", "put it on my face",
           "broke the seal", "seal broken", "unsealed", "already opened", "used it", "used them", "wore them",
           "拆了", "拆开", "已拆", "拆封", "已开封", "开封了", "打开了", "打开过", "用过", "用了", "穿过", "穿了", "穿出去",
           "试用", "抹了", "涂了", "擦了", "已使用")))
_YES = tuple(normalize(w) for w in (("yes", "yeah", "yep", "yup", "y", "sure", "correct", "right", "that's right", "of course", "ok", "okay",
        "是", "是的", "对", "对的", "嗯", "嗯嗯", "没错", "好", "好的", "可以", "行", "确认")))
_NO = tuple(normalize(w) for w in (("no", "nope", "nah", "n", "not really", "negative", "不", "不是", "不对", "否", "没有", "不行")))


# Too vague to read from a message that was not answering the question ("I want a new
# one", "the box was open when it came").
_AMBIGUOUS_STATE = frozenset({"new", "open", "in the box", "用了", "试用"})


def parse_opened(text: str, strict: bool = False) -> str | None:
    """`unopened` / `opened` for an answer to "is it still unopened/unused?"; None if unclear.

    `strict`: for a message that did not answer that question, only explicit phrases count
    (no yes/no, no vague words)."""
    t = normalize(text).strip(" .!。！,，")
    if t in ("没有", "没"):  # "没有" answers both "opened?" and "still sealed?": ask again
        return None
    for phrase in _UNOPENED:
        if strict and phrase in _AMBIGUOUS_STATE:
            continue
        if _keyword_hit(t, phrase) and not (phrase in ("新", "new") and "not new" in t):
            return "unopened"
    for phrase in _OPENED:
        if strict and phrase in _AMBIGUOUS_STATE:
            continue
        if _keyword_hit(t, phrase):
            return "opened"
    if strict:
        return None
    yes_no = parse_yes_no(t)
    if yes_no is True:
        return "unopened"
    if yes_no is False:
        return "opened"
    return None


def parse_yes_no(text: str) -> bool | None:
    t = normalize(text).strip(" .!。！,，~")
    if t in _YES:
        return True
    if t in _NO:
        return False
    first = re.split(r"[\s,，.。!！]+", t, maxsplit=1)[0]
    if first in ("yes", "yeah", "yep", "sure", "是的", "对"):
        return True
    if first in ("no", "nope", "nah", "不是"):
        return False
    return None


# -- photos ---------------------------------------------------------------------------------------

_SKIP = tuple(normalize(w) for w in (("skip", "no photo", "no picture", "don't have", "dont have", "do not have", "no pic", "none", "nothing",
         "not now", "later", "no", "nope", "n/a", "跳过", "没有照片", "没照片", "没有图", "没拍", "不用", "没有", "不发", "算了", "无")))


def photo_from(attachments: Sequence[Mapping[str, object]], text: str) -> str | None:
    """The first photo: an attachment of kind image (or any file), else a link in the text."""
    for a in attachments or ():
        url = a.get("url")
        if isinstance(url, str) and url and a.get("kind", "image") in ("image", "file", "photo", None):
            return url
    match = URL.search(text or "")
    return match.group(0) if match else None


_NO_ORDER = tuple(normalize(w) for w in (("no order", "not about an order", "not about any order", "not order related", "no specific order",
             "there is no order", "not sure", "dont know", "do not know", "no idea", "dont remember",
             "cant remember", "没有订单", "无订单", "不知道", "不清楚", "忘了", "不记得", "不是订单", "与订单无关", "和订单无关", "跟订单无关", "不涉及订单", "没订单")))


def says_no_order(text: str) -> bool:
    t = normalize(text)
    return any(_keyword_hit(t, p) for p in _NO_ORDER)


def is_skip(text: str) -> bool:
    t = normalize(text).strip(" .!。！,，")
    return t in _SKIP or any(_keyword_hit(t, s) for s in _SKIP if len(s) > 3)


# -- sizes, colours, variants -----------------------------------------------------------------------

_COLOURS = {
    "black": ("black", "黑", "黑色"), "brown": ("brown", "brn", "棕", "棕色", "咖啡", "咖色"),
    "natural": ("natural", "beige", "原色", "米色"), "grey": ("grey", "gray", "灰", "灰色"),
    "camel": ("camel", "tan", "驼色", "驼"),
}
_SIZE = re.compile(r"(?<!\d)(3[4-9]|4[0-8])(?:\.5)?(?!\d)")
_VOLUME = re.compile(r"(?<!\d)(\d{2,3})\s*(ml|g|毫升|克)", re.IGNORECASE)


def variant_match(text: str, variants: Sequence[Variant], lang: str | None = None) -> list[Variant]:
    """The variants that `text` describes ("43", "size 43 in brown", "棕色43码", a figure's name).

    Returns all variants that fit every detail mentioned; empty when nothing fits.
    """
    t = normalize(text)
    exact = [v for v in variants if t in (v.sku.lower(), normalize(v.label.get("en", "")), normalize(v.label.get("zh", "")))]
    if exact:
        return exact
    # Every size named counts ("43 is sold out? then 44", "44 please, 43 would pinch"): the
    # caller keeps the one that can be had.
    sizes = {s for m in _SIZE.finditer(t) for s in (m.group(0), m.group(1))}
    size_match = bool(sizes)
    volume_match = _VOLUME.search(t)
    colours = {c for c, words in _COLOURS.items() if any(_keyword_hit(t, w) for w in words)}
    named = [v for v in variants
             if any(len(n) >= 2 and n in t for n in (normalize(v.label.get("en", "")), normalize(v.label.get("zh", ""))))
             or (v.attributes.get("figure") and _keyword_hit(t, v.attributes["figure"]))]
    if named:
        return named
    if not size_match and not colours and not volume_match:
        return []
    out = []
    for v in variants:
        attrs = {k: str(val).lower() for k, val in v.attributes.items()}
        if size_match and attrs.get("size") not in sizes:
            continue
        if volume_match and attrs.get("size", "").replace(" ", "") != f"{volume_match.group(1)}{_unit(volume_match.group(2))}":
            continue
        if colours and attrs.get("colour") not in colours:
            continue
        out.append(v)
    return out


def mentions_variant(text: str) -> bool:
    """Whether the text names a size, a volume or a colour (so it was meant as a variant)."""
    t = normalize(text)
    return bool(_SIZE.search(t) or _VOLUME.search(t) or
                any(_keyword_hit(t, w) for words in _COLOURS.values() for w in words))


def _unit(unit: str) -> str:
    return {"毫升": "ml", "克": "g"}.get(unit, unit.lower())


_QUESTION_WORDS = re.compile(
    r"^(how|what|which|when|where|why|who|can|could|do|does|is|are|should|will|would|may)\b|"
    r"\b(how (many|long|much|do|does|to|fast|soon|quickly|often)|when (will|do|does|is|can)|what (is|are|if|happens)|"
    r"whats|which|can i|could i|do you|do i|does it|is it|are they|should i|will i|am i|any tips|tips to)\b|"
    r"(怎么|怎样|如何|什么|哪|吗|呢|么|啥|咋|谁|是否|能不能|可不可以|会不会|要不要|有没有|多少|多久|多长|几天|几个|有什么办法|什么方法|说一下|介绍一下|还是.{0,6}[啊呀呢]|(大|小|长|短|紧|松)还是.{0,3}(大|小|长|短|紧|松))|^tell me about")


def is_question(text: str) -> bool:
    return bool(_QUESTION_WORDS.search(normalize(text)))


def text_is_substantial(text: str, min_latin_words: int = 3, min_cjk_chars: int = 5) -> bool:
    """Enough words to be a description of a problem (not "bad" or "it broke")."""
    t = normalize(text)
    if has_chinese(t):
        return len(_CJK.findall(t)) >= min_cjk_chars
    return len(re.findall(r"[a-z0-9']+", t)) >= min_latin_words
