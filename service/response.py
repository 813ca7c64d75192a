"""Translations as protobuf messages: per sentence its span, tokens, n-best and attention; per text
the sentences joined with the text's own whitespace (and, for clients that draw one alignment per
text, tokens and block-diagonal attention over the whole text)."""

from __future__ import annotations

import numpy as np

from nmt.text import SentenceOutput, join
from service.models import Model
from translation.v1 import translator_pb2 as pb


def _hypothesis(text: str, tokens: list[str], score: float, log_prob: float,
                attention: np.ndarray | None) -> pb.Hypothesis:
    hyp = pb.Hypothesis(text=text, score=score, log_prob=log_prob, tokens=tokens)
    if attention is not None:
        hyp.attention.extend(pb.AttentionRow(weights=row) for row in attention.tolist())
    return hyp


def build_translations(model: Model, texts, sentences, jobs, with_attention: bool) -> list[pb.Translation]:
    """texts[i] was split into sentences[i]; jobs are their finished decodings, in order."""
    jobs = iter(jobs)
    out = []
    for text, text_sentences in zip(texts, sentences):
        per_sentence, messages = [], []
        for sentence in text_sentences:
            job = next(jobs)
            outputs, hyps, seen = [], [], set()
            for o, h in model.text.results(sentence, job.hypotheses):
                if o.text not in seen:  # two segmentations of the same words are one alternative
                    seen.add(o.text)
                    outputs.append(o)
                    hyps.append(h)
            tokens = model.text.source_tokens(sentence)
            per_sentence.append((tokens, outputs, hyps))
            messages.append(pb.Sentence(
                source_start=sentence.start, source_end=sentence.end, source_tokens=tokens,
                hypotheses=[_hypothesis(o.text, o.tokens, h.score, h.log_prob,
                                        o.attention if with_attention else None)
                            for o, h in zip(outputs, hyps)]))
        out.append(_whole_text(text, text_sentences, per_sentence, messages, with_attention))
    return out


def _whole_text(text, text_sentences, per_sentence, messages, with_attention) -> pb.Translation:
    source_tokens = [t for tokens, _, _ in per_sentence for t in tokens]
    if not per_sentence:  # empty or blank text: its whitespace back, no model call
        return pb.Translation(hypotheses=[pb.Hypothesis(text=text)], source_tokens=[], sentences=[])
    n_best = max(len(outputs) for _, outputs, _ in per_sentence)
    hypotheses = []
    for i in range(n_best):
        picks: list[tuple[SentenceOutput, object]] = [
            (outputs[min(i, len(outputs) - 1)], hyps[min(i, len(hyps) - 1)]) if outputs else (None, None)
            for _, outputs, hyps in per_sentence]
        joined = join(text, text_sentences, [o.text if o else "" for o, _ in picks])
        tokens = [t for o, _ in picks if o for t in o.tokens]
        score = sum(h.score for _, h in picks if h)
        log_prob = sum(h.log_prob for _, h in picks if h)
        attention = None
        if with_attention:
            attention = np.zeros((len(tokens), len(source_tokens)), np.float32)
            row = col = 0
            for (src_tokens, _, _), (o, _) in zip(per_sentence, picks):
                if o is not None and o.attention is not None and len(o.attention):
                    attention[row: row + len(o.attention), col: col + o.attention.shape[1]] = o.attention
                row += len(o.tokens) if o else 0
                col += len(src_tokens)
        hypotheses.append(_hypothesis(joined, tokens, score, log_prob, attention))
    return pb.Translation(hypotheses=hypotheses, source_tokens=source_tokens, sentences=messages)
