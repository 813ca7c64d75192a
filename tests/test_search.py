"""The one search: greedy, beam, n-best, lengths, attention, and requests joining mid-flight."""

import itertools

import numpy as np
import pytest

from nmt.search import (BatchSearch, SearchOptions, SearchRequest, encoding_groups, length_penalty,
                        translate_batch)
from tests.tiny import SourceEngine, TinyEngine


def reference_greedy(engine, src, max_length):
    """Plain argmax decoding, written independently of BatchSearch."""
    ids = np.array([src]); state = engine.encode(ids, np.array([len(src)]))
    prev, out, total = np.array([engine.bos_id]), [], 0.0
    for _ in range(max_length):
        lp, tok, _, state = engine.step(prev, state, 1)
        total += float(lp[0, 0])
        if tok[0, 0] == engine.eos_id:
            break
        out.append(int(tok[0, 0])); prev = tok[:, 0]
    return out, total


def exhaustive(engine, max_length, alpha):
    """Every hypothesis the search can produce, scored the way the search scores them."""
    results = []
    for n in range(max_length + 1):
        for seq in itertools.product([1, 2], repeat=n):
            lp = sum(engine.log_probs(seq[:i])[seq[i]] for i in range(n))
            if n < max_length:  # ends with EOS
                lp += engine.log_probs(seq)[engine.eos_id]
                length = n + 1
            else:  # reached the maximum length
                length = n
            results.append((list(seq), lp / length_penalty(length, alpha)))
    return sorted(results, key=lambda r: -r[1])


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_is_greedy(seed):
    engine = TinyEngine(seed)
    tokens, log_prob = reference_greedy(engine, [5, 6, 7], 6)
    hyp = translate_batch(engine, [[5, 6, 7]], SearchOptions(beam_size=1, max_length=6))[0][0]
    assert hyp.token_ids == tokens
    assert hyp.log_prob == pytest.approx(log_prob, abs=1e-5)


@pytest.mark.parametrize("seed,alpha", [(0, 0.0), (1, 1.0), (2, 0.6), (3, 2.0)])
def test_wide_beam_equals_exhaustive_search(seed, alpha):
    engine, max_length = TinyEngine(seed), 4
    expected = exhaustive(engine, max_length, alpha)  # 31 hypotheses
    options = SearchOptions(beam_size=64, num_hypotheses=len(expected), max_length=max_length,
                            length_penalty=alpha)
    got = translate_batch(engine, [[9, 9]], options)[0]
    assert [h.token_ids for h in got] == [seq for seq, _ in expected]
    assert [h.score for h in got] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_nbest_is_sorted_and_distinct():
    got = translate_batch(TinyEngine(7), [[1, 2, 3]], SearchOptions(beam_size=5, num_hypotheses=5, max_length=8))[0]
    assert len(got) == 5
    scores = [h.score for h in got]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(h.token_ids) for h in got}) == 5


def test_min_and_max_length():
    engine = TinyEngine(3)
    for beam in (1, 4):
        long = translate_batch(engine, [[1]], SearchOptions(beam_size=beam, min_length=5, max_length=9))[0][0]
        assert 5 <= len(long.token_ids) <= 9
        short = translate_batch(engine, [[1]], SearchOptions(beam_size=beam, max_length=2))[0][0]
        assert len(short.token_ids) <= 2


def test_attention_rows_sum_to_one_and_match_tokens():
    srcs = [[4, 5, 6, 7, 8], [4, 5]]
    for hyps, src in zip(translate_batch(TinyEngine(1), srcs, SearchOptions(beam_size=3, num_hypotheses=2,
                                                    max_length=6, return_attention=True)), srcs):
        for h in hyps:
            assert h.attention.shape == (len(h.token_ids), len(src))
            np.testing.assert_allclose(h.attention.sum(1), 1.0, atol=1e-6)


def test_empty_source_gives_no_hypothesis_and_no_model_call():
    assert translate_batch(TinyEngine(0), [[], [4]], SearchOptions())[0] == []


def run_continuous(engine, arrivals):
    """Admit request i before step arrivals[i]; return each request's best hypothesis tokens."""
    search = BatchSearch(engine)
    requests = {}
    step = 0
    while len(requests) < len(arrivals) or len(search):
        new = [i for i, at in enumerate(arrivals) if at == step]
        if new:
            batch = [SearchRequest([4, 5, 6], SearchOptions(beam_size=(i % 3) + 1, max_length=5 + i,
                                                            return_attention=i % 2 == 0)) for i in new]
            search.admit(batch)
            requests.update(zip(new, batch))
        search.advance()
        step += 1
    return [[h.token_ids for h in requests[i].hypotheses] for i in range(len(arrivals))]


def test_results_do_not_depend_on_company_or_arrival_time():
    engine = TinyEngine(4)
    together = run_continuous(engine, [0, 0, 1, 3, 3, 4])
    for i, got in enumerate(together):
        # the same request admitted at step 0 with different company
        assert got == run_continuous(engine, [0] * (i + 1))[i]


@pytest.mark.parametrize("seed", range(4))
def test_every_row_reads_its_own_source_however_rows_move(seed):
    """Requests of different sources and beams join and leave at different steps; rows are
    re-parented, filled into the places of departed requests and moved in the engine's buffers:
    each request still decodes exactly what it decodes alone."""
    rng = np.random.default_rng(seed)
    engine = SourceEngine(seed)
    sources = [list(rng.integers(4, 40, rng.integers(1, 8))) for _ in range(14)]
    options = [SearchOptions(beam_size=int(rng.integers(1, 5)), max_length=int(rng.integers(2, 9)),
                             num_hypotheses=1) for _ in sources]
    arrivals = sorted(rng.integers(0, 10, len(sources)).tolist())
    search, requests, step = BatchSearch(engine), [], 0
    while len(requests) < len(sources) or len(search):
        new = [SearchRequest(sources[i], options[i]) for i, at in enumerate(arrivals) if at == step]
        search.admit(new)
        requests += new
        search.advance()
        step += 1
    for request, src, opts in zip(requests, sources, options):
        [alone] = translate_batch(engine, [src], opts)
        assert [h.token_ids for h in request.hypotheses] == [h.token_ids for h in alone]
        assert [h.score for h in request.hypotheses] == pytest.approx([h.score for h in alone])


def test_many_sentences_of_mixed_lengths_are_encoded_in_sorted_groups_and_decode_as_alone():
    rng = np.random.default_rng(3)
    mixed = [SearchRequest(list(rng.integers(4, 40, n)), SearchOptions(beam_size=2, max_length=6))
             for n in rng.integers(1, 30, 24)]
    groups = encoding_groups(mixed)
    assert len(groups) == 3 and sorted(map(id, sum(groups, []))) == sorted(map(id, mixed))
    assert all(a.src_length <= b.src_length for a, b in zip(sum(groups, [])[:-1], sum(groups, [])[1:]))
    similar = [SearchRequest([5] * 12) for _ in range(24)]  # nothing to gain: one call
    assert encoding_groups(similar) == [similar] and encoding_groups(mixed[:10]) == [mixed[:10]]
    engine = SourceEngine(3)
    search = BatchSearch(engine)
    search.admit(mixed)
    while len(search):
        search.advance()
    for request in mixed:
        [alone] = translate_batch(engine, [request.src_ids], request.options)
        assert [h.token_ids for h in request.hypotheses] == [h.token_ids for h in alone]


def test_removed_request_frees_its_rows():
    engine = TinyEngine(2)
    search = BatchSearch(engine)
    a = SearchRequest([4, 5], SearchOptions(beam_size=4, max_length=50))
    b = SearchRequest([4, 5], SearchOptions(beam_size=2, max_length=50))
    search.admit([a, b])
    search.advance()
    assert len(search) == 4  # two live continuations each (the tiny vocabulary has two words)
    search.remove([a])
    assert len(search) == 2 and search.active == [b]


def test_options_are_validated():
    with pytest.raises(ValueError, match="num_hypotheses"):
        SearchOptions(beam_size=2, num_hypotheses=3)
    with pytest.raises(ValueError, match="beam_size"):
        SearchOptions(beam_size=0)


def test_batch_can_empty_and_refill_with_a_shorter_source():
    engine = TinyEngine(5)
    search = BatchSearch(engine)
    for width in (5, 1, 3):
        request = SearchRequest([4] * width, SearchOptions(max_length=4, return_attention=True))
        search.admit([request])
        while len(search):
            search.advance()
        assert request.done and request.hypotheses[0].attention.shape[1] == width


def reference_beam(engine, K, max_length, alpha, n_best):
    """Beam search for one sentence written plainly: every live hypothesis proposes its K+1 best
    tokens, candidates are ranked by total log-prob, an end-of-sentence among the top K finishes a
    hypothesis, the K best others live on; done with K finished or nothing alive."""
    alive, finished = [((), 0.0)], []
    for _ in range(max_length):
        candidates = []
        for tokens, lp in alive:
            lps = engine.log_probs(tokens)
            for t in np.argsort(-lps, kind="stable")[: K + 1]:
                candidates.append((lp + float(lps[t]), tokens, int(t)))
        candidates.sort(key=lambda c: -c[0])
        alive = []
        for rank, (score, tokens, t) in enumerate(candidates):
            if t == engine.eos_id:
                if rank < K:
                    finished.append((list(tokens), score / length_penalty(len(tokens) + 1, alpha)))
            elif len(alive) < K:
                if len(tokens) + 1 >= max_length:
                    finished.append((list(tokens) + [t], score / length_penalty(len(tokens) + 1, alpha)))
                else:
                    alive.append((tokens + (t,), score))
        if len(finished) >= K or not alive:
            break
    return sorted(finished, key=lambda f: -f[1])[:n_best]


@pytest.mark.parametrize("seed,beam,alpha", [(0, 2, 1.0), (1, 2, 0.0), (2, 3, 0.6), (3, 2, 2.0), (6, 3, 1.0)])
def test_beam_smaller_than_the_space_prunes_and_stops_like_the_reference(seed, beam, alpha):
    engine, max_length = TinyEngine(seed), 9  # 2^9 sequences, a beam of 2 or 3
    expected = reference_beam(engine, beam, max_length, alpha, beam)
    options = SearchOptions(beam_size=beam, num_hypotheses=beam, max_length=max_length, length_penalty=alpha)
    for company in ([], [[7, 7, 7]] * 3):  # alone and sharing steps with others
        got = translate_batch(engine, [[9, 9]] + company, [options] * (1 + len(company)))[0]
        assert [h.token_ids for h in got] == [tokens for tokens, _ in expected]
        assert [h.score for h in got] == pytest.approx([s for _, s in expected], abs=1e-5)


class AttentionEngine(TinyEngine):
    """TinyEngine whose attention is known: a seeded distribution over the source per prefix."""

    def attention_for(self, prefix, width):
        code = 0
        for t in prefix:
            code = code * 5 + t + 1
        weights = np.random.default_rng([self.seed, code, 99]).random(width) + 0.01
        return weights / weights.sum()

    def step(self, prev_ids, state, k):
        lp, top, _, new = super().step(prev_ids, state, k)
        width = state["mask"].shape[1]
        attention = np.zeros((len(prev_ids), width), np.float32)
        for row, code in enumerate(new["code"].tolist()):
            prefix = _decode_code(code)
            length = int(state["mask"][row].sum())
            attention[row, :length] = self.attention_for(prefix, length)
        return lp, top, attention, new


def _decode_code(code):
    prefix = []
    while code:
        code, digit = divmod(code - 1, 5)
        prefix.append(digit)
    return tuple(reversed(prefix))


@pytest.mark.parametrize("beam", [1, 3])
def test_attention_rows_are_those_of_the_steps_that_produced_each_token(beam):
    engine = AttentionEngine(3)
    sources = [[4, 5, 6, 7], [4, 5], [8, 8, 8, 8, 8, 8]]
    options = SearchOptions(beam_size=beam, num_hypotheses=beam, max_length=7, return_attention=True)
    for hyps, src in zip(translate_batch(engine, sources, options), sources):
        for h in hyps:
            assert h.attention.shape == (len(h.token_ids), len(src))
            for j in range(len(h.token_ids)):  # row j: the step that chose token j, after tokens[:j]
                expected = engine.attention_for(tuple(h.token_ids[:j]), len(src))
                np.testing.assert_allclose(h.attention[j], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_shortcut_gives_what_the_general_ranking_gives(seed):
    """Mixed lengths, min/max lengths, attention, coverage penalties and requests joining
    mid-flight: the greedy shortcut and the general beam bookkeeping produce the same hypotheses,
    scores and attention."""
    rng = np.random.default_rng(seed)
    sources = [list(rng.integers(4, 40, rng.integers(1, 9))) for _ in range(12)]
    options = [SearchOptions(min_length=int(rng.integers(0, 4)), max_length=int(rng.integers(4, 12)),
                             return_attention=bool(i % 2), length_penalty=float(rng.choice([0.0, 1.0])),
                             coverage_penalty=float(rng.choice([0.0, 0.0, 0.4])))
               for i in range(12)]
    results = []
    for fast in (True, False):
        search = BatchSearch(TinyEngine(seed))
        search.fast_greedy = fast
        requests = [SearchRequest(s, o) for s, o in zip(sources, options)]
        search.admit(requests[:5])
        waiting, steps = requests[5:], 0
        while len(search) or waiting:
            if steps % 2 == 0 and waiting:
                search.admit(waiting[:3])
                waiting = waiting[3:]
            search.advance()
            steps += 1
        results.append(requests)
    for fast, general in zip(*results):
        assert [h.token_ids for h in fast.hypotheses] == [h.token_ids for h in general.hypotheses]
        assert [h.score for h in fast.hypotheses] == pytest.approx([h.score for h in general.hypotheses], abs=1e-9)
        for a, b in zip(fast.hypotheses, general.hypotheses):
            assert (a.attention is None) == (b.attention is None)
            if a.attention is not None:
                assert np.allclose(a.attention, b.attention)
