"""What trimming the target vocabulary (`python -m training trim-vocab`) changes: one model with
its joint vocabulary's whole target side and with the trimmed one, both as ONNX Runtime bundles,
through the served text pipeline on Multi30k val and test: BLEU, outputs identical to the whole
vocabulary's, and sentences/s (each bundle in turn, `--repeats` times; medians).

    python bench/vocab_trim.py --full /tmp/demo-de-en-8k --trimmed models/demo-de-en

The previous demo bundle, with the whole 8,000-piece target side, is in the git history
(`git worktree add /tmp/old f5c9321` gives it at /tmp/old/models/demo-de-en).
Prints a table; writes bench/results/vocab-trim.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import write_result  # noqa: E402
from bench.robustness import MULTI30K, read  # noqa: E402

DECODINGS = [("greedy, batch 1", 1, 1), ("greedy, batch 32", 1, 32), ("beam 5, batch 32", 5, 32)]
SPEED_SENTENCES = {1: 200, 32: 1000}  # batch 1 is slow: a share of the test set


def load(path: str):
    from nmt.bundle import load_bundle
    from nmt.tokenizer import Tokenizer
    from service.models import text_processor
    from service.onnx_engine import OnnxEngine

    bundle = load_bundle(path)
    source, target = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
    return OnnxEngine(bundle, threads=2), text_processor(bundle, source, target), bundle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", required=True, help="bundle with the whole joint vocabulary as its target side")
    p.add_argument("--trimmed", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import sacrebleu

    from nmt.search import SearchOptions
    from nmt.text import translate_texts
    from service.config import Defaults

    models = {"full": load(args.full), "trimmed": load(args.trimmed)}
    sizes = {k: int(b.manifest["architecture"]["tgt_vocab_size"]) for k, (_, _, b) in models.items()}
    width = int(models["trimmed"][2].manifest["architecture"]["output_size"])
    factor = Defaults().max_length_factor
    quality = []
    for split in ("val", "test_2016_flickr"):
        src, ref = read(MULTI30K / f"{split}.de.gz"), read(MULTI30K / f"{split}.en.gz")
        for beam in (1, 5):
            options = SearchOptions(beam_size=beam, max_length_factor=factor)
            out = {k: [t.text for t in translate_texts(e, proc, src, options, max_batch=32)]
                   for k, (e, proc, _) in models.items()}
            row = {"split": split, "decoding": "greedy" if beam == 1 else f"beam {beam}",
                   **{f"bleu_{k}": round(sacrebleu.corpus_bleu(o, [ref]).score, 2) for k, o in out.items()},
                   "identical": round(sum(a == b for a, b in zip(out["full"], out["trimmed"])) / len(src), 4)}
            quality.append(row)
            print(row, flush=True)
    test = read(MULTI30K / "test_2016_flickr.de.gz")
    runs: dict[str, dict[str, list[float]]] = {k: {d: [] for d, _, _ in DECODINGS} for k in models}
    for _ in range(args.repeats):  # in turn: this machine's speed drifts over minutes
        for name, beam, batch in DECODINGS:
            texts = test[:SPEED_SENTENCES[batch]]
            options = SearchOptions(beam_size=beam, max_length_factor=factor)
            for k, (engine, proc, _) in models.items():
                translate_texts(engine, proc, texts[:16], options, max_batch=batch)  # warm up
                started = time.perf_counter()
                translate_texts(engine, proc, texts, options, max_batch=batch)
                runs[k][name].append(len(texts) / (time.perf_counter() - started))
    speed = [{"decoding": name, **{k: round(statistics.median(runs[k][name]), 1) for k in models},
              "runs": {k: [round(x, 1) for x in runs[k][name]] for k in models}} for name, _, _ in DECODINGS]
    print("\n| | target pieces | output projection |\n|---|---|---|")
    for k, n in sizes.items():
        print(f"| {k} | {n} | {width} x {n} |")
    print("\n| set | decoding | BLEU full -> trimmed | outputs identical |\n|---|---|---|---|")
    for r in quality:
        print(f"| {r['split']} | {r['decoding']} | {r['bleu_full']:.2f} -> {r['bleu_trimmed']:.2f} | {r['identical']:.1%} |")
    print("\n| decoding | sentences/s full -> trimmed | speed |\n|---|---|---|")
    for r in speed:
        print(f"| {r['decoding']} | {r['full']:.1f} -> {r['trimmed']:.1f} | {r['trimmed'] / r['full']:.2f}x |")
    write_result("vocab-trim", {"bundles": {"full": Path(args.full).name, "trimmed": Path(args.trimmed).name},
                                "target_pieces": sizes, "repeats": args.repeats, "quality": quality, "speed": speed})


if __name__ == "__main__":
    main()
