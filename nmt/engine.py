"""The engine interface that the one search drives (PyTorch in training, ONNX Runtime in serving).

An engine computes, and owns the layout of its state; the search owns everything else (beam
bookkeeping, which rows live, options). The contract, after CTranslate2's decoder:

- ``encode(src_ids int64 (B, S), src_lengths int64 (B,), shortlist bool (B,) | None) -> State``;
  ``shortlist``: restrict these sentences' output to their vocabulary shortlist (engines without
  one ignore it; the search passes it only when some request asks)
- ``step(prev_ids int64 (N,), state, k) -> (top_log_probs float32 (N, k), top_ids int64 (N, k),
  attention float32 (N, S), new_state)``: one decoder step, returning only the k best tokens of
  each row (sorting the whole vocabulary in numpy costs as much as the step itself).
- ``reorder(state, rows, decoder_only)``: gather rows (axis 0): tile beams, re-parent them, drop
  finished rows. ``decoder_only``: the rows' requests are unchanged (only beams were re-parented),
  so per-sentence entries can stay where they are.
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
    server is the usual case. Copying them at every layout change cost a fifth of a beam step."""

    SOURCE_KEYS = ("memory", "keys", "mask")
    SENTENCE_KEYS = SOURCE_KEYS + ("vocab",)
    LAZY_KEYS = ("memory", "keys", "vocab")  # the mask is small and gathered at once
    ROWS = "_rows"  # deferred: row i of the lazy entries is row ROWS[i] of the stored arrays

    def reorder(self, state: State, rows: np.ndarray, decoder_only: bool = False) -> State:
        if decoder_only:  # beams re-parented within their own requests: the source rows are the same
            return {n: (v if n in self.SENTENCE_KEYS or n == self.ROWS else v[rows]) for n, v in state.items()}
        out = {n: v[rows] for n, v in state.items() if n not in self.LAZY_KEYS and n != self.ROWS}
        lazy = {n: v for n, v in state.items() if n in self.LAZY_KEYS}
        if lazy:
            out.update(lazy)
            out[self.ROWS] = state[self.ROWS][rows] if self.ROWS in state else np.asarray(rows)
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
                    value = value[:, :width] if rows is None else value[rows, :width]
                    out[name] = np.ascontiguousarray(value)
                else:
                    out[name] = value if rows is None else value[rows]
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
            merged[name] = np.empty((sum(sizes),) + tail, like.dtype)
            start = 0
            for s, n in zip(states, sizes):
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
