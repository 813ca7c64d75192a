"""From the text a person typed to model rows and back: sentence splitting, the casing rule,
protected items, tokenization; then placeholder repair, detokenization, restoring protected items
and joining the sentences with the text's own whitespace. Torch-free: the server, the evaluation
CLI and the robustness bench all go through here, so what is measured is what is served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from nmt.protect import PLACEHOLDERS, protect, repair, restore
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


@dataclass
class SentenceOutput:
    text: str
    tokens: list[str]  # output pieces, protected items shown as they are
    token_ids: list[int]
    attention: np.ndarray | None  # (len(tokens), len(source tokens))


def is_all_caps(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


class TextProcessor:
    """One model's way of reading texts and writing translations."""

    def __init__(self, source: Tokenizer, target: Tokenizer, language: str,
                 known_words: frozenset[str] | None = None, caps_rule: bool = True) -> None:
        self.source, self.target, self.language = source, target, language
        self.known_words = known_words
        self.caps_rule = caps_rule
        self._src_placeholders = {source.sp.piece_to_id(p): p for p in PLACEHOLDERS}  # id -> piece
        self._tgt_placeholders = {p: target.sp.piece_to_id(p) for p in PLACEHOLDERS}  # piece -> id
        unk = source.sp.unk_id()
        if unk in self._src_placeholders or unk in self._tgt_placeholders.values():
            self._src_placeholders, self._tgt_placeholders = {}, {}  # an older vocabulary: no protection
        space = target.sp.piece_to_id("▁")
        self._space_id = None if space == target.sp.unk_id() else space
        self._byte_ids = {i for i in range(len(source)) if source.sp.is_byte(i)}

    @property
    def protects(self) -> bool:
        return bool(self._src_placeholders)

    def _can_encode(self, word: str) -> bool:
        return not any(i in self._byte_ids or i == self.source.sp.unk_id()
                       for i in self.source.sp.encode(word))

    def split(self, text: str) -> list[SourceSentence]:
        """The sentences of `text`, ready for the model."""
        return [self.prepare(text[a:b], a, b) for a, b in sentence_spans(text, self.language)]

    def prepare(self, sentence: str, start: int = 0, end: int | None = None) -> SourceSentence:
        model_text = normalize(sentence)
        upper = self.caps_rule and is_all_caps(model_text)
        if upper:
            model_text = model_text.lower()
        items: dict[str, str] = {}
        if self.protects:
            protected = protect(model_text, self.known_words, self._can_encode)
            model_text, items = protected.text, protected.items
        end = len(sentence) if end is None else end
        return SourceSentence(start, end, model_text, self.source.encode(model_text), items, upper)

    def source_tokens(self, sentence: SourceSentence) -> list[str]:
        """The source as the model read it, protected items shown as they are."""
        return [self._show(p, sentence.items) for p in self.source.pieces(sentence.ids)]

    def finish(self, sentence: SourceSentence, hyp: Hypothesis) -> SentenceOutput:
        ids, attention = hyp.token_ids, hyp.attention
        if sentence.items:
            wanted = {self._tgt_placeholders[p]: i for i, t in enumerate(sentence.ids)
                      if (p := self._src_placeholders.get(t)) is not None}
            src_pieces = self.source.pieces(sentence.ids)
            words = [p not in ("▁", "") and t not in self._src_placeholders
                     for p, t in zip(src_pieces, sentence.ids)]
            starts = [p.startswith("▁") for p in self.target.pieces(ids)]
            ids, attention = repair(ids, attention, wanted, set(self._tgt_placeholders.values()),
                                    words, starts, self._space_id)
        text = self.target.decode(ids)
        text = re.sub(r"(?<=\S) {2,}(?=\S)", " ", text).strip(" ")  # a stray "▁" gives two spaces
        if sentence.items:
            text = restore(text, sentence.items)
        pieces = [self._show(p, sentence.items) for p in self.target.pieces(ids)]
        if sentence.upper:
            text, pieces = text.upper(), [p.upper() for p in pieces]
        return SentenceOutput(text, pieces, ids, attention)

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
    # placeholder repair needs the attention of sentences that have protected items
    with_attention = replace(options, return_attention=True)
    per_sentence = [with_attention if s.items and not options.return_attention else options for s in flat]
    hyps = translate_batch(engine, [s.ids for s in flat], per_sentence, max_batch=max_batch,
                           progress=progress)
    results, i = [], 0
    for text, sentences in zip(texts, split):
        outputs = []
        for sentence in sentences:
            outputs.append([processor.finish(sentence, h) for h in hyps[i]])
            i += 1
        best = [o[0].text if o else "" for o in outputs]
        results.append(TextTranslation(join(text, sentences, best), sentences, outputs))
    return results
