"""What the decoder's embedding tables (`service/embedding_tables.py`) change besides speed
(`engine_bench.py --without-tables` measures that): the translations and the memory. Each bundle
with the tables off (`--embedding-tables-mb 0`) and on, through the served text pipeline on
Multi30k test_2016_flickr, greedy and beam 5: BLEU and outputs identical; and the resident memory an
engine adds, without and with tables, in this process (freed heap given back after each, as the
server does after loading).

    python bench/embedding_tables.py [--bundle fp32=models/demo-de-en] [--bundle int8=models/demo-de-en-int8]

Prints a table; writes bench/results/embedding-tables.json.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import write_result  # noqa: E402
from bench.robustness import MULTI30K, read  # noqa: E402


def resident_mb() -> float:
    from service.models import _release_freed_memory

    gc.collect()
    _release_freed_memory()
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", metavar="NAME=PATH",
                   help=f"bundles (default fp32={ROOT / 'models' / 'demo-de-en'} and "
                        f"int8={ROOT / 'models' / 'demo-de-en-int8'})")
    args = p.parse_args()

    import sacrebleu

    from nmt.bundle import load_bundle
    from nmt.search import SearchOptions
    from nmt.text import translate_texts
    from nmt.tokenizer import Tokenizer
    from service.config import EMBEDDING_TABLES_MB, Defaults
    from service.models import text_processor
    from service.onnx_engine import OnnxEngine

    bundles = [item.partition("=")[::2] for item in args.bundle or
               [f"fp32={ROOT / 'models' / 'demo-de-en'}", f"int8={ROOT / 'models' / 'demo-de-en-int8'}"]]
    src, ref = read(MULTI30K / "test_2016_flickr.de.gz"), read(MULTI30K / "test_2016_flickr.en.gz")
    rows = []
    for name, path in bundles:
        bundle = load_bundle(path)
        processor = text_processor(bundle, Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer))
        start = resident_mb()
        plain = OnnxEngine(bundle, threads=2, embedding_tables_mb=0)
        middle = resident_mb()
        tables = OnnxEngine(bundle, threads=2, embedding_tables_mb=EMBEDDING_TABLES_MB)
        memory = {"engine_mb": round(middle - start, 1), "engine_with_tables_mb": round(resident_mb() - middle, 1),
                  "tables_mb": round(tables.embedding_tables_bytes / 2**20, 1)}
        for beam in (1, 5):
            options = SearchOptions(beam_size=beam, max_length_factor=Defaults().max_length_factor)
            out = {k: [t.text for t in translate_texts(e, processor, src, options, max_batch=32)]
                   for k, e in (("off", plain), ("on", tables))}
            row = {"bundle": name, "kernels": tables.kernels, "decoding": "greedy" if beam == 1 else f"beam {beam}",
                   "bleu_off": round(sacrebleu.corpus_bleu(out["off"], [ref]).score, 2),
                   "bleu_on": round(sacrebleu.corpus_bleu(out["on"], [ref]).score, 2),
                   "identical": round(sum(a == b for a, b in zip(out["off"], out["on"])) / len(src), 4), **memory}
            rows.append(row)
            print(row, flush=True)
        del plain, tables
    write_result("embedding-tables", {"split": "test_2016_flickr", "sentences": len(src), "rows": rows})
    print("\n| bundle (kernels) | decoding | BLEU, tables off -> on | outputs identical | engine's memory, off -> on |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} ({r['kernels']}) | {r['decoding']} | {r['bleu_off']:.2f} -> {r['bleu_on']:.2f} "
              f"| {r['identical']:.1%} | {r['engine_mb']:.0f} -> {r['engine_with_tables_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
