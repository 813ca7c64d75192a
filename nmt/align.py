"""From a span of source text to the span of the translation that renders it, by the model's
attention: used to put HTML inline tags (service/markup.py) and brackets (nmt/brackets.py) around
the translation of the words they surrounded.
"""

from __future__ import annotations

import difflib
import re

WORD = re.compile(r"\w", re.UNICODE)


def char_spans(text: str, pieces: list[str], offset: int = 0) -> list[tuple[int, int]]:
    """Where each subword piece is in `text` (from `offset`): matched character by character,
    ignoring case and whitespace, so truecasing or a changed character only blurs the edges."""
    chars = [(i, c.lower()) for i, c in enumerate(text) if i >= offset and not c.isspace()]
    flat, owner = [], []
    for p, piece in enumerate(pieces):
        for c in piece.replace("\u2581", "").lower():
            if not c.isspace():
                flat.append(c)
                owner.append(p)
    where: list[list[int]] = [[] for _ in pieces]
    matcher = difflib.SequenceMatcher(None, flat, [c for _, c in chars], autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            where[owner[a + k]].append(chars[b + k][0])
    spans: list[tuple[int, int] | None] = [(min(w), max(w) + 1) if w else None for w in where]
    last = offset
    for p, span in enumerate(spans):  # unmatched pieces: zero width after the previous one
        if span is None:
            spans[p] = (last, last)
        last = spans[p][1]
    return spans  # type: ignore[return-value]


def widen(text: str, start: int, end: int) -> tuple[int, int]:
    """Extend a range to whole words."""
    while start > 0 and WORD.match(text[start - 1]) and start < len(text) and WORD.match(text[start]):
        start -= 1
    while 0 < end < len(text) and WORD.match(text[end - 1]) and WORD.match(text[end]):
        end += 1
    return start, end


def rendering(sources: set[int], weights: list[list[float]], strict: bool = False) -> list[int]:
    """The target tokens that render source tokens `sources`, given each target token's attention
    over the source (`weights[j][i]`). Both directions agree: the target token attends most to one
    of `sources`, and is the token that attends most to one of them; when no token is both, the
    tokens each source token is attended by most (none if `strict`)."""
    if not weights or not sources:
        return []

    def weight(j: int, i: int) -> float:
        return weights[j][i] if i < len(weights[j]) else 0.0
    by_column = {max(range(len(weights)), key=lambda j: weight(j, i)) for i in sources}
    aligned = [max(range(len(w)), key=w.__getitem__) if w and max(w) > 0 else -1 for w in weights]
    agreed = sorted(j for j in by_column if aligned[j] in sources)
    return agreed if agreed or strict else sorted(by_column)
