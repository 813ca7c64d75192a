"""Shared by the benchmarks: the sentences they translate, and a load to run beside them."""

import contextlib
import gzip
import math
import subprocess
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


# One process of `busy_beside`: busy for `duty` of every 2 ms, asleep for the rest.
_BUSY = """
import sys, time
duty, period = float(sys.argv[1]), 0.002
while True:
    started = time.perf_counter()
    while time.perf_counter() - started < duty * period:
        pass
    time.sleep(period * (1 - duty))
"""


@contextlib.contextmanager
def busy_beside(cores: float):
    """Keep `cores` CPUs' worth busy in other processes (ordinary priority) while the block runs:
    what a server's front and its clients take from an engine on the same cores, without sharing
    anything else with it (no GIL, no messages)."""
    count = math.ceil(cores) if cores > 0 else 0
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY, str(cores / count)]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
