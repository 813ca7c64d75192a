"""From the text a person typed to model rows and back: sentence splitting, the casing rule,
protected items, tokenization; then placeholder repair, detokenization, restoring protected items
and joining the sentences with the text's own whitespace. Torch-free: the server, the evaluation
CLI and the robustness bench all go through here, so what is measured is what is served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from nmt.brackets import Bracket, put_back, take_out, target_ranges
from nmt.numbers import Localizer
from nmt.protect import LINK_RE, PLACEHOLDERS, QUOTES, is_symbol, protect, repair, restore
from nmt.search import Hypothesis
from nmt.segment import sentence_spans
from nmt.tokenizer import Tokenizer, normalize


@dataclass
class SourceSentence:
    start: int  # character span in the text it came from
    end: int
    model_text: str  # what the model reads: placeholders in, casing rule applied
    ids: list[int]
    items: dict[str, str] = field(default_factory=dict)  # placeholder -> original text
    upper: bool = False  # all-caps input: translated in lower case, output upper-cased
    unfinished: bool = False  # typed without final punctuation: one added, removed from the output
    ending: str = ""  # a final run ("!!!", "?!?", "...") the model read as one mark; the output ends with it
    verbatim: str | None = None  # no letter or digit ("...", "???"): not for the model, given back as typed
    before: str = ""  # emoji that open the sentence, with their spaces: kept out of the model's way
    after: str = ""  # emoji that close it, with their spaces and any final marks ("🐶", " 🐶!")
    hidden: dict[str, int] = field(default_factory=dict)  # emoji placeholders inside it, not for the
    # model: placeholder -> the source position it would have had (put back by the attention)
    brackets: list[Bracket] = field(default_factory=list)  # taken out; ranges of `align_source`
    shouted: list[tuple[int, int]] = field(default_factory=list)  # words in capitals for emphasis,
    # read in their usual form; ranges of `align_source`, their translation upper-cased
    align_source: str = ""  # the sentence without its brackets, before the casing rule

    @property
    def needs_attention(self) -> bool:
        """Placeholders, brackets and emphasis are put back with the help of the attention."""
        return bool(self.items or self.brackets or self.shouted)


@dataclass
class SentenceOutput:
    text: str
    tokens: list[str]  # output pieces, protected items shown as they are
    token_ids: list[int]
    attention: np.ndarray | None  # (len(tokens), len(source tokens))


def is_all_caps(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


def casing_style(text: str) -> str:
    """"upper", "lower", "title" (every word capitalised) or "mixed": the first three carry no
    information about which words are nouns or names, which German spelling otherwise gives.
    URLs and e-mail addresses do not count: they are written as they must be."""
    text = LINK_RE.sub(" ", text) if _may_link(text) else text
    if is_all_caps(text):
        return "upper"
    letters = [ch for ch in text if ch.isalpha()]
    if letters and not any(ch.isupper() for ch in letters):
        return "lower"
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    firsts = [next(ch for ch in w if ch.isalpha()) for w in words]
    if len(words) >= 3 and all(ch.isupper() for ch in firsts):
        return "title"
    return "mixed"


_FINAL = re.compile(r"[.!?…:;)\"'»“”]\s*$")
_FINAL_STOP = re.compile(r"\s*[.!?…]+$")
# "Toll!!!", "Na ja...": captions end with one mark; the model loops on three, garbles "…"
_FINAL_RUN = re.compile(r"[!?]{2,}$|\.{3,}$|…$")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$")
_LONE_NUMBER = re.compile(r"[+-]?\d[\d.,]*")
_WORD = re.compile(r"[^\W\d_]+")


def edge_symbols(sentence: str) -> tuple[str, str, str]:
    """(emoji opening the sentence, the rest, emoji closing it with any final marks after them).
    Around a placeholder at either end the model dropped the verb next to it ("Ein Hund bellt 🐶"
    gave "A dog 🐶"); off the edges they are put back as typed."""
    a = 0
    while a < len(sentence) and (is_symbol(sentence[a]) or (a and sentence[a].isspace())):
        a += 1
    b = len(sentence)
    while b > a and (sentence[b - 1] in ".!?…" or sentence[b - 1].isspace()):
        b -= 1
    marks = b
    while b > a and (is_symbol(sentence[b - 1]) or sentence[b - 1].isspace()):
        b -= 1
    if b == marks:  # no emoji before the final marks: they stay the sentence's own
        b = len(sentence)
    while a < b and sentence[a].isspace():
        a += 1
    return sentence[:a], sentence[a:b], sentence[b:]


# a sentence in quotes as a whole: opening quote -> its closing one
_QUOTES = {**QUOTES, "‚": "‘"}
_TRAILING = re.compile(r"\s*[,;:–—-]+$")  # "Ein Hund bellt,": the model reads a sentence, the mark comes back
_MARKS = (".", ",", ";", ":", "!", "?", "…")
_SPACE_BEFORE = re.compile(r"(?<=\w) +(?=[,.](?:\s|$))")  # "Ein Hund , der bellt ."


def outer_marks(sentence: str) -> tuple[str, str, str]:
    """(what opens the sentence, its body, what closes it) for what the model should not read:
    quotes around the whole sentence ("„Ein Hund bellt.“": the model garbled them), and a trailing
    comma, semicolon, colon or dash ("Ein Hund bellt,")."""
    before, after = "", ""
    trailing = _TRAILING.search(sentence)
    if trailing and trailing.start() > 0:
        sentence, after = sentence[: trailing.start()], trailing.group()
    close = _QUOTES.get(sentence[:1])
    if close:
        body = sentence[1:]
        marks = len(body) - len(body.rstrip(".!?…"))
        inner = body[: len(body) - marks]
        if inner.endswith(close) and close not in inner[:-1] and sentence[:1] not in inner[:-1]:
            before, after = sentence[:1], inner[-1] + body[len(inner):] + after
            sentence = inner[:-1]
    return before, sentence, after


def compound_head(word: str, known: dict[str, str], min_part: int = 3) -> str | None:
    """The last part of `word` (lower case) when it splits into known words of at least `min_part`
    letters, allowing German linking letters (Fußgängerweg = Fußgänger + Weg, Hundeleine =
    Hund + e + Leine); None when it does not split. Compounds are words, not names."""
    n = len(word)
    ok = [None] * (n + 1)  # ok[i]: word[:i] splits; the last part found
    ok[0] = ""
    for i in range(n):
        if ok[i] is None:
            continue
        for link in ("", "s", "es", "n", "en", "e", "-") if i else ("",):  # links join parts, never lead
            start = i + len(link) if word.startswith(link, i) else None
            if start is None:
                continue
            for end in range(start + min_part, n + 1):
                part = word[start:end]
                if part in known and (ok[end] is None or ok[end] == ""):
                    ok[end] = part
    return ok[n] if ok[n] and ok[n] != word else None


def _may_link(text: str) -> bool:
    """Whether `text` may hold a URL or e-mail address (`LINK_RE` is slow on the many that do not)."""
    return "@" in text or "://" in text or "www." in text


def _outside_links(text: str, change) -> str:
    """`change` applied to `text` but its URLs and e-mail addresses (their case is not ours)."""
    out, last = [], 0
    for m in LINK_RE.finditer(text) if _may_link(text) else ():
        out += [change(text[last:m.start()]), m.group()]
        last = m.end()
    return "".join(out) + change(text[last:])


def truecase(text: str, forms: dict[str, str], names: bool = True) -> str:
    """Each word in its most frequent training form ("hund" -> "Hund", "EIN" -> "ein", "STRASSE" ->
    "Straße"); a compound of known words takes the casing of its last part; other unknown words
    are capitalised as names when `names`, else lower-cased. The first word starts upper-case."""
    out = []
    for i, word in enumerate(text.split(" ")):
        pre, core, post = _CORE.match(word).groups()
        if core and not (_may_link(word) and LINK_RE.search(word)):
            low = core.lower()
            form = forms.get(low) or forms.get(low.replace("ss", "ß"))
            if form is None:
                head = compound_head(low, forms)
                if head is not None:
                    form = low[:1].upper() + low[1:] if forms[head][:1].isupper() else low
                else:
                    form = low[:1].upper() + low[1:] if names else low
            core = form[:1].upper() + form[1:] if i == 0 else form
        out.append(pre + core + post)
    return " ".join(out)


class TextProcessor:
    """One model's way of reading texts and writing translations."""

    def __init__(self, source: Tokenizer, target: Tokenizer, language: str,
                 word_forms: list[str] | None = None, casing: str = "truecase",
                 complete_punctuation: bool = True, copied_words: list[str] | None = None,
                 target_language: str = "") -> None:
        """word_forms: the source words seen in training, in their usual casing (names not among
        them are protected); copied_words: names seen in training too rarely for the model to
        copy them, protected as well (`training.augment.copied_words`). casing: what to do with
        all-caps, all-lower and Title Case input: "truecase" (each word in its usual form),
        "lower" (lower-case all-caps input only) or "none" (as typed). All-caps input gets an
        all-caps translation either way.
        complete_punctuation: a sentence typed without final punctuation is translated with a full
        stop added, and the full stop is taken off the translation. target_language: protected
        numbers and dates come back as it writes them (`nmt.numbers`; empty: as typed)."""
        self.complete_punctuation = complete_punctuation
        self.segment = True
        self.brackets = True  # take brackets out and put them back (nmt/brackets.py)
        self.emoji_apart = True  # emoji out of the model's way: at the edges as typed, inside by attention
        self.asides = True  # a protected item alone in brackets ("Eine Frau (30)") out of the model's way too
        self.quotations = True  # short quotations copied, a quoted lower-case word quoted (nmt/protect.py)
        self.localizer = Localizer(language, target_language)  # numbers and dates the target's way
        self.localize = True
        self.source, self.target, self.language = source, target, language
        self.forms = {w.lower(): w for w in word_forms or () if w}
        self.protect_names = bool(self.forms)
        self.copied = set(copied_words or ()) - {""}
        if casing not in ("truecase", "lower", "none"):
            raise ValueError(f"casing must be truecase, lower or none, got {casing!r}")
        self.casing = casing
        self._src_placeholders = {source.sp.piece_to_id(p): p for p in PLACEHOLDERS}  # id -> piece
        self._tgt_placeholders = {p: target.sp.piece_to_id(p) for p in PLACEHOLDERS}  # piece -> id
        unk = source.sp.unk_id()
        if unk in self._src_placeholders or unk in self._tgt_placeholders.values():
            self._src_placeholders, self._tgt_placeholders = {}, {}  # an older vocabulary: no protection
        self._tgt_placeholder_ids = set(self._tgt_placeholders.values())
        space = target.sp.piece_to_id("▁")
        self._space_id = None if space == target.sp.unk_id() else space
        self._byte_ids = {i for i in range(len(source)) if source.sp.is_byte(i)}
        self._char_covered: dict[str, bool] = {}

    @property
    def protects(self) -> bool:
        return bool(self._src_placeholders)

    def _is_name(self, word: str) -> bool:
        """Capitalised (or with a capital inside: "iPhone", "eBay"), never seen in training, not a
        compound of known words ("Grzegorz", "B-XY"); or a rare name that training copied."""
        low = word.lower()
        if word in self.copied:  # "Peter", seen once and copied: the model made it "nurse"
            return True
        return (any(ch.isupper() for ch in word) and low not in self.forms
                and "/" not in word  # "Mann/eine": words
                and compound_head(low, self.forms) is None)

    def _is_mark(self, ids: list[int], j: int) -> bool:
        return j < len(ids) and self.target.sp.id_to_piece(ids[j]) in _MARKS

    def _is_suffix(self, token: int) -> bool:
        piece = self.target.sp.id_to_piece(token)
        return not piece.startswith("▁") and piece.isalpha()

    def _can_encode(self, word: str) -> bool:
        """Whether the vocabulary covers every character of `word` (unknown characters become
        <unk> or bytes whatever their neighbours, so characters are asked one by one, and
        remembered: asking SentencePiece for every word was the service's largest cost outside
        the engine)."""
        return all(self._covered(ch) for ch in word)

    def _covered(self, ch: str) -> bool:
        known = self._char_covered.get(ch)
        if known is None:
            if len(self._char_covered) >= 50_000:  # bounded, whatever scripts clients send
                self._char_covered.clear()
            known = not any(i in self._byte_ids or i == self.source.sp.unk_id()
                            for i in self.source.sp.encode(ch))
            self._char_covered[ch] = known
        return known

    def split(self, text: str) -> list[SourceSentence]:
        """The sentences of `text`, ready for the model."""
        if not self.segment:  # the whole text as one row (only to measure what splitting buys)
            stripped = text.strip()
            start = text.find(stripped) if stripped else 0
            spans = [(start, start + len(stripped))] if stripped else []
        else:
            spans = sentence_spans(text, self.language)
        return [self.prepare(text[a:b], a, b) for a, b in spans]

    def prepare(self, sentence: str, start: int = 0, end: int | None = None) -> SourceSentence:
        end = len(sentence) if end is None else end
        if not any(ch.isalnum() for ch in sentence):  # the model would make words of "???"
            return SourceSentence(start, end, sentence, [], verbatim=sentence)
        before, sentence, after = edge_symbols(sentence) if self.emoji_apart else ("", sentence, "")
        opening, sentence, closing = outer_marks(sentence)
        if opening and self.localize and self.localizer.target is not None:  # „…“ in English text: "…",
            mark = "'" if opening == "‚" else '"'  # as short quotations come back (nmt/protect.py)
            opening, closing = mark, closing.replace(_QUOTES[opening], mark, 1)
        before, after = before + opening, closing + after
        model_text = _SPACE_BEFORE.sub("", normalize(sentence))
        brackets: list[Bracket] = []
        if self.brackets:
            model_text, brackets = take_out(model_text, self.quotations)
        shouted: list[tuple[int, int]] = []
        align_source = model_text
        if self.forms and casing_style(model_text) == "mixed":
            model_text, shouted = self._quiet(model_text)
        align_source = align_source if brackets or shouted else ""
        style = casing_style(model_text)
        upper = style == "upper" and self.casing != "none"
        if self.casing == "truecase" and style != "mixed" and self.forms:
            model_text = truecase(model_text, self.forms, names=style != "lower")
        elif upper:
            model_text = _outside_links(model_text, str.lower)
        unfinished = self.complete_punctuation and not _FINAL.search(model_text)
        if unfinished:
            model_text += "."
        run = _FINAL_RUN.search(model_text)
        ending = run.group() if run else ""
        if ending:  # the model reads one mark ("!", "?" or a full stop), the output ends with the run
            model_text = model_text[: run.start()] + (ending[0] if ending[0] in "!?" else ".")
        items: dict[str, str] = {}
        hidden: dict[str, int] = {}
        if self.protects:
            # a number alone in brackets is an aside, not the start of a measure ("(34) Tag")
            asides = {b.start for b in brackets if _LONE_NUMBER.fullmatch(align_source[b.start:b.end])}
            localized = self.localizer.spans(model_text, asides) if self.localize else []
            protected = protect(model_text, self._is_name if self.protect_names else None,
                                self._can_encode, self.quotations, localized)
            model_text, items = protected.text, protected.items
            asides = self._asides(align_source or model_text, brackets, items) if self.asides else {}
            if self.emoji_apart or asides:
                model_text, hidden = self._hide_symbols(model_text, items, asides)
            for placeholder, bracket in asides.items():  # put back with its brackets, as typed
                items[placeholder] = bracket.open + items[placeholder] + bracket.close
                brackets.remove(bracket)
        return SourceSentence(start, end, model_text, self.source.encode(model_text), items, upper,
                              unfinished, ending, before=before, after=after, hidden=hidden,
                              brackets=brackets, shouted=shouted, align_source=align_source)

    def _quiet(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        """Known words written in capitals for emphasis inside a sentence in their usual form ("Ein
        HUND bellt LAUT!" came back as "A DOG is pading a race"); acronyms the training data
        writes in capitals (DJ) and unknown words stay as typed."""
        out, spans, last = [], [], 0
        for m in _WORD.finditer(text):
            word = m.group()
            form = self.forms.get(word.lower())
            if len(word) < 2 or not word.isupper() or form is None or form.isupper():
                continue
            if m.start() == 0:
                form = form[:1].upper() + form[1:]
            out += [text[last:m.start()], form]
            spans.append(m.span())
            last = m.end()
        return "".join(out) + text[last:], spans

    @staticmethod
    def _asides(text: str, brackets: list[Bracket], items: dict[str, str]) -> dict[str, Bracket]:
        """Brackets around nothing but one protected item ("Eine Frau (30) läuft"): an aside the
        model dropped words next to ("A woman (30) on the beach."). placeholder -> its bracket."""
        asides = {}
        for bracket in brackets:
            inside = text[bracket.start:bracket.end]
            found = [p for p, original in items.items() if original == inside]
            if len(found) == 1 and list(items.values()).count(inside) == 1:
                asides[found[0]] = bracket
        return asides

    def _hide_symbols(self, text: str, items: dict[str, str], asides: dict | None = None
                      ) -> tuple[str, dict[str, int]]:
        """Emoji placeholders that follow a capitalised word (in German a noun or name, which the
        emoji illustrates) taken out of the model's text: the model dropped words next to them
        ("Ein Hund 🐶 bellt." gave "A dog 🐶 ."). Elsewhere an emoji stands for a word ("ein Schild
        mit 🎉") and stays a placeholder. Asides (`_asides`) are taken out wherever they are.
        -> (text, placeholder -> the source position it would have had); `finish` puts each back
        by the attention, as a placeholder the model dropped."""
        cuts: dict[str, int] = {}
        asides = asides or {}
        for placeholder, original in items.items():
            at = text.find(placeholder)
            aside = placeholder in asides
            if at < 0 or not (aside or (self.emoji_apart and all(is_symbol(ch) for ch in original))):
                continue
            before, after = text[:at].rstrip(" "), text[at + len(placeholder):].lstrip(" ")
            word = before.rsplit(" ", 1)[-1]
            if not aside and not word[:1].isupper():  # not after a noun it illustrates: a word itself ("mit 🎉")
                continue
            joined = before + (" " if before and after and after[0].isalnum() else "") + after
            shift = len(text) - len(joined)
            cuts = {p: (c if c <= len(before) else c - shift) for p, c in cuts.items()}
            cuts[placeholder] = len(before)
            text = joined
        return text, {p: len(self.source.encode(text[:c])) for p, c in cuts.items()}

    def source_tokens(self, sentence: SourceSentence) -> list[str]:
        """The source as the model read it, protected items shown as they are."""
        return [self._show(p, sentence.items) for p in self.source.pieces(sentence.ids)]

    def results(self, sentence: SourceSentence, hypotheses: list[Hypothesis]
                ) -> list[tuple[SentenceOutput, Hypothesis]]:
        """Each hypothesis of a sentence as output text, with the hypothesis; a verbatim
        sentence (nothing was decoded) as typed."""
        if sentence.verbatim is not None:
            return [(SentenceOutput(sentence.verbatim, [], [], None), Hypothesis([], 0.0, 0.0))]
        return [(self.finish(sentence, h), h) for h in hypotheses]

    def finish(self, sentence: SourceSentence, hyp: Hypothesis) -> SentenceOutput:
        ids, attention = hyp.token_ids, hyp.attention
        if sentence.items:
            wanted = {self._tgt_placeholders[p]: i for i, t in enumerate(sentence.ids)
                      if (p := self._src_placeholders.get(t)) is not None}
            wanted.update({self._tgt_placeholders[p]: i for p, i in sentence.hidden.items()})
            src_pieces = self.source.pieces(sentence.ids)
            words = [p not in ("▁", "") and t not in self._src_placeholders
                     for p, t in zip(src_pieces, sentence.ids)]
            pieces = self.target.pieces(ids)
            marks = [p.lstrip("▁") in _MARKS for p in pieces]
            starts = [p.startswith("▁") or m for p, m in zip(pieces, marks)]  # a mark is a word of its own
            ids, attention = repair(ids, attention, wanted, self._tgt_placeholder_ids,
                                    words, starts, self._space_id, marks)
        # A word ending glued to a copied item ("⦅1⦆" "ing") is the model's noise, and so is a lone
        # space before a mark ("⦅1⦆" "▁" "." gave "93 .")
        keep = [j for j, t in enumerate(ids)
                if not ((sentence.items and j and ids[j - 1] in self._tgt_placeholder_ids and self._is_suffix(t))
                        or (t == self._space_id and self._is_mark(ids, j + 1)))]
        if len(keep) < len(ids):
            ids = [ids[j] for j in keep]
            attention = attention[keep] if attention is not None else None
        if sentence.unfinished:  # the full stop we added: off the tokens and the attention too
            while ids and _FINAL_STOP.fullmatch(self.target.sp.id_to_piece(ids[-1]).lstrip("▁") or " "):
                ids = ids[:-1]
                attention = attention[:-1] if attention is not None else None
        text = self.target.decode(ids)
        text = re.sub(r"(?<=\S) {2,}(?=\S)", " ", text).strip(" ")  # a stray "▁" gives two spaces
        items = {p: self.localizer.render(v) for p, v in sentence.items.items()} if self.localize else sentence.items
        if items:
            text = restore(text, items)
            text = self.localizer.tidy(text, sentence.items.values()) if self.localize else text
        pieces = [self._show(p, items) for p in self.target.pieces(ids)]
        if sentence.unfinished:
            text = _FINAL_STOP.sub("", text)
        if sentence.ending:
            text = _FINAL_STOP.sub("", text) + sentence.ending
        if sentence.upper:  # all-caps input: the translation in capitals, but URLs and e-mail addresses
            text, pieces = _outside_links(text, str.upper), [_outside_links(p, str.upper) for p in pieces]
        source = self.source_tokens(sentence) if sentence.align_source else []
        if sentence.shouted and attention is not None and len(attention):
            found = target_ranges(text, pieces, sentence.align_source, source, attention, sentence.shouted)
            for lo, hi in sorted((r for r in found if r), reverse=True):  # from the right: offsets hold
                text = text[:lo] + text[lo:hi].upper() + text[hi:]
        if sentence.brackets:
            text = put_back(text, pieces, sentence.align_source, source, attention, sentence.brackets)
        return SentenceOutput(sentence.before + text + sentence.after, pieces, ids, attention)

    @staticmethod
    def _show(piece: str, items: dict[str, str]) -> str:
        return items.get(piece, piece) if items else piece


def join(text: str, sentences: list[SourceSentence], outputs: list[str]) -> str:
    """The translations in place of their sentences; the text's own whitespace (spaces, line
    breaks, blank lines, leading and trailing) stays where it was."""
    parts, cursor = [], 0
    for sentence, output in zip(sentences, outputs):
        parts.append(text[cursor: sentence.start])
        parts.append(output)
        cursor = sentence.end
    parts.append(text[cursor:])
    return "".join(parts)


@dataclass
class TextTranslation:
    text: str
    sentences: list[SourceSentence]
    outputs: list[list[SentenceOutput]]  # per sentence, its n-best


def translate_texts(engine, processor: TextProcessor, texts: list[str], options,
                    max_batch: int = 64, progress: str | None = None) -> list[TextTranslation]:
    """Translate whole texts through the plain-loop driver (evaluation, benches, the CLI); the
    server does the same around its scheduler."""
    from dataclasses import replace

    from nmt.search import translate_batch

    split = [processor.split(t) for t in texts]
    flat = [s for sentences in split for s in sentences]
    with_attention = replace(options, return_attention=True)
    per_sentence = [with_attention if s.needs_attention and not options.return_attention else options for s in flat]
    hyps = translate_batch(engine, [s.ids for s in flat], per_sentence, max_batch=max_batch,
                           progress=progress)
    results, i = [], 0
    for text, sentences in zip(texts, split):
        outputs = []
        for sentence in sentences:
            outputs.append([o for o, _ in processor.results(sentence, hyps[i])])
            i += 1
        best = [o[0].text if o else "" for o in outputs]
        results.append(TextTranslation(join(text, sentences, best), sentences, outputs))
    return results
