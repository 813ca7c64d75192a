"""Translating HTML (`format=html`): markup is kept, only text is translated, and inline tags land
around the translation of the words they surrounded.

The document is read with the standard library's HTML parser. Block elements (p, li, td, br, ...)
cut it into segments; each segment's text is translated as one text (sentences split as usual),
so `<b>` in the middle of a sentence does not cut the sentence in two. Inline elements (b, a, span,
...) are character ranges of their segment's text; after translation each range covers the target
tokens that render its source tokens by the model's attention (`nmt/align.py`), widened to whole
words and kept inside its parent element. Script, style and `translate="no"` content is copied
verbatim; entities are decoded for the model and escaped again in the output.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser

from nmt.align import char_spans, rendering, widen

BLOCK = {"address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "dialog",
         "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
         "h5", "h6", "head", "header", "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section",
         "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul", "option"}
VERBATIM = {"script", "style", "code", "kbd", "samp", "var", "textarea", "svg", "math"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Inline:
    start: int  # character range in the segment's text
    end: int
    open: str  # the tag as written (attributes kept)
    close: str
    parent: int | None = None  # index of the enclosing inline range


@dataclass
class Segment:
    """Either markup copied as is (`raw`), or text with inline ranges to translate."""
    raw: str = ""
    text: str = ""
    inlines: list[Inline] = field(default_factory=list)

    @property
    def translatable(self) -> bool:
        return bool(self.text.strip())


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[Segment] = []
        self.current = Segment()
        self.stack: list[tuple[str, int]] = []  # open inline tags: (tag, index in current.inlines)
        self.verbatim: list[str] = []  # open tags whose content is copied verbatim

    # a segment ends at every block boundary; what is open inline is closed there (HTML allows it)
    def _flush(self) -> None:
        for tag, index in reversed(self.stack):
            self.current.inlines[index].end = len(self.current.text)
        self.stack.clear()
        if self.current.text or self.current.inlines:
            self.segments.append(self.current)
        self.current = Segment()

    def _raw(self, text: str) -> None:
        if self.current.text or self.current.inlines:
            self._flush()
        if self.segments and not self.segments[-1].text and not self.segments[-1].inlines:
            self.segments[-1].raw += text
        else:
            self.segments.append(Segment(raw=text))

    def handle_starttag(self, tag, attrs):
        raw = self.get_starttag_text() or f"<{tag}>"
        no_translate = any(k == "translate" and (v or "").lower() == "no" for k, v in attrs)
        if self.verbatim or tag in VERBATIM or no_translate:
            if tag not in VOID:
                self.verbatim.append(tag)
            self._verbatim_text(raw)
            return
        if tag in BLOCK:
            self._raw(raw)
        elif tag in VOID:  # an image inside a sentence: a zero-width inline range
            self.current.inlines.append(Inline(len(self.current.text), len(self.current.text), raw, "",
                                               self.stack[-1][1] if self.stack else None))
        else:
            parent = self.stack[-1][1] if self.stack else None
            self.current.inlines.append(Inline(len(self.current.text), -1, raw, f"</{tag}>", parent))
            self.stack.append((tag, len(self.current.inlines) - 1))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if self.verbatim:
            self._verbatim_text(f"</{tag}>")
            if tag in self.verbatim:
                while self.verbatim and self.verbatim.pop() != tag:
                    pass
            return
        if tag in BLOCK:
            self._raw(f"</{tag}>")
            return
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                for _, index in self.stack[depth:]:
                    self.current.inlines[index].end = len(self.current.text)
                del self.stack[depth:]
                return
        # a stray end tag: keep it where it was
        self.current.inlines.append(Inline(len(self.current.text), len(self.current.text), f"</{tag}>", ""))

    def _verbatim_text(self, raw: str) -> None:
        if self.current.text.strip() or self.current.inlines:
            # verbatim content inside a sentence: a zero-width range that carries it
            self.current.inlines.append(Inline(len(self.current.text), len(self.current.text), raw, "",
                                               self.stack[-1][1] if self.stack else None))
        else:
            self._raw(raw)

    def handle_data(self, data):
        if self.verbatim:
            self._verbatim_text(html.escape(data, quote=False) if self.verbatim[-1] not in ("script", "style") else data)
        elif data.strip() or self.current.text or self.current.inlines:
            self.current.text += data
        else:
            self._raw(data)  # whitespace between blocks

    def handle_comment(self, data):
        self._verbatim_text(f"<!--{data}-->")

    def handle_decl(self, decl):
        self._raw(f"<!{decl}>")

    def handle_pi(self, data):
        self._raw(f"<?{data}>")

    def unknown_decl(self, data):
        self._raw(f"<![{data}]>")


def parse(document: str) -> list[Segment]:
    reader = _Reader()
    reader.feed(document)
    reader.close()
    reader._flush()
    return reader.segments


def place(segment: Segment, translation, rank: int = 0) -> str:
    """The translated segment as HTML: `translation` is its Translation message (with attention);
    `rank`: which of its hypotheses (alternatives follow their own attention)."""
    target = translation.hypotheses[min(rank, len(translation.hypotheses) - 1)].text
    src_tokens: list[tuple[int, int]] = []  # per source token: character span in the source text
    tgt_tokens: list[tuple[int, int]] = []  # per target token: character span in the target text
    aligned: list[int] = []  # per target token: its source token (argmax attention), global index
    weights: list[list[float]] = []
    cursor = 0
    for sentence in translation.sentences:
        base = len(src_tokens)
        src_tokens += char_spans(segment.text[: sentence.source_end], list(sentence.source_tokens), sentence.source_start)
        best = sentence.hypotheses[min(rank, len(sentence.hypotheses) - 1)]
        at = target.find(best.text, cursor) if best.text else -1
        start = at if at >= 0 else cursor
        spans = char_spans(target[: start + len(best.text)], list(best.tokens), start)
        cursor = start + len(best.text)
        for span, row in zip(spans, best.attention):
            tgt_tokens.append(span)
            w = list(row.weights)
            aligned.append(base + max(range(len(w)), key=w.__getitem__) if w else -1)
            weights.append([0.0] * base + w)
    ranges: list[tuple[int, int]] = []
    for k, inline in enumerate(segment.inlines):
        sources = {i for i, (a, b) in enumerate(src_tokens) if a < inline.end and b > inline.start}
        chosen = rendering(sources, weights)
        if inline.start == inline.end or not chosen:
            before = [j for j, i in enumerate(aligned) if 0 <= i and src_tokens[i][1] <= inline.start]
            pos = max((tgt_tokens[j][1] for j in before), default=0)
            lo = hi = pos
        else:
            lo, hi = widen(target, min(tgt_tokens[j][0] for j in chosen), max(tgt_tokens[j][1] for j in chosen))
        if inline.parent is not None:  # stay inside the enclosing element
            plo, phi = ranges[inline.parent]
            lo, hi = min(max(lo, plo), phi), max(min(hi, phi), plo)
            lo = min(lo, hi)
        for earlier in range(k):  # siblings do not overlap: start after an earlier one that overlaps
            e = segment.inlines[earlier]
            if e.parent == inline.parent and ranges[earlier][0] < hi and lo < ranges[earlier][1] and lo != hi:
                lo = min(ranges[earlier][1], hi)
        ranges.append((lo, hi))
    return _with_tags(target, segment.inlines, ranges)


def _with_tags(text: str, inlines: list[Inline], ranges: list[tuple[int, int]]) -> str:
    """`text`, escaped, with each inline element's tags around its character range. At one place,
    closing tags come before opening ones, outer elements open first and close last; an element
    whose range is empty is written whole (opening and closing tag together)."""
    events: list[tuple[int, int, int, str]] = []
    for k, (inline, (lo, hi)) in enumerate(zip(inlines, ranges)):
        depth = _depth(inlines, k)
        if lo == hi:
            events.append((lo, 1, depth, inline.open + inline.close))
            continue
        events.append((lo, 1, depth, inline.open))
        if inline.close:
            events.append((hi, 0, -depth, inline.close))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    out, last = [], 0
    for pos, _, _, tag in events:
        out.append(html.escape(text[last:pos], quote=False))
        out.append(tag)
        last = max(last, pos)
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def _depth(inlines: list[Inline], k: int) -> int:
    depth = 0
    while inlines[k].parent is not None:
        k = inlines[k].parent
        depth += 1
    return depth


def render(segments: list[Segment], translations: list, rank: int = 0) -> str:
    """Reassemble: markup as it was, each translatable segment replaced by its translation
    (`translations` in the order of the translatable segments; `rank`: which hypothesis)."""
    it = iter(translations)
    parts = []
    for segment in segments:
        if segment.raw:
            parts.append(segment.raw)
        elif segment.translatable:
            parts.append(place(segment, next(it), rank))
        else:  # whitespace with inline tags around it: as it was
            parts.append(_with_tags(segment.text, segment.inlines,
                                    [(i.start, i.end if i.close else i.start) for i in segment.inlines]))
    return "".join(parts)
