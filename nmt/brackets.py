"""Brackets and Markdown emphasis in a sentence. The model never saw them (captions have none) and
drops or garbles what they enclose ("Ein Mann [links] liest ein Buch" gave "A man is reading a
book", "Ein Kind spielt (im Garten)." "A child is playing an electric garden.", "Ein **großer**
Hund bellt." "A quncta is shacking a dog."). They are taken out before translation and put back
around the translation of the words they enclosed, found by the attention (`nmt/align.py`), as
HTML inline tags are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from nmt.align import char_spans, rendering, widen
from nmt.protect import QUOTES

PAIRS = {"(": ")", "[": "]"}
_MARKS = re.compile(r"[(\[*_\"„“»«]")
# Markdown emphasis: the same mark on both sides, touching the words it encloses
_EMPHASIS = re.compile(r"(?<![\w*_])(\*\*|__|\*|_)(?=[^\s*_])(.+?)(?<=[^\s*_])\1(?![\w*_])")
# one word in lower case between quotation marks: emphasis ("ein „kleiner“ Hund"), translated and
# quoted in English; longer quotations are names or what a sign says (`nmt.protect.quotations`)
_EMPHASIS_QUOTE = re.compile("|".join(rf"(?<!\w){re.escape(a)}[^\W\d_A-Z]+{re.escape(b)}(?!\w)"
                                      for a, b in QUOTES.items()))
MIN_ATTENTION = 0.5  # of a token's attention, on the enclosed words
_EDGE = ".,;:!?…"  # punctuation a bracket does not take in unless it enclosed such a mark


@dataclass
class Bracket:
    open: str
    close: str
    start: int  # what it enclosed: a character range of the text without brackets
    end: int


def _opens_word(text: str, i: int) -> bool:
    return i == 0 or not text[i - 1].isalnum()


def _closes_word(text: str, j: int) -> bool:
    return j == len(text) - 1 or not text[j + 1].isalnum()


def take_out(text: str, quotes: bool = True) -> tuple[str, list[Bracket]]:
    """`text` without its bracket pairs and Markdown emphasis (`**fett**`, `*kursiv*`, `_so_`), and
    what each enclosed. A bracket pair counts when it is balanced, stands outside words ("(im
    Garten)", not "Foto(s)") and encloses a letter or digit; any other bracket stays in the text.
    Spaces just inside a bracket go with it. `quotes`: one lower-case word in quotation marks
    counts too (emphasis), its marks put back as English quotes."""
    if not _MARKS.search(text):  # most sentences: nothing to scan
        return text, []
    stack: list[int] = []
    found: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        if ch in PAIRS:
            stack.append(i)
        elif ch in PAIRS.values():
            if stack and PAIRS[text[stack[-1]]] == ch:
                found.append((stack.pop(), i))
            else:
                stack.clear()  # crossed or stray: the brackets before it are not pairs
    # (opening mark's start, its length, closing mark's start, its length)
    pairs = [(i, 1, j, 1) for i, j in found if _opens_word(text, i) and _closes_word(text, j)]
    pairs += [(m.start(), len(m.group(1)), m.end() - len(m.group(1)), len(m.group(1)))
              for m in _EMPHASIS.finditer(text)]
    if quotes:
        pairs += [(m.start(), 1, m.end() - 1, 1) for m in _EMPHASIS_QUOTE.finditer(text) if m.group()[1:-1].islower()]
    pairs = [p for p in pairs if any(ch.isalnum() for ch in text[p[0] + p[1]:p[2]])]
    if not pairs:
        return text, []
    drop = set()
    for i, a, j, b in pairs:
        drop.update(range(i, i + a))
        drop.update(range(j, j + b))
        k = i + a
        while k < j and text[k] == " ":
            drop.add(k)
            k += 1
        k = j - 1
        while k >= i + a and text[k] == " ":
            drop.add(k)
            k -= 1
    kept = [k for k in range(len(text)) if k not in drop]
    out = "".join(text[k] for k in kept)
    position = {k: n for n, k in enumerate(kept)}
    brackets = []
    for i, a, j, b in sorted(pairs):
        inside = [position[k] for k in range(i + a, j) if k in position]
        marks = ('"', '"') if text[i] in QUOTES else (text[i:i + a], text[j:j + b])  # English quotes
        brackets.append(Bracket(*marks, inside[0], inside[-1] + 1))
    return out, brackets


def target_ranges(output: str, pieces: list[str], source: str, source_pieces: list[str],
                  attention: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """For each character range of `source` (the text the model read, as `source_pieces`), the
    range of `output` (as `pieces`, one per attention row) that renders it, whole words, or None
    when the attention finds no such words (the model left them out)."""
    src_spans = char_spans(source, source_pieces)
    tgt_spans = char_spans(output, pieces)
    weights = attention.tolist()
    found: list[tuple[int, int] | None] = []
    for start, end in spans:
        sources = {i for i, (a, z) in enumerate(src_spans) if a < end and z > start and a < z}
        # tokens that give the enclosed words most of their attention: when the model left those
        # words out, the best a token does is a glance ("Bank (Geld)" put "(A) man" first)
        inside = sorted(sources)
        chosen = [j for j in rendering(sources, weights, strict=True)
                  if j < len(tgt_spans) and attention[j, inside].sum() >= MIN_ATTENTION]
        if not chosen:
            found.append(None)
            continue
        first = min(chosen)
        # words just before that attend most to the enclosed ones lead it ("in" of "in front of");
        # English puts such words first; after the phrase they were strays ("(brown) and")
        while first > 0 and int(np.argmax(attention[first - 1])) in sources:
            first -= 1
        lo, hi = widen(output, tgt_spans[first][0], tgt_spans[max(chosen)][1])
        keep_edge = source[end - 1] in _EDGE
        while hi > lo and (output[hi - 1].isspace() or (output[hi - 1] in _EDGE and not keep_edge)):
            hi -= 1
        while lo < hi and (output[lo].isspace() or output[lo] in _EDGE):
            lo += 1
        found.append((lo, hi) if lo < hi else None)
    return found


def put_back(output: str, pieces: list[str], source: str, source_pieces: list[str],
             attention: np.ndarray | None, brackets: list[Bracket]) -> str:
    """`output` with each bracket around the words that render what it enclosed in `source`
    (the text without brackets that the model read, as `source_pieces`); `pieces` are the output's
    subword pieces, one per attention row. A bracket whose words the attention does not find is
    left out, as the model would have."""
    if attention is None or not len(attention) or not brackets:
        return output
    ranges = target_ranges(output, pieces, source, source_pieces, attention, [(b.start, b.end) for b in brackets])
    inserts: list[tuple[int, int, int, str]] = []  # position, closing first, nesting order, bracket
    placed: list[tuple[int, int]] = []
    for depth, (b, found) in enumerate(zip(brackets, ranges)):
        if found is None:
            continue
        lo, hi = found
        if not any(a < lo < z < hi or lo < a < hi < z for a, z in placed):  # never crossed
            placed.append((lo, hi))
            inserts += [(lo, 1, depth, b.open), (hi, 0, -depth, b.close)]
    out, last = [], 0
    for pos, _, _, mark in sorted(inserts):
        out.append(output[last:pos])
        out.append(mark)
        last = pos
    out.append(output[last:])
    return "".join(out)
