"""The RNN engines' state bookkeeping (`nmt.engine.RecurrentState`): rows leaving, beams
re-parented, sentences joining and trimmed source positions give, once prepared for a step,
exactly the arrays that gathering and padding at once would give, however the copies are deferred."""

import numpy as np

from nmt.engine import RecurrentState


def encoded(rng, lengths, vocab=None):
    """What an encoder returns for sentences of these lengths (zero beyond each length)."""
    width = max(lengths)
    mask = np.arange(width)[None, :] < np.array(lengths)[:, None]
    state = {"memory": rng.standard_normal((len(lengths), width, 3)).astype(np.float32) * mask[..., None],
             "keys": rng.standard_normal((len(lengths), width, 2)).astype(np.float32) * mask[..., None],
             "mask": mask, "hidden": rng.standard_normal((len(lengths), 4)).astype(np.float32)}
    if vocab is not None:
        state["vocab"] = rng.random((len(lengths), vocab)) < 0.5
    return state


def eager(state, rows=None, add=None):
    """Reference: gather rows, append rows padded with zeros, trim to the used columns, at once."""
    out = {n: v[rows] for n, v in state.items()} if rows is not None else dict(state)
    if add is not None:
        width = max(out["mask"].shape[1], add["mask"].shape[1])
        if "vocab" in out or "vocab" in add:
            for s in (out, add):
                s.setdefault("vocab", np.ones((len(s["mask"]), (out.get("vocab", add.get("vocab"))).shape[1]), bool))
        pad = lambda v, n: np.pad(v, [(0, 0), (0, width - v.shape[1])] + [(0, 0)] * (v.ndim - 2)) \
            if n in RecurrentState.SOURCE_KEYS else v  # noqa: E731
        out = {n: np.concatenate([pad(out[n], n), pad(add[n], n)]) for n in out}
    used = out["mask"].any(axis=0)
    width = int(np.flatnonzero(used)[-1]) + 1
    return {n: (v[:, :width] if n in RecurrentState.SOURCE_KEYS else v) for n, v in out.items()}


def same(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_deferred_copies_give_the_same_state_as_copying_at_once():
    rng = np.random.default_rng(0)
    engine = RecurrentState()
    for vocab in (None, 7):
        lazy = ref = encoded(rng, [3, 9, 5, 2], vocab)
        for round_ in range(12):
            n = len(ref["mask"])
            if round_ % 3 == 0:  # beams re-parented within their requests: sentence entries stay
                rows = np.arange(n)
                lazy = engine.reorder(lazy, rows, sentence_rows=rows)
            else:  # some rows leave (the longest sentence too, now and then), the rest shuffle
                rows = np.sort(rng.choice(n, size=max(1, n - int(rng.integers(0, 3))), replace=False))
                lazy = engine.trim(engine.reorder(lazy, rows))
            add = None
            if round_ % 2 == 0:  # sentences join, some longer than anything in flight
                add = encoded(rng, rng.integers(1, 12, size=int(rng.integers(1, 4))).tolist(),
                              vocab if round_ % 4 == 0 else None)
                lazy = engine.merge([lazy, add])
            ref = eager(ref, rows, add)
            assert engine.source_width(lazy) == ref["mask"].shape[1]
            if round_ % 3 == 2:  # prepared for a step, as the search does: consumed, then fed back
                lazy = engine.prepare(lazy)
                prepared = lazy
            else:  # still deferred: prepare a copy, and go on deferring
                prepared = engine.prepare({n: v.copy() for n, v in lazy.items()})
            same(prepared, ref)
            assert all(v.flags.c_contiguous for v in prepared.values())


def test_rows_that_keep_their_place_are_not_copied():
    """Joining rows go into the buffer's spare rows and a departed row's place is taken by
    another: memory and keys stay in one buffer, and the rows that did not move are never written."""
    rng = np.random.default_rng(1)
    engine = RecurrentState()
    state = engine.merge([encoded(rng, [5, 4, 5]), encoded(rng, [5, 2])])  # 5 rows, width 5
    buffer = state["memory"].base
    buffer[0] = 7.0  # a row that never moves keeps whatever is in its place
    state = engine.merge([state, encoded(rng, [3])])
    state = engine.prepare(engine.reorder(state, np.array([0, 5, 2, 3, 4])))  # row 1 left; the newcomer takes its place
    assert state["memory"].base is buffer and state["keys"].base is not None
    assert (state["memory"][0] == 7.0).all()
