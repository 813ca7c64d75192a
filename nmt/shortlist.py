"""Lexical shortlist (Marian's `--shortlist`, CTranslate2's `vmap`): which target tokens a sentence
may produce, so that the decoder's output projection and TopK run over those tokens only.

A sentence's candidates are the `frequent` most frequent target tokens, the `per_token` most likely
translations of each of its source tokens (Dice coefficient of sentence-level co-occurrence in the
training data), target tokens spelled like one of its source tokens (names, numbers) and the
symbols that must always be reachable (end of sentence, placeholders). Each row is normalised over its own candidates
only, so a sentence's output does not depend on the other sentences of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Shortlist:
    always: np.ndarray  # (F,) target ids every sentence may produce
    table: np.ndarray  # (source vocabulary, K) target ids per source token, -1 padded
    target_size: int

    def save(self, path: Path) -> None:
        np.savez_compressed(path, always=self.always.astype(np.int32), table=self.table.astype(np.int32),
                            target_size=np.array(self.target_size))

    def check(self, source_size: int, target_size: int) -> None:
        if self.table.shape[0] != source_size or self.target_size != target_size or \
                self.table.max(initial=-1) >= target_size or self.always.max(initial=-1) >= target_size:
            raise ValueError(f"shortlist for vocabularies {self.table.shape[0]}/{self.target_size} does not "
                             f"fit the model's {source_size}/{target_size}")

    @classmethod
    def load(cls, path: Path) -> "Shortlist":
        with np.load(path) as f:
            return cls(f["always"].astype(np.int64), f["table"].astype(np.int64), int(f["target_size"]))

    def rows(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> np.ndarray:
        """(B, S) padded source ids -> (B, V) bool: the candidate target tokens of each sentence."""
        batch = len(src_ids)
        allowed = np.zeros((batch, self.target_size), bool)
        allowed[:, self.always] = True
        real = np.arange(src_ids.shape[1])[None, :] < src_lengths[:, None]
        cand = self.table[np.where(real, src_ids, 0)]  # (B, S, K)
        cand = np.where(real[:, :, None], cand, -1).reshape(batch, -1)
        row = np.repeat(np.arange(batch), cand.shape[1])
        ok = cand.ravel() >= 0
        allowed[row[ok], cand.ravel()[ok]] = True
        return allowed


def build(src_sentences: list[list[int]], tgt_sentences: list[list[int]], src_pieces: list[str],
          tgt_pieces: list[str], always_ids: list[int], frequent: int = 100, per_token: int = 50,
          scoring: str = "dice") -> Shortlist:
    """Count co-occurrences of source and target tokens in sentence pairs (token ids) and keep,
    per source token, the `per_token` target tokens it is most associated with ("dice": the Dice
    coefficient, which does not favour frequent tokens; "p": p(t|s)), besides the `frequent` ones."""
    vs, vt = len(src_pieces), len(tgt_pieces)
    pairs = np.zeros((vs, vt), np.int32)
    src_count = np.zeros(vs, np.int64)
    tgt_count = np.zeros(vt, np.int64)
    for s, t in zip(src_sentences, tgt_sentences):
        s, t = np.unique(s), np.unique(t)
        src_count[s] += 1
        tgt_count[t] += 1
        pairs[np.repeat(s, len(t)), np.tile(t, len(s))] += 1
    most = np.argsort(-tgt_count, kind="stable")[:frequent]
    if scoring == "dice":
        score = 2.0 * pairs / (src_count[:, None] + tgt_count[None, :] + 1e-9)
    else:  # p(t|s) = c(s, t) / c(s)
        score = pairs / np.maximum(src_count, 1)[:, None]
    score = score - 1e-9 * tgt_count[None, :]  # ties: the rarer target token, the more specific one
    score[pairs < 1] = -np.inf
    score[:, most] = -np.inf  # every sentence has these already
    k = min(per_token, vt)
    top = np.argpartition(-score, k - 1, axis=1)[:, :k]
    top = np.where(np.isfinite(np.take_along_axis(score, top, axis=1)), top, -1)
    by_piece = {p: i for i, p in enumerate(tgt_pieces)}
    same = np.array([by_piece.get(p, -1) for p in src_pieces])[:, None]  # copies: names, numbers
    table = np.concatenate([top, same], axis=1)
    always = np.unique(np.concatenate([most, np.asarray(always_ids, np.int64)]))
    return Shortlist(always, table, vt)
