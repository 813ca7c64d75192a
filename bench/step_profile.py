"""Where a decoder step's time goes, by ONNX Runtime's own profiler, and why its matmuls run slower
inside the step than alone.

    python bench/step_profile.py [--bundle models/demo-de-en] [--rows 1,32,128]

First table: the decoder session of a bundle, run as the service runs it (same session options),
fed a batch of test sentences' encoder states; every node's kernel time summed by the part of the
model it belongs to (its name in the exported graph) and by kind (matrix products vs the rest), in
microseconds per step and as a share of the step.
Second table: the output projection's matmul (rows x output size x target vocabulary) timed by the
profiler in a graph of its own, then with the decoder's other matmuls (same shapes, their weights
too) run between its runs, and inside the decoder step: the cache experiment behind the two references of
`engine_bench.py`.
Third table: the attention's scoring node as exported (a MatMul by a one-column weight) and as the
service runs it (Einsum, `service/one_column_matmuls.py`), in the same run.
Writes bench/results/step-profile-<bundle>.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences  # noqa: E402
from bench.engine_bench import weight_shapes  # noqa: E402
from bench.provenance import write_result  # noqa: E402

MATMULS = {"Gemm", "FusedGemm", "MatMul", "Einsum", "FusedMatMul", "MatMulNBits", "MatMulInteger", "DynamicQuantizeMatMul"}
PARTS = (("/generator/", "output projection"), ("/decoder/rnn/", "RNN"), ("/decoder/output_layer", "output layer"),
         ("/decoder/Tanh", "output layer"), ("/decoder/attention/", "attention"), ("/LogSoftmax", "LogSoftmax, TopK"),
         ("topk", "LogSoftmax, TopK"), ("/tgt_embed/", "embedding"))
STEPS = 200
SCORES = "/decoder/attention/energy_layer/"  # the attention's scoring node (service/one_column_matmuls.py)
REPEATS = 3  # the scoring node's two forms, taken in turn


def part_of(node: str, op: str) -> str:
    name = node.removeprefix("fused ")
    part = next((label for prefix, label in PARTS if name.startswith(prefix)), "other")
    return f"{part}: {'matmuls' if op in MATMULS else 'elementwise and the rest'}"


def profiled(model, directory: str):
    import onnxruntime as ort

    from service.onnx_engine import session_options

    options = session_options()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(directory) / "step")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def node_times(session, feed: dict, runs: int) -> dict[tuple[str, str], float]:
    """Run `runs` times after 20 warm-up runs; -> (node, op type) -> median microseconds per run."""
    for _ in range(20):
        session.run(None, feed)
    for _ in range(runs):
        session.run(None, feed)
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[(event["name"].removesuffix("_kernel_time"), event["args"]["op_name"])].append(event["dur"])
    return {key: float(np.median(values[-runs:])) for key, values in times.items()}


def decoder_parts(bundle_path: str, rows: int, directory: str, einsum_scores: bool = True) -> dict[str, float]:
    from nmt.bundle import load_bundle
    from nmt.search import pad_batch
    from nmt.tokenizer import Tokenizer
    from service.onnx_engine import OnnxEngine

    bundle = load_bundle(bundle_path)
    engine = OnnxEngine(bundle, threads=2, einsum_scores=einsum_scores)
    src, lengths = pad_batch(Tokenizer(bundle.source_tokenizer).encode_batch(sample_sentences(rows)))
    state = engine.prepare(engine.encode(src, lengths))
    feed = {name: state[name] for name in engine.state_names + list(engine.SOURCE_KEYS)}
    feed["prev_ids"] = np.full(rows, engine.bos_id, np.int64)
    feed["k"] = np.array([2], np.int64)
    graph = engine._graph(bundle.manifest["graphs"]["decoder"], decoder=True)  # as the service runs it
    session = profiled(graph if isinstance(graph, str) else graph.SerializeToString(), directory)
    parts: dict[str, float] = collections.Counter()
    for (node, op), us in node_times(session, feed, STEPS).items():
        parts[part_of(node, op)] += us
        if node.startswith(SCORES):
            parts["scores"] += us  # also counted in its part
    return dict(parts)


def projection_rate(shapes: list[tuple[int, int]], rows: int, directory: str) -> float:
    """GFLOP/s of the first MatMul (the projection) in a graph of `shapes` MatMuls, by the profiler."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights, feed = [], [], [], [], {}
    for i, (inner, outer) in enumerate(shapes):
        nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"], name=f"matmul{i}"))
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["n", inner]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["n", outer]))
        weights.append(numpy_helper.from_array(rng.standard_normal((inner, outer)).astype(np.float32), f"w{i}"))
        feed[f"x{i}"] = rng.standard_normal((rows, inner)).astype(np.float32)
    model = helper.make_model(helper.make_graph(nodes, "reference", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 18)])
    times = node_times(profiled(model.SerializeToString(), directory), feed, STEPS)
    inner, outer = shapes[0]
    return 2.0 * rows * inner * outer / times[("matmul0", "MatMul")] / 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--rows", default="1,32,128")
    args = p.parse_args()
    from service.onnx_engine import _global_pool

    _global_pool(2)
    rows = [int(r) for r in args.rows.split(",")]
    arch = json.loads((Path(args.bundle) / "manifest.json").read_text())["architecture"]
    shapes = weight_shapes(arch)
    projection_first = shapes[-1:] + shapes[:-1]
    with tempfile.TemporaryDirectory() as directory:
        parts = {r: decoder_parts(args.bundle, r, directory) for r in rows}
        for r in rows:
            parts[r].pop("scores", None)  # the scoring node, timed below
        # the attention's scores as exported (a MatMul by a one-column weight) and as run, in turn
        forms = {(r, einsum): [] for r in rows for einsum in (False, True)}
        for _ in range(REPEATS):
            for r, einsum in forms:
                forms[r, einsum].append(decoder_parts(args.bundle, r, directory, einsum_scores=einsum))
        scores = {r: {form: {"scores_us": float(np.median([p["scores"] for p in forms[r, einsum]])),
                             "step_us": float(np.median([sum(v for k, v in p.items() if k != "scores")
                                                         for p in forms[r, einsum]]))}
                      for form, einsum in (("MatMul", False), ("Einsum", True))} for r in rows}
        inner, outer = shapes[-1]
        cache = {r: {"alone": projection_rate(shapes[-1:], r, directory),
                     "with the other matmuls": projection_rate(projection_first, r, directory),
                     "inside the decoder step": 2.0 * r * inner * outer / parts[r]["output projection: matmuls"] / 1e3}
                 for r in rows}
    write_result(f"step-profile-{Path(args.bundle).name}", {"bundle": Path(args.bundle).name, "rows": rows,
                                  "parts_us": {str(r): {k: round(v, 1) for k, v in parts[r].items()} for r in rows},
                                  "projection_gflops": {str(r): {k: round(v, 1) for k, v in cache[r].items()}
                                                        for r in rows},
                                  "scores": {str(r): {form: {k: round(v, 1) for k, v in t.items()}
                                                      for form, t in scores[r].items()} for r in rows}})
    names = sorted({k for r in rows for k in parts[r]}, key=lambda k: -parts[rows[-1]].get(k, 0.0))
    print(f"\n{'part of the step':<52}" + "".join(f"{f'{r} rows':>18}" for r in rows))
    for name in names:
        print(f"{name:<52}" + "".join(f"{parts[r].get(name, 0.0):>9.0f} us {parts[r].get(name, 0.0) / sum(parts[r].values()):>4.0%}"
                                      for r in rows))
    print(f"{'step (sum of kernels)':<52}" + "".join(f"{sum(parts[r].values()):>9.0f} us     " for r in rows))
    print(f"\nthe attention's scoring node as a MatMul (exported) -> as Einsum (run), medians of {REPEATS} in turn: "
          "the node; the step")
    for r in rows:
        m, e = scores[r]["MatMul"], scores[r]["Einsum"]
        print(f"{r:>4} rows: {m['scores_us']:.0f} -> {e['scores_us']:.0f} us; {m['step_us']:.0f} -> {e['step_us']:.0f} us")
    print("\noutput projection's MatMul, GFLOP/s by the profiler")
    for r in rows:
        print(f"{r:>4} rows: alone {cache[r]['alone']:.0f}, with the decoder's other matmuls between runs "
              f"{cache[r]['with the other matmuls']:.0f}, inside the decoder step {cache[r]['inside the decoder step']:.0f}")


if __name__ == "__main__":
    main()
