"""Training corpora larger than memory (`data.streaming = true`).

The corpus is read pair by pair from its files (plain or .gz, two aligned files or TSV); each rank
of a distributed run keeps every world-th pair (its own share, without coordination); pairs are
gathered into windows of `data.window` pairs, which are augmented, tokenized and bucketed by
length like the in-memory corpus. What needs the whole corpus (the SentencePiece vocabulary, the
augmentation lexicons, the casing table) is built from a uniform sample of `data.sample` pairs
(reservoir sampling, one pass), as SentencePiece's own `input_sentence_size` does.
"""

from __future__ import annotations

import gzip
import io
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

from nmt.tokenizer import normalize
from training.data import Corpus, DataError


def _open(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")


def _lines(path: str | Path) -> Iterator[str]:
    with _open(path) as f:
        try:
            for line in f:
                yield line.rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 ({e.reason})") from None


def read_pairs(src: str = "", tgt: str = "", tsv: str = "", rank: int = 0, world: int = 1,
               normalize_text: bool = True) -> Iterator[tuple[str, str]]:
    """The corpus' pairs in file order, every `world`-th from the `rank`-th; errors name file and line."""
    if tsv:
        pairs = ((line.split("\t")[:2] if "\t" in line else [line, ""]) for line in _lines(tsv))
        names = (tsv, tsv)
    elif src and tgt:
        pairs = itertools.zip_longest(_lines(src), _lines(tgt))
        names = (src, tgt)
    else:
        raise DataError("a corpus needs either a tsv file or both source and target files")
    for number, (s, t) in enumerate(pairs, 1):
        if s is None or t is None:
            short = names[0] if s is None else names[1]
            raise DataError(f"misaligned corpus: {short} ends at line {number - 1}, the other goes on")
        if (number - 1) % world != rank:
            continue
        if not s.strip() or not t.strip():
            raise DataError(f"{names[0] if not s.strip() else names[1]}:{number}: empty line "
                            f"(every line must hold a sentence)")
        yield (normalize(s), normalize(t)) if normalize_text else (s, t)


def sample_pairs(pairs: Iterator[tuple[str, str]], size: int, seed: int) -> Corpus:
    """A uniform sample of at most `size` pairs, in one pass and bounded memory (reservoir sampling)."""
    rng = random.Random(seed)
    kept: list[tuple[str, str]] = []
    for seen, pair in enumerate(pairs):
        if seen < size:
            kept.append(pair)
        else:
            j = rng.randrange(seen + 1)
            if j < size:
                kept[j] = pair
    return Corpus([s for s, _ in kept], [t for _, t in kept])


def windows(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    """Consecutive windows of `size` pairs (the last one shorter)."""
    iterator = iter(pairs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
