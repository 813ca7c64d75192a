"""Request validation: every limit a client can hit, each violation naming the field and the limit.
Violations become INVALID_ARGUMENT with a google.rpc.BadRequest detail."""

from __future__ import annotations

import math

from nmt.search import SearchOptions
from service.config import Defaults, Limits


class InvalidArgument(ValueError):
    def __init__(self, violations: list[tuple[str, str]]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{field}: {text}" for field, text in violations))


def search_options(options, defaults: Defaults, limits: Limits) -> SearchOptions:
    """DecodingOptions (zero = server default) -> SearchOptions, or InvalidArgument."""
    bad: list[tuple[str, str]] = []
    beam = options.beam_size or defaults.beam_size
    if beam > limits.max_beam:
        bad.append(("options.beam_size", f"{beam} exceeds the maximum of {limits.max_beam}"))
    n_best = options.num_hypotheses or 1
    if n_best > beam:
        bad.append(("options.num_hypotheses", f"{n_best} exceeds beam_size ({beam}); ask for a wider beam"))
    alpha = options.length_penalty if options.HasField("length_penalty") else defaults.length_penalty
    if not math.isfinite(alpha) or not 0 <= alpha <= 10:
        bad.append(("options.length_penalty", f"{alpha} must be between 0 and 10"))
    max_out = options.max_output_tokens or defaults.max_output_tokens
    if max_out > limits.max_output_tokens:
        bad.append(("options.max_output_tokens",
                    f"{max_out} exceeds the maximum of {limits.max_output_tokens}"))
    if options.min_output_tokens > max_out:
        bad.append(("options.min_output_tokens",
                    f"{options.min_output_tokens} exceeds max_output_tokens ({max_out})"))
    given = lambda name: getattr(options, name) if options.HasField(name) else getattr(defaults, name)  # noqa: E731
    factor, ngram = given("max_length_factor"), given("no_repeat_ngram_size")
    repetition, coverage = given("repetition_penalty"), given("coverage_penalty")
    if not math.isfinite(factor) or not 0 <= factor <= 100:
        bad.append(("options.max_length_factor", f"{factor} must be between 0 (off) and 100"))
    if ngram > 20:
        bad.append(("options.no_repeat_ngram_size", f"{ngram} exceeds the maximum of 20"))
    if not math.isfinite(repetition) or not 1 <= repetition <= 10:
        bad.append(("options.repetition_penalty", f"{repetition} must be between 1 (off) and 10"))
    if not math.isfinite(coverage) or not 0 <= coverage <= 10:
        bad.append(("options.coverage_penalty", f"{coverage} must be between 0 (off) and 10"))
    if bad:
        raise InvalidArgument(bad)
    return SearchOptions(beam_size=beam, num_hypotheses=n_best, length_penalty=alpha,
                         min_length=options.min_output_tokens, max_length=max_out,
                         return_attention=options.return_attention, max_length_factor=factor,
                         no_repeat_ngram_size=ngram, repetition_penalty=repetition,
                         coverage_penalty=coverage, use_shortlist=given("use_shortlist"))


def check_texts(texts, limits: Limits) -> None:
    if not texts:
        raise InvalidArgument([("texts", "at least one text is required")])
    if len(texts) > limits.max_texts:
        raise InvalidArgument([("texts", f"{len(texts)} texts exceed the maximum of {limits.max_texts} per request")])
    bad = [(f"texts[{i}]", f"{len(t)} characters exceed the maximum of {limits.max_chars}")
           for i, t in enumerate(texts) if len(t) > limits.max_chars]
    if bad:
        raise InvalidArgument(bad)


def check_sentences(sentences: list[list], limits: Limits) -> None:
    """Per text: how many sentences; per sentence: how many subword tokens; per request: sentences."""
    bad = []
    for i, text in enumerate(sentences):
        if len(text) > limits.max_sentences:
            bad.append((f"texts[{i}]", f"{len(text)} sentences exceed the maximum of {limits.max_sentences} per text"))
        for j, s in enumerate(text):
            if len(s.ids) > limits.max_tokens:
                bad.append((f"texts[{i}]", f"sentence {j + 1} (characters {s.start}-{s.end}) has {len(s.ids)} "
                                           f"subword tokens, more than the maximum of {limits.max_tokens}"))
    total = sum(len(t) for t in sentences)
    if total > limits.max_request_sentences:
        bad.append(("texts", f"{total} sentences exceed the maximum of {limits.max_request_sentences} "
                             f"per request; send them in several requests"))
    if bad:
        raise InvalidArgument(bad[:20])
