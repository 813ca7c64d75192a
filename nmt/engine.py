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
- ``source_width(state)``: columns of the attention a step returns.

A State is opaque to the search. `RecurrentState` implements the last four for the RNN engines,
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


class RecurrentState:
    """State layout of the attention RNN engines: fixed-size decoder entries per row, plus
    source-side entries (`SOURCE_KEYS`: encoder memory, projected keys, mask) with the source
    position on axis 1, padded with zeros (mask False: no attention) when rows are merged, and
    optionally `vocab` (rows, target vocabulary) bool, the row's shortlist. Both are per sentence:
    re-parenting beams within their requests leaves them where they are (the same arrays)."""

    SOURCE_KEYS = ("memory", "keys", "mask")
    SENTENCE_KEYS = SOURCE_KEYS + ("vocab",)

    def reorder(self, state: State, rows: np.ndarray, decoder_only: bool = False) -> State:
        if decoder_only:  # beams re-parented within their own requests: the source rows are the same
            return {n: (v if n in self.SENTENCE_KEYS else v[rows]) for n, v in state.items()}
        return {n: v[rows] for n, v in state.items()}

    def source_width(self, state: State) -> int:
        return int(state["mask"].shape[1]) if state else 0

    def merge(self, states: list[State]) -> State:
        states = [s for s in states if s and len(s["mask"])]
        if not states:
            return {}
        if len(states) == 1:
            return states[0]
        width = max(self.source_width(s) for s in states)
        vocab = next((s["vocab"] for s in states if "vocab" in s), None)
        if vocab is not None:  # rows without a shortlist may produce every token
            states = [s if "vocab" in s else {**s, "vocab": np.ones((len(s["mask"]), vocab.shape[1]), bool)}
                      for s in states]
        merged: State = {}
        for name in states[0]:
            parts = []
            for s in states:
                value = s[name]
                if name in self.SOURCE_KEYS and value.shape[1] < width:
                    pad = [(0, 0)] * value.ndim
                    pad[1] = (0, width - value.shape[1])
                    value = np.pad(value, pad)
                parts.append(value)
            merged[name] = np.concatenate(parts, axis=0)
        return merged

    def trim(self, state: State) -> State:
        if not state:
            return state
        used = state["mask"].any(axis=0)
        width = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
        if width == state["mask"].shape[1]:
            return state
        return {n: (v[:, :width] if n in self.SOURCE_KEYS else v) for n, v in state.items()}
