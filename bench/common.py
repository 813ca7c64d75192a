"""Shared by the benchmarks: the sentences they translate."""

import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.de.gz"


def sentence_source() -> str:
    """Which sentences `sample_sentences` gives here: results record it, since the fallback's
    sentences are fewer and shorter, and rates from the two do not compare."""
    return "multi30k test_2016_flickr.de" if MULTI30K.exists() else "configs/samples.de"


def sample_sentences(count: int) -> list[str]:
    """`count` German sentences: Multi30k test_2016_flickr when present, else configs/samples.de."""
    if MULTI30K.exists():
        lines = gzip.open(MULTI30K, "rt", encoding="utf-8").read().splitlines()
    else:
        lines = (ROOT / "configs" / "samples.de").read_text(encoding="utf-8").splitlines()
        print(f"note: {MULTI30K} is absent: translating the {len(lines)} sentences of configs/samples.de over "
              "and over; rates do not compare with runs on Multi30k", file=sys.stderr)
    return [lines[i % len(lines)] for i in range(count)]
