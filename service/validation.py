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
    alpha = options.length_penalty or defaults.length_penalty
    if not math.isfinite(alpha) or not 0 <= alpha <= 10:
        bad.append(("options.length_penalty", f"{alpha} must be between 0 and 10"))
    max_out = options.max_output_tokens or defaults.max_output_tokens
    if max_out > limits.max_output_tokens:
        bad.append(("options.max_output_tokens",
                    f"{max_out} exceeds the maximum of {limits.max_output_tokens}"))
    if options.min_output_tokens > max_out:
        bad.append(("options.min_output_tokens",
                    f"{options.min_output_tokens} exceeds max_output_tokens ({max_out})"))
    if bad:
        raise InvalidArgument(bad)
    return SearchOptions(beam_size=beam, num_hypotheses=n_best, length_penalty=alpha,
                         min_length=options.min_output_tokens, max_length=max_out,
                         return_attention=options.return_attention)


def check_texts(texts, limits: Limits) -> None:
    if not texts:
        raise InvalidArgument([("texts", "at least one text is required")])
    if len(texts) > limits.max_texts:
        raise InvalidArgument([("texts", f"{len(texts)} texts exceed the maximum of {limits.max_texts} per request")])
    bad = [(f"texts[{i}]", f"{len(t)} characters exceed the maximum of {limits.max_chars}")
           for i, t in enumerate(texts) if len(t) > limits.max_chars]
    if bad:
        raise InvalidArgument(bad)


def check_tokens(token_ids: list[list[int]], limits: Limits) -> None:
    bad = [(f"texts[{i}]", f"{len(ids)} subword tokens exceed the maximum of {limits.max_tokens}")
           for i, ids in enumerate(token_ids) if len(ids) > limits.max_tokens]
    if bad:
        raise InvalidArgument(bad)
