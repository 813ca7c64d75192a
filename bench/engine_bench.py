"""Engines compared with the same search: PyTorch eager, ONNX Runtime fp32, int8 (weight-only) and
int8-dynamic, greedy at several batch sizes and beam 5; each engine in its own process (PyTorch
and ONNX Runtime thread pools fight when they share one).

    python bench/engine_bench.py --checkpoint models/checkpoints/demo-de-en.pt \\
        --bundle fp32=models/demo-de-en --bundle int8=/tmp/int8 [--without-tables fp32] [--sentences 256]

Prints sentences/s per configuration and the ratio to ONNX Runtime fp32, then how close each
engine's decoder comes to the hardware: decoder row-steps/s (rows x steps over the time outside the
encoder), the FLOP rate that makes (FLOPs of one row-step counted from the architecture) and two
references measured in the same run at the same average rows per step: ONNX Runtime running only
the decoder's largest matmul (the output projection), whose weights stay in the caches from one run
to the next, and running all the decoder's matmuls (same shapes, so the same megabytes of weights
to read per step) with nothing between them; and the decoder step alone at 1, 32 and 128 rows (fed
back its own output, no search around it), which separates what the graph does from what the
search around it costs. Every engine runs `--repeats` times, in turn; medians are reported.
Decoding uses the service's length guard (`max_length_factor`). ONNX Runtime engines run as the
server does, with the embedding tables (`service/embedding_tables.py`); `--without-tables NAME` adds
bundle NAME without them, in the same turns. FLOPs are those of the architecture either way (the
tables look up 7% of them for the demo model): a faster step shows as a higher rate.
Saves bench/results/engines.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences  # noqa: E402
from bench.provenance import write_result  # noqa: E402
from service.config import EMBEDDING_TABLES_MB  # noqa: E402
CONFIGS = [("greedy", 1, 1), ("greedy", 1, 32), ("greedy", 1, 128), ("beam 5", 5, 32)]
STEP_ROWS = (1, 32, 128)  # rows of the decoder step timed alone


def measure(kind: str, path: str, count: int, tables_mb: float) -> None:
    """Child process: time every configuration on one engine, print JSON lines."""
    from nmt.search import SearchOptions, pad_batch, translate_batch
    from nmt.tokenizer import Tokenizer
    from service.config import Defaults

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
        engine = OnnxEngine(bundle, threads=2, embedding_tables_mb=tables_mb)
        tok = Tokenizer(bundle.source_tokenizer)
    ids = tok.encode_batch(sample_sentences(count))
    counted = Counted(engine)
    # the service's length guard: without it one runaway sentence decoded alone for 80 steps
    factor = Defaults().max_length_factor
    for name, beam, batch in CONFIGS:
        n = min(len(ids), 64) if batch == 1 else len(ids)
        options = SearchOptions(beam_size=beam, max_length_factor=factor)
        translate_batch(counted, ids[:8], options, max_batch=batch)  # warm up
        counted.reset()
        started = time.perf_counter()
        translate_batch(counted, ids[:n], options, max_batch=batch)
        elapsed = time.perf_counter() - started
        print(json.dumps({"config": f"{name}, batch {batch}", "rate": n / elapsed,
                          "row_steps_per_s": counted.rows / (elapsed - counted.encode_s),
                          "rows_per_step": counted.rows / counted.steps,
                          "encoder_share": counted.encode_s / elapsed,
                          "source_tokens": sum(map(len, ids[:n])) / n}), flush=True)
    for rows in STEP_ROWS:  # the decoder step alone, fed back its own output: no search around it
        src, lengths = pad_batch([ids[i % len(ids)] for i in range(rows)])  # --sentences may be fewer
        state = engine.prepare(engine.encode(src, lengths))
        prev = np.full(rows, engine.bos_id, np.int64)
        for _ in range(5):  # warm up
            _, top_ids, _, state = engine.step(prev, state, 2)
            prev = top_ids[:, 0].astype(np.int64)
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            _, top_ids, _, state = engine.step(prev, state, 2)
            prev = top_ids[:, 0].astype(np.int64)
            steps += 1
        print(json.dumps({"step": f"decoder step alone, {rows} row{'s' if rows > 1 else ''}", "rows_per_step": float(rows),
                          "row_steps_per_s": rows * steps / (time.perf_counter() - started), "encoder_share": 0.0,
                          "source_tokens": float(lengths.mean())}), flush=True)


class Counted:
    """An engine that counts decoder rows and steps, times its calls, and counts the source
    positions the steps attend over: padded (the batch's width) and real (the mask's)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.reset()

    def reset(self) -> None:
        self.rows = self.steps = self.sentences = self.positions = self.real_positions = 0
        self.encode_s = self.step_s = 0.0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def encode(self, src_ids, src_lengths, shortlist=None):
        started = time.perf_counter()
        try:
            return self.engine.encode(src_ids, src_lengths, shortlist)
        finally:
            self.encode_s += time.perf_counter() - started
            self.sentences += len(src_ids)

    def step(self, prev_ids, state, k):
        self.rows += len(prev_ids)
        self.steps += 1
        self.positions += state["mask"].size
        self.real_positions += int(state["mask"].sum())
        started = time.perf_counter()
        try:
            return self.engine.step(prev_ids, state, k)
        finally:
            self.step_s += time.perf_counter() - started


def weight_shapes(arch: dict) -> list[tuple[int, int]]:
    """(inner, outer) of every weight matrix a decoder step multiplies by: the RNN's input and
    hidden Gemms, the additive attention's query layer, the output layer and the output projection."""
    E, H, O, V = arch["emb_size"], arch["decoder_hidden"], arch["output_size"], arch["tgt_vocab_size"]
    M, A = 2 * arch["encoder_hidden"], arch["attention_size"]
    gates = 3 if arch["rnn_type"] == "gru" else 4
    shapes = [(E + (O if arch["input_feeding"] else 0), gates * H), (H, gates * H)]
    if arch["attention"] == "additive":
        shapes.append((H, A))
    return shapes + [(H + M + E, O), (O, V)]


def row_step_flops(arch: dict, source_tokens: float) -> float:
    """Multiply-adds x 2 of one decoder step for one row (elementwise work left out)."""
    H, M, A, S = arch["decoder_hidden"], 2 * arch["encoder_hidden"], arch["attention_size"], source_tokens
    attention = (S * A + S * M) if arch["attention"] == "additive" else (S * H + S * M)
    return 2.0 * (sum(i * o for i, o in weight_shapes(arch)) + attention)


def matmul_gflops(rows: int, shapes: list[tuple[int, int]], threads: int = 2) -> float:
    """ONNX Runtime running nothing but MatMuls (rows, inner) x (inner, outer), one per shape, each
    on its own input: the hardware reference. One shape: its weights stay in the caches between
    runs; all the decoder's shapes: the decoder's own weights, read at every step."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights, feeds = [], [], [], [], {}
    for i, (inner, outer) in enumerate(shapes):
        nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"]))
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["n", inner]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["n", outer]))
        weights.append(numpy_helper.from_array(rng.standard_normal((inner, outer)).astype(np.float32), f"w{i}"))
        feeds[f"x{i}"] = rng.standard_normal((rows, inner)).astype(np.float32)
    graph = helper.make_graph(nodes, "reference", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, feeds)
    reps = max(20, 4000 // rows)
    started = time.perf_counter()
    for _ in range(reps):
        session.run(None, feeds)
    flops = sum(2.0 * rows * inner * outer for inner, outer in shapes)
    return flops * reps / (time.perf_counter() - started) / 1e9


def architecture(kind: str, path: str) -> dict:
    if kind == "onnx":
        return json.loads((Path(path) / "manifest.json").read_text())["architecture"]
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model_config"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "checkpoints" / "demo-de-en.pt"))
    p.add_argument("--bundle", action="append", metavar="NAME=PATH",
                   help="bundles to compare (default fp32=models/demo-de-en)")
    p.add_argument("--without-tables", action="append", default=[], metavar="NAME",
                   help="also run bundle NAME with the embedding tables off (--embedding-tables-mb 0)")
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="runs of every engine, in turn; medians reported")
    p.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        return measure(args.measure[0], args.measure[1], args.sentences, float(args.measure[2]))
    engines = [("pytorch", "pytorch", args.checkpoint, 0.0)]
    for item in args.bundle or [f"fp32={ROOT / 'models' / 'demo-de-en'}"]:
        name, _, path = item.partition("=")
        engines.append((f"onnx {name}", "onnx", path, EMBEDDING_TABLES_MB))
        if name in args.without_tables:
            engines.append((f"onnx {name}, no tables", "onnx", path, 0.0))
    # every engine `repeats` times, in turn: this shared machine's speed drifts over minutes
    runs: dict[str, list[dict[str, dict]]] = {label: [] for label, *_ in engines}
    for _ in range(args.repeats):
        for label, kind, path, tables_mb in engines:
            out = subprocess.run([sys.executable, __file__, "--measure", kind, path, str(tables_mb), "--sentences",
                                  str(args.sentences)], capture_output=True, text=True, check=True, cwd=ROOT)
            lines = [json.loads(line) for line in out.stdout.splitlines()]
            runs[label].append({r.pop("config", None) or r.pop("step"): r for r in lines})
    decoder = {label: {config: {field: statistics.median(run[config][field] for run in per_run)
                                for field in per_run[0][config]}
                       for config in per_run[0]}
               for label, per_run in runs.items()}  # medians, field by field
    results = {label: {config: d["rate"] for config, d in per_config.items() if "rate" in d}
               for label, per_config in decoder.items()}
    base = results.get("onnx fp32") or next(iter(results.values()))
    configs = list(next(iter(results.values())))
    archs = {label: architecture(kind, path) for label, kind, path, _ in engines}  # bundles may differ in vocabulary
    # average rows per step -> GFLOP/s of the output projection's MatMul alone (its fp32
    # weights stay in the caches) and of all the decoder's MatMuls (its whole weights, as a step reads them)
    reference: dict[tuple, tuple[float, float]] = {}
    for label, per_config in decoder.items():
        arch = archs[label]
        for config, d in per_config.items():
            rows = max(1, round(d["rows_per_step"]))
            key = (rows, tuple(weight_shapes(arch)))
            if key not in reference:
                reference[key] = tuple(statistics.median(matmul_gflops(rows, shapes) for _ in range(args.repeats))
                                       for shapes in (weight_shapes(arch)[-1:], weight_shapes(arch)))
            d["gflops"] = d["row_steps_per_s"] * row_step_flops(arch, d["source_tokens"]) / 1e9
            d["matmul_gflops"], d["weights_gflops"] = reference[key]
    write_result("engines", {"sentences": args.sentences, "configs": configs, "repeats": args.repeats,
                             "rates": {k: {c: round(v, 1) for c, v in r.items()} for k, r in results.items()},
                             "decoder": {k: {c: {n: round(v, 3) for n, v in d.items()} for c, d in r.items()}
                                         for k, r in decoder.items()}})
    print(f"\nsentences/s ({args.sentences} test sentences; ratio to onnx fp32)\n")
    print(f"{'engine':<24}" + "".join(f"{c:>22}" for c in configs))
    for label, rates in results.items():
        print(f"{label:<24}" + "".join(f"{rates[c]:>12.1f} ({rates[c] / base[c]:4.2f}x)" for c in configs))
    print("\ndecoder: row-steps/s, GFLOP/s, and the same as a share of the output projection's MatMul alone"
          " and of all the decoder's MatMuls, at the same average rows per step\n")
    print(f"{'engine':<24}{'config':<30}{'rows/step':>10}{'row-steps/s':>13}{'GFLOP/s':>9}"
          f"{'MatMul':>8}{'share':>7}{'all':>7}{'share':>7}{'encoder':>9}")
    for label, per_config in decoder.items():
        for config, d in per_config.items():
            print(f"{label:<24}{config:<30}{d['rows_per_step']:>10.1f}{d['row_steps_per_s']:>13.0f}"
                  f"{d['gflops']:>9.1f}{d['matmul_gflops']:>8.1f}{d['gflops'] / d['matmul_gflops']:>7.0%}"
                  f"{d['weights_gflops']:>7.0f}{d['gflops'] / d['weights_gflops']:>7.0%}{d['encoder_share']:>9.0%}")
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
