"""Vocabulary shortlist: speed against the full vocabulary and what it costs, per shortlist size.

    python bench/shortlist.py [--bundle models/demo-de-en] [--sizes 100x20 100x50 300x100]

For each size (FREQUENT x PER_TOKEN, built from Multi30k train like `export` does) on
test_2016_flickr: greedy and beam 5 at batch 32, and greedy one sentence at a time (a quiet
server: the union is one sentence's candidates), sentences/s with and without the shortlist in the
same run (interleaved, best of two), BLEU, and the share of outputs identical to the full
vocabulary. Writes bench/results/shortlist.json and bench/results/shortlist.png.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import write_result  # noqa: E402

MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
CONFIGS = (("greedy", 1, None), ("beam 5", 5, None), ("greedy, batch 1", 1, 1))  # None: --batch


def read(name: str) -> list[str]:
    return gzip.open(MULTI30K / name, "rt", encoding="utf-8").read().splitlines()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--sizes", nargs="+", default=["100x20", "100x50", "300x100", "1000x200"])
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    if not (MULTI30K / "train.de.gz").exists():
        print(f"needs Multi30k at {MULTI30K}", file=sys.stderr)
        return 1
    import sacrebleu

    from nmt.bundle import load_bundle
    from nmt.protect import PLACEHOLDERS
    from nmt.search import SearchOptions, pad_batch, translate_batch
    from nmt.shortlist import build
    from nmt.tokenizer import EOS_ID, Tokenizer
    from service.onnx_engine import OnnxEngine

    bundle = load_bundle(args.bundle)
    src_lang, tgt_lang = bundle.manifest["source_language"], bundle.manifest["target_language"]
    src, tgt = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
    engine = OnnxEngine(bundle, threads=2)
    train = (src.encode_batch(read(f"train.{src_lang}.gz")), tgt.encode_batch(read(f"train.{tgt_lang}.gz")))
    pieces = lambda tok: [tok.sp.id_to_piece(i) for i in range(len(tok))]  # noqa: E731
    always = [EOS_ID] + [tgt.sp.piece_to_id(x) for x in PLACEHOLDERS]
    ids = src.encode_batch(read(f"test_2016_flickr.{src_lang}.gz"))
    refs = read(f"test_2016_flickr.{tgt_lang}.gz")

    def run(beam: int, use: bool, batch: int) -> tuple[float, list[list[int]]]:
        options = SearchOptions(beam_size=beam, use_shortlist=use)
        translate_batch(engine, ids[:16], options, max_batch=batch)
        started = time.perf_counter()
        hyps = translate_batch(engine, ids, options, max_batch=batch)
        return len(ids) / (time.perf_counter() - started), [h[0].token_ids for h in hyps]

    rows = []
    for size in args.sizes:
        frequent, per_token = map(int, size.split("x"))
        shortlist = build(*train, pieces(src), pieces(tgt), always, frequent, per_token)
        engine.set_shortlist(shortlist)
        padded, lengths = pad_batch(ids[: args.batch * (len(ids) // args.batch)])
        allowed = shortlist.rows(padded, lengths)
        union = sum(int(allowed[i:i + args.batch].any(0).sum()) for i in range(0, len(allowed), args.batch))
        row = {"size": size, "candidates_per_sentence": round(float(allowed.sum(1).mean()), 1),
               "union_per_batch": round(union / (len(allowed) // args.batch), 1), "configs": {}}
        for name, beam, batch in CONFIGS:
            rate = {False: 0.0, True: 0.0}
            outputs = {}
            for use in (False, True, False, True):
                r, outputs[use] = run(beam, use, batch or args.batch)
                rate[use] = max(rate[use], r)
            bleu = {use: sacrebleu.corpus_bleu(tgt.decode_batch(outputs[use]), [refs]).score for use in (False, True)}
            same = sum(a == b for a, b in zip(outputs[False], outputs[True])) / len(ids)
            row["configs"][name] = {"full": round(rate[False], 1), "shortlist": round(rate[True], 1),
                                    "speedup": round(rate[True] / rate[False], 3), "bleu_full": round(bleu[False], 2),
                                    "bleu_shortlist": round(bleu[True], 2), "identical": round(same, 4)}
            print(f"{size:>9} {name:<7} {rate[False]:7.1f} -> {rate[True]:7.1f} sentences/s "
                  f"({rate[True] / rate[False]:.2f}x), BLEU {bleu[False]:.2f} -> {bleu[True]:.2f}, "
                  f"identical {same:.1%}, union {row['union_per_batch']:.0f} of {shortlist.target_size}", flush=True)
        rows.append(row)
    write_result("shortlist", {"bundle": bundle.name, "batch": args.batch, "vocabulary": len(tgt), "rows": rows})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, _, _ in CONFIGS:
        xs = [r["configs"][name]["identical"] * 100 for r in rows]
        ys = [r["configs"][name]["speedup"] for r in rows]
        ax.plot(xs, ys, "o-", label=name)
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r["size"], (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4))
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("outputs identical to the full vocabulary (%)")
    ax.set_ylabel("speed vs full vocabulary")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "bench" / "results" / "shortlist.png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
