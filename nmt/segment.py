"""Sentence segmentation: where one sentence of a text ends and the next begins.

A line break always ends a sentence (lists, paragraphs, pasted lines). Within a line, pysbd's
rule-based segmenter for the source language splits sentences: on German and English text people
paste it handled ordinals, dates, abbreviations, URLs, e-mail addresses, lower-case sentence
starts and ellipses best of the maintained segmenters compared (bench/segmenters.py, whose table
in the README also scores this module). Languages pysbd lacks fall back to sentencex (Wikimedia),
which covers some 250. Around pysbd, the rules below: no sentence ends inside a URL or an e-mail
address, runs of "!"/"?", an ellipsis before a capital or a digit and a full stop with no space
after it do end one, none ends inside a run of dots, and a closing quote cut off goes back to its
sentence.
"""

from __future__ import annotations

import functools
import re
import threading

from nmt.numbers import Localizer
from nmt.protect import LINK_RE

_LINE = re.compile(r"[^\n]+")
# a list item's marker at the start of a line ("- ", "• ", "1. ", "2) ", "a) ", "> "): kept as
# typed, outside the sentence (the model knows captions, not bullets)
_MARKER = re.compile(r"\s*(?:[-–—•·*▪◦‣⁃>]|\(?\d{1,3}[.)]|\(?[a-zA-Z]\))\s+")
_local = threading.local()  # pysbd segmenters keep per-call state: one per thread


def _pysbd(lang: str):
    cache = getattr(_local, "pysbd", None)
    if cache is None:
        cache = _local.pysbd = {}
    if lang not in cache:
        import pysbd
        try:
            cache[lang] = pysbd.Segmenter(language=lang, clean=False)
        except ValueError:  # language not provided by pysbd
            cache[lang] = None
    return cache[lang]


# sentence-ending marks of the scripts pysbd and sentencex know; a line with none of them before its
# end is one sentence
_ONE_SENTENCE = re.compile(r"[^.!?…。！？｡।॥؟۔]*[.!?…。！？｡।॥؟۔]*\s*")


def _split_line(line: str, lang: str) -> list[str]:
    if _ONE_SENTENCE.fullmatch(line):
        # nothing to split, and pysbd is the text pipeline's largest cost (~0.2 ms a sentence);
        # it agreed on 61,853 of the 61,855 such Multi30k lines, the other two ending in ".."
        # (which it cut into a sentence and a lone ".")
        return [line]
    segmenter = _pysbd(lang)
    if segmenter is not None:
        return segmenter.segment(line)
    import sentencex
    return list(sentencex.segment(lang, line))


def sentence_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the sentences of `text`, whitespace excluded, in order.
    What lies between two spans is the text's own whitespace, kept when translations are joined."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        offset, cursor = line.start(), 0
        body = line.group()
        marker = _MARKER.match(body)
        if marker and body[marker.end():].strip():
            offset, body = offset + marker.end(), body[marker.end():]
        for piece in _split_line(body, lang):
            piece = piece.strip()
            if not piece:
                continue
            at = body.find(piece, cursor)
            if at < 0:  # the segmenter changed the text: keep the rest of the line as one sentence
                rest = body[cursor:].strip()
                if rest:
                    at = body.index(rest, cursor)
                    spans.append((offset + at, offset + at + len(rest)))
                cursor = len(body)
                break
            spans.append((offset + at, offset + at + len(piece)))
            cursor = at + len(piece)
        tail = body[cursor:].strip()
        if tail:  # anything the segmenter did not return belongs to the last sentence
            at = body.index(tail, cursor)
            if spans and spans[-1][1] == offset + cursor:
                spans[-1] = (spans[-1][0], offset + at + len(tail))
            else:
                spans.append((offset + at, offset + at + len(tail)))
    spans = _split_after_runs(text, _join_dot_runs(text, spans))
    return _join_across_items(text, _join_closers(text, _split_glued(text, spans)), lang)


def _after_space(text: str, pos: int, end: int) -> int:
    """The first position from `pos` (before `end`) that is not whitespace, or `end`."""
    return end - len(text[pos:end].lstrip())


_RUN = re.compile(r"(?:[!?]{2,}|…|\.{3,})(?=\s+\S)")


def _join_dot_runs(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """No sentence starts inside a run of dots: pysbd cuts some in two ("Er zählt 1... 2..." gave
    "Er zählt 1..", ".", "2..", "."); the rest goes back. (Dots typed apart, ". . .", stay apart.)"""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and out[-1][1] == start and text[start] in ".…":
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _split_after_runs(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentences ended by a run of "!" or "?", or by an ellipsis ("…", "...") before a capital or
    a digit, that the segmenter ran together: pysbd splits after "!!", but not after "!!!", "…"
    or, before a digit, "..." ("Toll!!! Ein Hund bellt.", "Ein Hund bellt… Eine Katze schläft."
    and "Ein Hund rennt... 3 Katzen schlafen." stayed one sentence, and the model dropped the
    second)."""
    out = []
    for start, end in spans:
        for run in _RUN.finditer(text, start, end):
            nxt = _after_space(text, run.end(), end)
            following = text[nxt:nxt + 1]
            if run.group()[0] in ".…" and not (following.isupper() or following.isdigit()):
                continue  # "Er wartete… und wartete": one sentence
            if nxt < end:
                out.append((start, run.end()))
                start = nxt
        out.append((start, end))
    return out


_LOWER, _UPPER = "a-zäöüßàâçéèêëîïôûùÿñæœ", "A-ZÄÖÜÀÂÇÉÈÊËÎÏÔÛÙŸÑÆŒ"
# a sentence mark between two words with no space after it ("Ein Hund.Eine Katze."): two letters
# before it, so "z.B." and "St.Pauli" stay whole
_GLUED = re.compile(rf"(?<=[{_LOWER}]{{2}}[.!?])(?=[{_UPPER}][{_LOWER}])")


def _split_glued(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentences typed without a space after their full stop, which pysbd leaves joined (URLs and
    e-mail addresses are joined again afterwards)."""
    out = []
    for start, end in spans:
        for cut in _GLUED.finditer(text, start, end):
            if start < cut.start() < end:
                out.append((start, cut.start()))
                start = cut.start()
        out.append((start, end))
    return out


_CLOSERS = re.compile(r"[\"“”«»‘’')\]]+(?=\s|$)")


def _join_closers(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A closing quote or bracket that the segmenter cut off the sentence it closes goes back to it
    (pysbd: '"Ein Hund." "Eine Katze."' -> '"Ein Hund.', '" "Eine Katze."')."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        closer = _CLOSERS.match(text, start, end) if out and out[-1][1] == start else None
        if closer:
            out[-1] = (out[-1][0], closer.end())
            start = _after_space(text, closer.end(), end)
        if start < end:
            out.append((start, end))
    return out


@functools.lru_cache(maxsize=64)
def _dates(lang: str) -> re.Pattern | None:
    return Localizer(lang, lang).dates


def _join_across_items(text: str, spans: list[tuple[int, int]], lang: str) -> list[tuple[int, int]]:
    """Sentences the segmenter ended inside a URL, an e-mail address or a date in words, joined
    again: pysbd ends one at the "?" of a query string ("https://example.com/x?" | "y=1") and after
    an abbreviated month ("Am 1. Jan." | "2020 schneit es.")."""
    dates = _dates(lang) if len(spans) > 1 else None
    links = [m.span() for m in LINK_RE.finditer(text)] + ([m.span() for m in dates.finditer(text)] if dates else [])
    if not links or len(spans) < 2:
        return spans
    joined = [spans[0]]
    for start, end in spans[1:]:
        boundary = joined[-1][1], start
        if any(a < boundary[0] and boundary[1] < b for a, b in links):
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined
