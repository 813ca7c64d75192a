"""What must not be translated: numbers (with currency, per cent or unit), telephone numbers,
URLs, e-mail addresses, hashtags and @mentions, emoji and emoticons, short quotations, and words
the model cannot know are replaced by placeholder tokens before translation and put back afterwards.

The model learned to copy placeholders (training/augment.py). A placeholder the model drops is
put back by the attention (after the Luong et al. 2015 "Addressing the Rare Word Problem in NMT"
idea): next to the output word aligned with its source neighbour; one it invents is removed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

#: Placeholder tokens: user-defined SentencePiece symbols, each always one token.
PLACEHOLDERS = tuple(f"⦅{k}⦆" for k in range(1, 10))
_PLACEHOLDER_RE = re.compile(r"⦅[1-9]⦆")

_URL = r"(?:https?://|ftp://|www\.)[^\s<>\"]+[^\s<>\".,;:!?)\]]"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_CURRENCY = "$€£¥₹₽₩₺₴₿¢"
# units and currencies that may follow a number after a space ("5 km", "50 EUR", "5 Euro": kept as
# typed, which beats the model dropping them); glued to it, any 1-3 letters do ("10km")
_UNITS = "km/h|m/s|°C|°F|km|cm|mm|m|kg|mg|ml|min|kB|MB|GB|TB|Hz|kHz|MHz|GHz|kW|mph|EUR|USD|CHF|GBP|JPY|Euro"
# a number or a range ("10–12"), with its currency sign, per cent sign or unit ("12,50 €", "$13",
# "50 %", "5 km")
_NUMBER = (rf"(?<![\w])(?:[{_CURRENCY}]\s?)?[+-]?\d(?:[\d.,:/'–-]*\d)?(?:,[-–](?!\d))?"  # "5,- €": a price
           rf"(?:\s?(?:[%{_CURRENCY}]|(?:{_UNITS})(?![\w/]))|[a-zA-Z]{{1,3}}(?![\w]))?")
# a telephone number in groups: international ("+49 30 1234567") or with a leading 0 ("030 123 45")
_PHONE = r"(?<![\w+])(?:\+\d{1,3}|0\d{1,5})(?:[ /-]\d{2,}){1,4}(?![\w])"
_TAG = r"(?<![\w@#])[#@][^\W\d_]\w*"  # hashtags and @mentions
_EMOTICON = r"(?<!\S)(?:[:;=8][-'^]?[)(\]\[DPpO/|*]|<3|[xX]D)(?=$|[\s.,!?;])"  # ":)", ";-)", "<3", "xD"
_ITEM_RE = re.compile(f"{_URL}|{_EMAIL}|{_PHONE}|{_NUMBER}|{_TAG}|{_EMOTICON}")
#: URLs and e-mail addresses: a sentence never ends inside one (nmt/segment.py)
LINK_RE = re.compile(f"{_URL}|{_EMAIL}")
_WORD_RE = re.compile(r"\S+")
# A short quotation inside a sentence is a name, a title, what a sign or a shirt says, and captions
# copy it as it is ("ein Boot namens "El Corazon"" -> "a boat named "El Corazon""); the model
# garbled it ("Stop" came back as "Po") or dropped its quotes. German and French quotation marks
# come back as English ones.
QUOTES = {'"': '"', "„": "“", "“": "”", "»": "«", "«": "»"}
_QUOTATION_RE = re.compile("|".join(
    rf"(?<!\w){re.escape(a)}(?=\S)[^{re.escape(a + b)}\n]{{1,80}}(?<=\S){re.escape(b)}(?!\w)"
    for a, b in QUOTES.items()))
MAX_QUOTATION_WORDS = 6


def word_key(word: str) -> str:
    """A word as the training lexicon knows it: lower-cased, surrounding punctuation removed."""
    return re.sub(r"^\W+|\W+$", "", word.lower())


def is_symbol(ch: str) -> bool:
    """Emoji and pictographs (Unicode category So), plus their joiners and selectors."""
    return unicodedata.category(ch) in ("So", "Sk", "Cs", "Co") or ch in "\u200d\ufe0f\ufe0e"


@dataclass
class Protected:
    """A sentence with placeholders in it, and what each placeholder stands for."""

    text: str
    items: dict[str, str] = field(default_factory=dict)  # placeholder -> original text


def quotations(text: str) -> list[tuple[int, int]]:
    """Spans of the short quotations in `text`, marks included: at most MAX_QUOTATION_WORDS words,
    not ending like a sentence (a quoted sentence is left to the model). One word in lower case is
    emphasis ("ein "kleiner" Hund"): translated, its quotes put back by `nmt.brackets`."""
    spans = []
    for m in _QUOTATION_RE.finditer(text):
        words = m.group()[1:-1].split()
        if len(words) > MAX_QUOTATION_WORDS or words[-1][-1] in ".!?…" or (len(words) == 1 and words[0].islower()):
            continue
        spans.append(m.span())
    return spans


def protect(text: str, is_name=None, can_encode=None, quotes: bool = True,
            localized: list[tuple[int, int]] = ()) -> Protected:
    """Replace protected items by placeholders, left to right, at most len(PLACEHOLDERS) of them.

    is_name(word) -> bool says whether a word is a name the model cannot know, to be copied as it
    is; the sentence's first word too (its capital says nothing, but is_name looks it up in any
    casing: "Grzegorz fährt" keeps the name, "Ein Mann" is a known word). can_encode(str) -> bool says whether
    the vocabulary covers a word's characters; one it does not cover is protected whole.
    Short quotations (`quotations`) are one item each, unless `quotes` is False, and so is each
    span of `localized` (dates and measures in words, which `nmt.numbers` writes the target's way:
    `Localizer.spans`).
    """
    quoted = quotations(text) if quotes else []
    taken = np.zeros(len(text) + 1, dtype=bool)
    for a, b in quoted:
        taken[a:b] = True
    spans = list(quoted)
    for found in (localized, [m.span() for m in _ITEM_RE.finditer(text)]):
        found = [(a, b) for a, b in found if not taken[a:b].any()]
        for a, b in found:
            taken[a:b] = True
        spans += found
    for i, m in enumerate(_WORD_RE.finditer(text)):
        a, b = m.span()
        if taken[a:b].any():
            continue
        word = m.group()
        core = word_key(word)
        start = a + word.lower().find(core) if core else a
        if any(is_symbol(ch) for ch in word):
            run = [j for j in range(a, b) if is_symbol(text[j])]
            spans.append((run[0], run[-1] + 1))  # emoji glued to a word: only the emoji
            continue
        if not core:
            continue
        if can_encode is not None and not can_encode(core):
            spans.append((start, start + len(core)))
        elif is_name is not None and is_name(text[start:start + len(core)]):
            spans.append((start, start + len(core)))
    spans.sort()
    out, items, pos = [], {}, 0
    for a, b in spans:
        if a < pos or len(items) == len(PLACEHOLDERS):
            continue
        name = PLACEHOLDERS[len(items)]
        items[name] = f'"{text[a + 1:b - 1]}"' if (a, b) in quoted else text[a:b]
        out.append(text[pos:a])
        out.append(name)
        pos = b
    out.append(text[pos:])
    return Protected("".join(out), items)


def repair(output_ids: list[int], attention: np.ndarray | None, wanted: dict[int, int],
           placeholder_ids: set[int], source_words: list[bool], starts_word: list[bool],
           space_id: int | None = None, marks: list[bool] | None = None) -> tuple[list[int], np.ndarray | None]:
    """Output ids with every wanted placeholder exactly once, and their attention rows.

    wanted: target placeholder id -> its position in the source. A duplicate or invented
    placeholder is dropped. A missing one goes where its source neighbour's translation is: after
    the output word whose attention peaks on the source word to its left (before the one that
    peaks on the word to its right, at the start of a sentence), the attention row of output
    token j being the one that produced token j. source_words[i]: source position i is a real
    word piece (not a lone "▁", not a placeholder); starts_word[j]: output piece j begins a word
    (a punctuation mark is a word of its own); marks[j]: output piece j is a punctuation mark, and
    nothing goes after the marks that end the output ("a sign. "Stop"" had followed the full stop).
    The inserted placeholder's attention row is one-hot on its own source position.
    """
    seen, keep, rows = set(), [], []
    for j, t in enumerate(output_ids):
        if t in placeholder_ids and (t not in wanted or t in seen):
            continue
        seen.add(t)
        keep.append(t)
        rows.append(j)
    final = 0  # the marks that end the output
    while marks is not None and final < len(rows) and marks[rows[len(rows) - 1 - final]]:
        final += 1
    for t in sorted((t for t in wanted if t not in seen), key=wanted.get):
        at = min(_insertion_point(wanted[t], rows, attention, source_words, starts_word, len(keep)),
                 len(keep) - final)
        new = [space_id, t] if space_id is not None else [t]
        keep[at:at] = new
        rows[at:at] = [-1 - wanted[t]] * len(new)
    if attention is None:
        return keep, None
    width = attention.shape[1]
    out = np.zeros((len(keep), width), attention.dtype)
    for i, r in enumerate(rows):
        if r >= 0:
            out[i] = attention[r]
        elif -1 - r < width:
            out[i, -1 - r] = 1.0
    return keep, out


def _insertion_point(pos: int, rows: list[int], attention, source_words, starts_word, end: int) -> int:
    original = [i for i, r in enumerate(rows) if r >= 0]
    if attention is None or not original:
        return end
    left = next((i for i in range(pos - 1, -1, -1) if source_words[i]), None)
    right = next((i for i in range(pos + 1, len(source_words)) if source_words[i]), None)
    if left is None and right is None:
        return end
    column = left if left is not None else right
    best = original[int(np.argmax(attention[[rows[i] for i in original], column]))]
    if left is None:
        while best > 0 and rows[best] >= 0 and not starts_word[rows[best]]:
            best -= 1  # the start of that word
        return best
    best += 1
    while best < len(rows) and rows[best] >= 0 and not starts_word[rows[best]]:
        best += 1  # the end of that word
    return best


def restore(text: str, items: dict[str, str]) -> str:
    """Put the originals back in place of their placeholders (any left unknown are removed)."""
    def put(m: re.Match) -> str:
        return items.get(m.group(), "")
    return _PLACEHOLDER_RE.sub(put, text)
