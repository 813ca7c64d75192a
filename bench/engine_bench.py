"""Engines compared with the same search: PyTorch eager, ONNX Runtime fp32, int8 (weight-only) and
int8-dynamic, greedy at several batch sizes and beam 5; each engine in its own process (PyTorch
and ONNX Runtime thread pools fight when they share one).

    python bench/engine_bench.py --checkpoint models/checkpoints/demo-de-en.pt \\
        --bundle fp32=models/demo-de-en --bundle int8=/tmp/int8 [--sentences 256]

Prints sentences/s per configuration and the ratio to ONNX Runtime fp32; saves bench/out/engines.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences  # noqa: E402
from bench.provenance import write_result  # noqa: E402
CONFIGS = [("greedy", 1, 1), ("greedy", 1, 32), ("greedy", 1, 128), ("beam 5", 5, 32)]


def measure(kind: str, path: str, count: int) -> None:
    """Child process: time every configuration on one engine, print JSON lines."""
    from nmt.search import SearchOptions, translate_batch
    from nmt.tokenizer import Tokenizer

    if kind == "pytorch":
        import tempfile

        import torch

        from training import checkpoint
        from training.torch_engine import TorchEngine

        torch.set_num_threads(2)
        ckpt = checkpoint.load(path)
        engine = TorchEngine(checkpoint.build_model(ckpt))
        with tempfile.TemporaryDirectory() as tmp:
            tok = Tokenizer(checkpoint.write_spm(ckpt, Path(tmp))["src"])
    else:
        from nmt.bundle import load_bundle
        from service.onnx_engine import OnnxEngine

        bundle = load_bundle(path)
        engine = OnnxEngine(bundle, threads=2)
        tok = Tokenizer(bundle.source_tokenizer)
    ids = tok.encode_batch(sample_sentences(count))
    for name, beam, batch in CONFIGS:
        n = min(len(ids), 64) if batch == 1 else len(ids)
        translate_batch(engine, ids[:8], SearchOptions(beam_size=beam), max_batch=batch)  # warm up
        started = time.perf_counter()
        translate_batch(engine, ids[:n], SearchOptions(beam_size=beam), max_batch=batch)
        rate = n / (time.perf_counter() - started)
        print(json.dumps({"config": f"{name}, batch {batch}", "rate": rate}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "checkpoints" / "demo-de-en.pt"))
    p.add_argument("--bundle", action="append", metavar="NAME=PATH",
                   help="bundles to compare (default fp32=models/demo-de-en)")
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        return measure(args.measure[0], args.measure[1], args.sentences)
    engines = [("pytorch", "pytorch", args.checkpoint)]
    for item in args.bundle or [f"fp32={ROOT / 'models' / 'demo-de-en'}"]:
        name, _, path = item.partition("=")
        engines.append((f"onnx {name}", "onnx", path))
    results: dict[str, dict[str, float]] = {}
    for label, kind, path in engines:
        out = subprocess.run([sys.executable, __file__, "--measure", kind, path, "--sentences", str(args.sentences)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        results[label] = {r["config"]: r["rate"] for r in map(json.loads, out.stdout.splitlines())}
    base = results.get("onnx fp32") or next(iter(results.values()))
    configs = list(next(iter(results.values())))
    write_result("engines", {"sentences": args.sentences, "configs": configs,
                             "rates": {k: {c: round(v, 1) for c, v in r.items()} for k, r in results.items()}})
    print(f"\nsentences/s ({args.sentences} test sentences; ratio to onnx fp32)\n")
    print(f"{'engine':<20}" + "".join(f"{c:>22}" for c in configs))
    for label, rates in results.items():
        print(f"{label:<20}" + "".join(f"{rates[c]:>12.1f} ({rates[c] / base[c]:4.2f}x)" for c in configs))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / len(results)
    for i, (label, rates) in enumerate(results.items()):
        ax.bar([j + i * width for j in range(len(configs))], [rates[c] for c in configs], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))], configs)
    ax.set_ylabel("sentences/s")
    ax.legend()
    fig.tight_layout()
    path = ROOT / "bench" / "results" / "engines.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"\nplot saved to {path}")


if __name__ == "__main__":
    main()
