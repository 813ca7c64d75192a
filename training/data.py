"""Parallel corpus readers: two aligned text files (optionally .gz) or TSV (source<TAB>target).

Errors name the file and line: misaligned files, empty lines, undecodable bytes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from nmt.tokenizer import normalize


class DataError(ValueError):
    pass


@dataclass
class Corpus:
    sources: list[str]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.sources)


def read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(line.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{number}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return out


def _check_not_empty(path, lines: list[str]) -> None:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{path}:{number}: empty line (every line must hold a sentence)")


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> Corpus:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"misaligned corpus: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
    _check_not_empty(src_path, src)
    _check_not_empty(tgt_path, tgt)
    return Corpus(src, tgt)


def read_tsv(path: str | Path) -> Corpus:
    """source<TAB>target per line; further columns (Tatoeba/Anki attribution) are ignored."""
    src, tgt = [], []
    for number, line in enumerate(read_lines(path), 1):
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(f"{path}:{number}: expected source<TAB>target, found {len(cols)} column")
        if not cols[0].strip() or not cols[1].strip():
            raise DataError(f"{path}:{number}: empty source or target")
        src.append(cols[0])
        tgt.append(cols[1])
    return Corpus(src, tgt)


def read_corpus(src: str | None = None, tgt: str | None = None, tsv: str | None = None) -> Corpus:
    if tsv:
        return read_tsv(tsv)
    if src and tgt:
        return read_parallel(src, tgt)
    raise DataError("a corpus needs either a tsv file or both source and target files")


def clean(corpus: Corpus, normalize_text: bool = True, dedupe: bool = False) -> Corpus:
    """Unicode normalisation (NFC, whitespace) and optional removal of duplicate pairs."""
    pairs = zip(corpus.sources, corpus.targets)
    if normalize_text:
        pairs = ((normalize(s), normalize(t)) for s, t in pairs)
    if dedupe:
        pairs = dict.fromkeys(pairs)
    pairs = list(pairs)
    return Corpus([s for s, _ in pairs], [t for _, t in pairs])
