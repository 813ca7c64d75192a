"""Decoding that cannot run away: each guard stops a runaway on an engine built to loop, and the
coverage penalty uses the attention to prefer the hypothesis that translates every source word."""

import numpy as np
import pytest

from nmt.search import SearchOptions, translate_batch
from tests.tiny import TableEngine

DOG, BARK, EOS = 5, 6, 0
# After any token "dog" is likeliest, the end of sentence second: greedy says "dog dog dog ...".
LOOPING = {t: {DOG: 0.5, EOS: 0.3, BARK: 0.1} for t in range(10)}


def decode(engine, options, src=(4, 4)):
    [hyps] = translate_batch(engine, [list(src)], options)
    return hyps


def test_without_guards_the_looping_engine_runs_to_the_limit():
    [best] = decode(TableEngine(LOOPING), SearchOptions(max_length=50))
    assert best.token_ids == [DOG] * 50


def test_length_bound_relative_to_the_source():
    options = SearchOptions(max_length=50, max_length_factor=2.0, max_length_constant=3)
    [best] = decode(TableEngine(LOOPING), options, src=(4, 4))
    assert len(best.token_ids) == 2 * 2 + 3
    [best] = decode(TableEngine(LOOPING), options, src=(4,) * 40)
    assert len(best.token_ids) == 50  # never above max_length
    assert options.length_limit(2) == 7 and SearchOptions(max_length=9).length_limit(1000) == 9


@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_stops_the_loop(beam):
    options = SearchOptions(beam_size=beam, max_length=50, no_repeat_ngram_size=1)
    [best, *_] = decode(TableEngine(LOOPING), options)
    assert len(best.token_ids) == len(set(best.token_ids)) < 10
    options = SearchOptions(beam_size=beam, max_length=50, no_repeat_ngram_size=2)
    [best, *_] = decode(TableEngine(LOOPING), options)
    bigrams = list(zip(best.token_ids, best.token_ids[1:]))
    assert len(bigrams) == len(set(bigrams)) and len(best.token_ids) < 50


def test_no_repeat_ngram_is_exact_although_the_engine_returns_only_top_k():
    """The guard bans tokens the engine ranked first; the next best must come from beyond k."""
    engine = TableEngine(LOOPING, vocab=10)
    [best] = decode(engine, SearchOptions(max_length=50, no_repeat_ngram_size=1))
    # Reference: greedy over the full vocabulary with banned tokens removed by hand.
    out, prev = [], engine.bos_id
    while len(out) < 50:
        lp = engine.log_probs(prev)
        lp[out] = -np.inf
        token = int(np.argmax(lp))
        if token == EOS:
            break
        out.append(token)
        prev = token
    assert best.token_ids == out


def test_repetition_penalty_stops_the_loop():
    [best] = decode(TableEngine(LOOPING), SearchOptions(max_length=50, repetition_penalty=2.0))
    # after "dog", log p(dog) * 2 = log 0.25 < log 0.3 = log p(EOS)
    assert best.token_ids == [DOG]


def test_coverage_penalty_prefers_the_hypothesis_that_attends_every_source_word():
    A, B = 5, 6
    table = {1: {A: 0.9, EOS: 1e-6}, A: {EOS: 0.6, B: 0.35}, B: {EOS: 0.95}}
    # "A" looks only at source word 0; "A B" looks at word 1 when it emits its end of sentence.
    engine = TableEngine(table, attend={1: 0, A: 0, B: 1})
    plain = SearchOptions(beam_size=2, length_penalty=0.0)
    assert decode(engine, plain)[0].token_ids == [A]
    covered = SearchOptions(beam_size=2, length_penalty=0.0, coverage_penalty=0.2)
    hyps = decode(engine, covered)
    assert hyps[0].token_ids == [A, B]
    assert hyps[0].score == pytest.approx(np.log(0.9 * 0.35 * 0.95), abs=1e-5)  # nothing to penalise


def test_guard_options_are_validated():
    for bad in (dict(repetition_penalty=0.5), dict(no_repeat_ngram_size=-1),
                dict(coverage_penalty=-1.0), dict(max_length_factor=-1.0)):
        with pytest.raises(ValueError):
            SearchOptions(**bad)
