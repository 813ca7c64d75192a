"""Tiny data and engines the tests make themselves (no ../shared needed)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from nmt.engine import RecurrentState

MULTI30K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multi30k"

LEXICON = {"ein": "a", "eine": "a", "mann": "man", "frau": "woman", "hund": "dog", "katze": "cat",
           "rot": "red", "blau": "blue", "gross": "big", "klein": "small", "sieht": "sees",
           "hat": "has", "ball": "ball", "haus": "house", "und": "and", "der": "the"}


def tiny_corpus(directory: Path, pairs: int = 300, seed: int = 0) -> dict[str, Path]:
    """Word-for-word 'translation' pairs of 2-7 words, written as aligned files and as TSV."""
    rng = random.Random(seed)
    words = list(LEXICON)
    src, tgt = [], []
    for _ in range(pairs):
        sentence = [rng.choice(words) for _ in range(rng.randint(2, 7))]
        src.append(" ".join(sentence))
        tgt.append(" ".join(LEXICON[w] for w in sentence))
    directory.mkdir(parents=True, exist_ok=True)
    files = {"src": directory / "train.de", "tgt": directory / "train.en", "tsv": directory / "train.tsv"}
    files["src"].write_text("\n".join(src) + "\n", encoding="utf-8")
    files["tgt"].write_text("\n".join(tgt) + "\n", encoding="utf-8")
    files["tsv"].write_text("".join(f"{s}\t{t}\tCC-BY x\n" for s, t in zip(src, tgt)), encoding="utf-8")
    return files


def tiny_overrides(corpus: dict[str, Path], out_dir: Path, steps: int = 30) -> list[str]:
    return [
        f"data.train_src={corpus['src']}", f"data.train_tgt={corpus['tgt']}",
        f"data.valid_src={corpus['src']}", f"data.valid_tgt={corpus['tgt']}",
        "vocab.size=340", "model.emb_size=16", "model.encoder_hidden=16", "model.decoder_hidden=32",
        "model.attention_size=16", "model.output_size=16", "model.dropout=0.1",
        f"train.out_dir={out_dir}", f"train.max_steps={steps}", f"train.valid_every={steps // 2}",
        "train.save_every=5", "train.batch_tokens=200", "train.valid_max_sentences=20",
        "train.heatmaps=1", "train.max_output_tokens=20", "train.max_minutes=0", "train.lr=0.01",
        "train.threads=1", "augment.lower=0.1", "augment.upper=0.1", "augment.strip_punct=0.2",
        "augment.placeholders=0.2", "augment.fragments=0.05",
    ]


class TinyEngine(RecurrentState):
    """Hand-computable engine: the log-probs of the next token depend only on the prefix, through a
    seeded table, over the vocabulary {0: EOS, 1, 2}; BOS is 3. Attention is uniform over the source."""

    bos_id, eos_id = 3, 0
    vocab = 3

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def log_probs(self, prefix: tuple[int, ...]) -> np.ndarray:
        code = 0
        for t in prefix:
            code = code * 5 + t + 1
        return self._from_code(code)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> dict[str, np.ndarray]:
        b, s = src_ids.shape
        mask = np.arange(s)[None, :] < src_lengths[:, None]
        return {"memory": mask[..., None].astype(np.float32), "keys": np.zeros((b, s, 1), np.float32),
                "mask": mask, "code": np.zeros(b, np.int64)}

    def step(self, prev_ids, state, k):
        code = np.where(prev_ids == self.bos_id, 0, state["code"] * 5 + prev_ids + 1)
        lp = np.stack([self._from_code(int(c)) for c in code]).astype(np.float32)
        top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
        attn = state["mask"] / state["mask"].sum(1, keepdims=True)
        return np.take_along_axis(lp, top, 1), top, attn.astype(np.float32), {**state, "code": code}

    def _from_code(self, code: int) -> np.ndarray:
        logits = np.random.default_rng([self.seed, code]).normal(size=self.vocab) * 2
        return logits - np.log(np.exp(logits).sum())


class SourceEngine(TinyEngine):
    """TinyEngine whose next-token table also depends on the source, read from each row's encoder
    memory at every step: a row that saw another sentence's memory would decode differently."""

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> dict[str, np.ndarray]:
        state = super().encode(src_ids, src_lengths)
        state["memory"] = (src_ids * state["mask"])[..., None].astype(np.float32)
        return state

    def step(self, prev_ids, state, k):
        source = state["memory"][:, :, 0].astype(np.int64) @ (7 ** np.arange(state["memory"].shape[1]) % 1009)
        code = np.where(prev_ids == self.bos_id, 0, state["code"] * 5 + prev_ids + 1)
        lp = np.stack([self._from_code(int(c) * 1013 + int(s)) for c, s in zip(code, source)]).astype(np.float32)
        top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
        attn = state["mask"] / state["mask"].sum(1, keepdims=True)
        return np.take_along_axis(lp, top, 1), top, attn.astype(np.float32), {**state, "code": code}


class LengthEngine(RecurrentState):
    """An engine whose output length you control: a sentence whose first source id is n yields
    n tokens (id 5) then EOS. `delay` seconds per step make batches take measurable time."""

    bos_id, eos_id = 2, 3

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.steps = 0

    def encode(self, src_ids, src_lengths):
        b, s = src_ids.shape
        mask = np.arange(s)[None, :] < src_lengths[:, None]
        return {"memory": np.zeros((b, s, 1), np.float32), "keys": np.zeros((b, s, 1), np.float32),
                "mask": mask, "left": src_ids[:, 0].astype(np.int64)}

    def step(self, prev_ids, state, k):
        import time

        time.sleep(self.delay)
        self.steps += 1
        n = len(prev_ids)
        left = state["left"] - (prev_ids != self.bos_id)
        best = np.where(left > 0, 5, self.eos_id)
        other = np.where(left > 0, self.eos_id, 5)
        ids = np.stack([best, other] + [np.full(n, 6 + j) for j in range(max(k - 2, 0))], 1)[:, :k]
        lp = np.log(np.array([0.9, 0.05] + [0.05 / max(k - 2, 1)] * max(k - 2, 0), np.float32))[:k]
        attn = state["mask"] / state["mask"].sum(1, keepdims=True)
        return np.tile(lp, (n, 1)), ids.astype(np.int64), attn.astype(np.float32), {**state, "left": left}


class TableEngine(RecurrentState):
    """A model given as a table: the next token's probabilities and the attention depend only on the
    previous token (`table[prev] = {token: p}`, the rest of the vocabulary shares what is left);
    `attend[prev]` is the source position that step attends to (uniform when absent). Built to loop,
    or to leave a source word unattended, on purpose."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 10, bos_id: int = 1,
                 eos_id: int = 0, attend: dict[int, int] | None = None) -> None:
        self.table, self.vocab, self.bos_id, self.eos_id = table, vocab, bos_id, eos_id
        self.attend = attend or {}
        self.calls = 0

    def log_probs(self, prev: int) -> np.ndarray:
        given = self.table.get(prev, {})
        rest = (1.0 - sum(given.values())) / max(self.vocab - len(given) - 1, 1)
        p = np.full(self.vocab, max(rest, 1e-9))
        p[self.bos_id] = 1e-12
        for token, prob in given.items():
            p[token] = prob
        return np.log(p / p.sum())

    def encode(self, src_ids, src_lengths):
        b, s = src_ids.shape
        mask = np.arange(s)[None, :] < src_lengths[:, None]
        return {"memory": np.zeros((b, s, 1), np.float32), "keys": np.zeros((b, s, 1), np.float32),
                "mask": mask}

    def step(self, prev_ids, state, k):
        self.calls += 1
        lp = np.stack([self.log_probs(int(t)) for t in prev_ids]).astype(np.float32)
        top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
        mask = state["mask"].astype(np.float32)
        attn = mask / mask.sum(1, keepdims=True)
        for row, t in enumerate(prev_ids.tolist()):
            if t in self.attend:
                attn[row] = 0.0
                attn[row, self.attend[t]] = 1.0
        return np.take_along_axis(lp, top, 1), top, attn, dict(state)
