"""The engine interface that the one search drives (PyTorch in training, ONNX Runtime in serving).

An engine does two things; everything else (beam bookkeeping, batching) is the search's job:

- ``encode(src_ids int64 (B, S), src_lengths int64 (B,)) -> State``
- ``step(prev_ids int64 (N,), state, k) -> (top_log_probs float32 (N, k), top_ids int64 (N, k),
  attention float32 (N, S), new_state)``: one decoder step, returning only the k best tokens of
  each row (sorting the whole vocabulary in numpy costs as much as the step itself).

A State is a dict of numpy arrays whose axis 0 is the row. Rows can therefore be gathered
(beam re-parenting, dropping finished requests) and concatenated (admitting new requests) without
the engine's help: `reorder` and `merge` below do it for every engine. The source-side entries
(``SOURCE_KEYS``) also have the source position as axis 1 and are padded when merged.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

State = dict[str, np.ndarray]

#: Entries with a source-length axis (axis 1): encoder memory, projected attention keys, mask.
SOURCE_KEYS = ("memory", "keys", "mask")


class Engine(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State: ...

    def step(
        self, prev_ids: np.ndarray, state: State, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, State]: ...


def reorder(state: State, rows: np.ndarray, keys: tuple[str, ...] | None = None) -> State:
    """Gather ``rows`` (axis 0) of every entry, or only of ``keys`` (others are kept as they are)."""
    return {
        name: (value[rows] if keys is None or name in keys else value)
        for name, value in state.items()
    }


def source_length(state: State) -> int:
    return int(state["mask"].shape[1]) if state else 0


def merge(states: list[State]) -> State:
    """Concatenate the rows of several states, padding source-side entries to the longest source."""
    states = [s for s in states if s and len(s["mask"])]
    if not states:
        return {}
    if len(states) == 1:
        return states[0]
    width = max(source_length(s) for s in states)
    merged: State = {}
    for name in states[0]:
        parts = []
        for s in states:
            value = s[name]
            if name in SOURCE_KEYS and value.shape[1] < width:
                pad = [(0, 0)] * value.ndim
                pad[1] = (0, width - value.shape[1])
                value = np.pad(value, pad)  # zeros: mask False, so padding gets no attention
            parts.append(value)
        merged[name] = np.concatenate(parts, axis=0)
    return merged


def trim_source(state: State) -> State:
    """Drop source positions that no remaining row uses (after long requests leave the batch)."""
    if not state:
        return state
    used = state["mask"].any(axis=0)
    width = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
    if width == state["mask"].shape[1]:
        return state
    return {n: (v[:, :width] if n in SOURCE_KEYS else v) for n, v in state.items()}
