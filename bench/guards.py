"""What each decoding guard costs or gains: validation BLEU (case-insensitive) and degenerate
outputs, beam 5, with each guard on its own, through the served text pipeline.

    python bench/guards.py --bundle models/demo-de-en [--split val]

Prints a table; writes bench/results/guards-<split>-<name>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import write_result  # noqa: E402
from bench.robustness import DATA, MULTI30K, degenerate, load, read, tsv  # noqa: E402

SETTINGS = [
    ("none", {}),
    ("length bound 2 x source + 10", {"max_length_factor": 2.0}),
    ("no_repeat_ngram_size 3", {"no_repeat_ngram_size": 3}),
    ("no_repeat_ngram_size 4", {"no_repeat_ngram_size": 4}),
    ("repetition_penalty 1.1", {"repetition_penalty": 1.1}),
    ("repetition_penalty 1.2", {"repetition_penalty": 1.2}),
    ("coverage_penalty 0.2", {"coverage_penalty": 0.2}),
    ("coverage_penalty 0.4", {"coverage_penalty": 0.4}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--checkpoint")
    p.add_argument("--name")
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--beam", type=int, default=5)
    args = p.parse_args()

    import sacrebleu

    from nmt.search import SearchOptions
    from nmt.text import translate_texts

    engine, processor, name = load(args)
    split = "test_2016_flickr" if args.split == "test" else "val"
    src, ref = read(MULTI30K / f"{split}.de.gz"), read(MULTI30K / f"{split}.en.gz")
    frag_src, frag_ref = tsv(DATA / "fragments.tsv")
    rows, base = [], None
    for label, guard in SETTINGS:
        options = SearchOptions(beam_size=args.beam, max_length=200, **guard)
        out = [t.text for t in translate_texts(engine, processor, src, options)]
        frag = [t.text for t in translate_texts(engine, processor, frag_src, options)]
        bleu = sacrebleu.corpus_bleu(out, [ref], lowercase=True).score
        base = bleu if base is None else base
        row = {"guard": label, "options": guard, "bleu": round(bleu, 2), "delta": round(bleu - base, 2),
               "degenerate": round(100 * sum(map(degenerate, src, out)) / len(src), 2),
               "fragments_bleu": round(sacrebleu.corpus_bleu(frag, [frag_ref], lowercase=True).score, 2)}
        rows.append(row)
        print(row, flush=True)
    print(f"| guard ({args.split}, beam {args.beam}) | BLEU | vs none | degenerate | fragments BLEU |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['guard']} | {r['bleu']:.2f} | {r['delta']:+.2f} | {r['degenerate']:.1f}% | {r['fragments_bleu']:.2f} |")
    write_result(f"guards-{args.split}-{name}", {"model": name, "beam": args.beam, "rows": rows})


if __name__ == "__main__":
    main()
