"""Export-time checks: the ONNX engine translates like the PyTorch engine, outputs do not depend on
the batch a sentence is in, and (for quantized bundles) what BLEU the bundle scores."""

from __future__ import annotations

import random

import numpy as np

from nmt.search import Hypothesis, SearchOptions, translate_batch


def parity(reference, candidate, src_ids: list[list[int]], max_length: int, batch: int = 64) -> dict:
    """Greedy tokens of two engines over the same sentences: share identical, largest log-prob gap."""
    options = SearchOptions(max_length=max_length)
    a = translate_batch(reference, src_ids, options, max_batch=batch, progress="PyTorch")
    b = translate_batch(candidate, src_ids, options, max_batch=batch, progress="ONNX Runtime")
    same = [x[0].token_ids == y[0].token_ids for x, y in zip(a, b) if x and y]
    gaps = [abs(x[0].log_prob - y[0].log_prob) for x, y in zip(a, b) if x and y and x[0].token_ids == y[0].token_ids]
    return {"sentences": len(same), "identical": float(np.mean(same)) if same else 1.0,
            "max_log_prob_diff": float(max(gaps, default=0.0)),
            "mean_log_prob_diff": float(np.mean(gaps)) if gaps else 0.0}


def batch_invariance(engine, src_ids: list[list[int]], max_length: int, batch: int = 64,
                     seed: int = 0) -> dict:
    """Share of sentences whose greedy output is identical alone and inside a mixed batch
    (random company, so source lengths and padding differ)."""
    options = SearchOptions(max_length=max_length)
    alone = translate_batch(engine, src_ids, options, max_batch=1, progress="one at a time")
    order = list(range(len(src_ids)))
    random.Random(seed).shuffle(order)
    mixed: list[list[Hypothesis]] = [[] for _ in src_ids]
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        # translate_batch sorts by length; a shuffled chunk of one static batch mixes lengths
        for i, hyps in zip(chunk, translate_batch(engine, [src_ids[i] for i in chunk], options,
                                                  max_batch=len(chunk))):
            mixed[i] = hyps
    same = [x[0].token_ids == y[0].token_ids for x, y in zip(alone, mixed) if x and y]
    return {"sentences": len(same), "identical": float(np.mean(same)) if same else 1.0, "batch": batch}


def made_up_sentences(vocab_size: int, count: int = 200, seed: int = 0) -> list[list[int]]:
    """Random subword sequences, when no test set is at hand: enough to compare two engines."""
    rng = random.Random(seed)
    return [[rng.randrange(4, vocab_size) for _ in range(rng.randint(1, 30))] for _ in range(count)]
