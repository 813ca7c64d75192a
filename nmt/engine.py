"""The engine interface that the one search drives (PyTorch in training, ONNX Runtime in serving).

An engine computes, and owns the layout of its state; the search owns everything else (beam
bookkeeping, which rows live, options). The contract, after CTranslate2's decoder:

- ``encode(src_ids int64 (B, S), src_lengths int64 (B,), shortlist bool (B,) | None) -> State``;
  ``shortlist``: restrict these sentences' output to their vocabulary shortlist (engines without
  one ignore it; the search passes it only when some request asks)
- ``step(prev_ids int64 (N,), state, k) -> (top_log_probs float32 (N, k), top_ids int64 (N, k),
  attention float32 (N, S), new_state)``: one decoder step, returning only the k best tokens of
  each row (sorting the whole vocabulary in numpy costs as much as the step itself).
- ``reorder(state, rows, sentence_rows)``: gather rows (axis 0): tile beams, re-parent them, drop
  finished rows. ``sentence_rows``: for each new row, an old row of the same sentence, where the
  per-sentence entries come from (default ``rows``); the search gives a row its own place when the
  same sentence was there, so re-parented beams leave those entries where they are.
- ``merge(states)``: the rows of several states together (admitting requests mid-flight).
- ``trim(state)``: drop what no live row needs any more (source positions of departed long sentences).
- ``prepare(state)``: the state ready for `step`. An engine may defer copies until then: the
  search calls it before every step, and `reorder`, `trim` and `merge` may return deferred states.
- ``source_width(state)``: columns of the attention a step returns.

A State is opaque to the search. `RecurrentState` implements all but encode and step for the RNN engines,
whose state is a dict of numpy arrays with the row on axis 0; an engine whose state grows per step
(a Transformer's key/value cache) would implement them its own way and plug into the same search.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

State = dict[str, np.ndarray]


class Engine(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray,
               shortlist: np.ndarray | None = None) -> State: ...

    def step(self, prev_ids: np.ndarray, state: State, k: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, State]: ...

    def reorder(self, state: State, rows: np.ndarray, decoder_only: bool = False) -> State: ...

    def merge(self, states: list[State]) -> State: ...

    def trim(self, state: State) -> State: ...

    def source_width(self, state: State) -> int: ...

    def prepare(self, state: State) -> State: ...


class RecurrentState:
    """State layout of the attention RNN engines: fixed-size decoder entries per row, plus
    source-side entries (`SOURCE_KEYS`: encoder memory, projected keys, mask) with the source
    position on axis 1, padded with zeros (mask False: no attention) when rows are merged, and
    optionally `vocab` (rows, target vocabulary) bool, the row's shortlist. Both are per sentence:
    re-parenting beams within their requests leaves them where they are (the same arrays).

    The large per-sentence arrays (memory, keys, vocab: megabytes with beam search) are gathered
    lazily. When rows leave, `reorder` and `trim` only record which rows and columns remain
    (`ROWS`, and the mask's own width); the copy is made once, by `prepare` before the next step,
    or by `merge` straight into the merged arrays when requests join first, which in a busy
    server is the usual case. Copying them at every layout change cost a fifth of a beam step.

    Memory and keys live in buffers with spare rows (`_allocate`): as long as the source width
    stays, rows that keep their place are not copied at all. Only the rows that move are written
    (a departed row's place taken by another, a request's beams growing at the end), and joining
    rows go into the spare rows. Continuous batching changes the layout at almost every step; a
    whole copy each time cost a beam-5 sentence several times its own encoding (bench/batching.py).
    So these methods consume the state they are given: its arrays may be overwritten."""

    SOURCE_KEYS = ("memory", "keys", "mask")
    SENTENCE_KEYS = SOURCE_KEYS + ("vocab",)
    LAZY_KEYS = ("memory", "keys", "vocab")  # the mask is small and gathered at once
    ROWS = "_rows"  # deferred: row i of the lazy entries is row ROWS[i] of the stored arrays

    def reorder(self, state: State, rows: np.ndarray, sentence_rows: np.ndarray | None = None) -> State:
        sentence_rows = rows if sentence_rows is None else sentence_rows
        out = {n: v[rows] for n, v in state.items() if n not in self.SENTENCE_KEYS and n != self.ROWS}
        if np.array_equal(sentence_rows, np.arange(len(state["mask"]))):  # every sentence where it was
            out.update({n: v for n, v in state.items() if n in self.SENTENCE_KEYS or n == self.ROWS})
            return out
        out["mask"] = state["mask"][sentence_rows]
        lazy = {n: v for n, v in state.items() if n in self.LAZY_KEYS}
        if lazy:
            out.update(lazy)
            out[self.ROWS] = state[self.ROWS][sentence_rows] if self.ROWS in state else np.asarray(sentence_rows)
        return out

    def source_width(self, state: State) -> int:
        return int(state["mask"].shape[1]) if state else 0

    def prepare(self, state: State) -> State:
        rows = state.get(self.ROWS)
        width = self.source_width(state)
        if rows is None and all(state[n].shape[1] == width for n in ("memory", "keys") if n in state):
            return state
        out = {n: v for n, v in state.items() if n not in self.LAZY_KEYS and n != self.ROWS}
        out["mask"] = np.ascontiguousarray(state["mask"])  # a view after `trim`
        for name in self.LAZY_KEYS:
            if name in state:
                value = state[name]
                if name in self.SOURCE_KEYS:
                    out[name] = self._gathered(value, rows, width)
                else:
                    out[name] = value if rows is None else value[rows]
        return out

    def _gathered(self, value: np.ndarray, rows: np.ndarray | None, width: int) -> np.ndarray:
        """value[rows, :width], contiguous, in place where it can be (`_in_place`), else a copy
        into a new buffer with spare rows."""
        if value.shape[1] == width:
            moved = _in_place(value, rows)
            if moved is not None:
                return moved
        out = _allocate(len(value) if rows is None else len(rows), (width,) + value.shape[2:], value.dtype)
        out[...] = value[:, :width] if rows is None else value[rows, :width]
        return out

    def merge(self, states: list[State]) -> State:
        states = [s for s in states if s and len(s["mask"])]
        if not states:
            return {}
        if len(states) == 1:
            return states[0]
        width = max(self.source_width(s) for s in states)
        sizes = [len(s["mask"]) for s in states]
        names = dict.fromkeys(n for s in states for n in s if n != self.ROWS)
        merged: State = {}
        for name in names:
            like = next(s[name] for s in states if name in s)
            tail = (width,) + like.shape[2:] if name in self.SOURCE_KEYS else like.shape[1:]
            first = None  # the first state's rows, in place in a buffer with room for the others
            if name in ("memory", "keys") and self.source_width(states[0]) == width == like.shape[1]:
                first = _in_place(states[0][name], states[0].get(self.ROWS), room=sum(sizes[1:]))
            if first is not None:
                merged[name] = first.base[:sum(sizes)]
                start, rest = sizes[0], zip(states[1:], sizes[1:])
            else:
                merged[name] = _allocate(sum(sizes), tail, like.dtype) if name in self.SOURCE_KEYS \
                    else np.empty((sum(sizes),) + tail, like.dtype)
                start, rest = 0, zip(states, sizes)
            for s, n in rest:
                self._fill(merged[name][start:start + n], s, name)
                start += n
        return merged

    def _fill(self, out: np.ndarray, state: State, name: str) -> None:
        """Write `state`'s rows of entry `name` into `out` (its rows of the merged array): one
        copy, deferred rows gathered on the way, source positions beyond the state's own width
        zeroed (mask False: no attention there)."""
        if name not in state:  # only "vocab": a state without shortlists may produce every token
            out[...] = True
            return
        value, rows = state[name], (state.get(self.ROWS) if name in self.LAZY_KEYS else None)
        if name in self.SOURCE_KEYS:
            own = self.source_width(state)
            if own < out.shape[1]:
                out[:, own:] = 0
                out = out[:, :own]
            value = value[:, :own] if value.shape[1] != own else value
        if rows is None:
            out[...] = value
        elif out.flags.c_contiguous and value.flags.c_contiguous:
            np.take(value, rows, axis=0, out=out, mode="clip")  # "clip": no buffering; rows are valid
        else:
            out[...] = value[rows]

    def trim(self, state: State) -> State:
        """Narrow the mask to the columns a live row uses; the lazy entries follow in `prepare`."""
        if not state:
            return state
        used = state["mask"].any(axis=0)
        width = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
        if width == state["mask"].shape[1]:
            return state
        return {**state, "mask": state["mask"][:, :width]}


def _allocate(rows: int, tail: tuple, dtype) -> np.ndarray:
    """An array of `rows` rows that is the leading part of a buffer with spare rows after it
    (for rows that join or grow later): half as many again, at least 32."""
    return np.empty((rows + max(32, rows // 2),) + tail, dtype)[:rows]


def _in_place(value: np.ndarray, rows: np.ndarray | None, room: int = 0) -> np.ndarray | None:
    """value[rows] made in value's own buffer (see `_allocate`), leaving `room` spare rows after
    it, by writing only the rows that move; None when value has no such buffer or too few spare
    rows. The rows that moved are read before any is written, so sources and places may overlap."""
    base = value.base
    if not (isinstance(base, np.ndarray) and base.base is None and base.shape[1:] == value.shape[1:]
            and base.ctypes.data == value.ctypes.data and value.flags.c_contiguous):
        return None
    n = len(value) if rows is None else len(rows)
    if len(base) < n + room:
        return None
    if rows is not None:
        moved = np.flatnonzero(rows != np.arange(n))
        if len(moved):
            base[moved] = value[rows[moved]]
    return base[:n]
