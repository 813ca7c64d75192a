"""The batcher without the gRPC front: the scheduler and the ONNX Runtime engine in one process,
32 client threads each submitting one sentence at a time (as `serve_bench.py`'s clients do over
gRPC), against the engine alone translating the same sentences in batches of 32. Separates what
the scheduler costs from what the server's front costs (`serve_bench.py` has the served rates),
and says where the scheduler's time went (from its own metrics): sentences admitted together,
encoding (with merging the new rows into the batch) per sentence, decoder rows and time per step;
and inside the engine (its calls timed around them, over all measured runs): the encoder per
sentence, a decoder row-step, and the source positions a row attends over, padded and real.

    python bench/batching.py [--bundle models/demo-de-en] [--sentences 256] [--repeats 7] [--threads 0]

Every configuration runs `--repeats` times, in turn with the others; medians reported, and
whether every configuration's outputs equal the engine alone's. Writes bench/results/batching.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences, sentence_source  # noqa: E402
from bench.engine_bench import Counted  # noqa: E402
from bench.provenance import write_result  # noqa: E402


def where_time_went(metrics) -> dict:
    """From a scheduler's own metrics: how it encoded and stepped."""
    v: dict[tuple, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            v[(sample.name, sample.labels.get("stage", ""))] = sample.value
    encodes, encode_s = v[("translator_inference_seconds_count", "encode")], v[("translator_inference_seconds_sum", "encode")]
    steps, step_s = v[("translator_inference_seconds_count", "decode")], v[("translator_inference_seconds_sum", "decode")]
    sentences = v[("translator_sentences_total", "")]
    return {"sentences_per_encode": round(sentences / encodes, 2), "encode_us_per_sentence": round(1e6 * encode_s / sentences, 1),
            "rows_per_step": round(v[("translator_batch_rows_sum", "")] / v[("translator_batch_rows_count", "")], 2),
            "step_us": round(1e6 * step_s / steps, 1)}


def inside_the_engine(engine) -> dict:
    """The engine's own calls, timed around them: what the encoder costs a sentence, what a decoder
    row-step costs, and the source positions a row attends over (padded to the batch's longest) and
    its real ones."""
    return {"encoder_us_per_sentence": round(1e6 * engine.encode_s / engine.sentences, 1),
            "row_step_us": round(1e6 * engine.step_s / engine.rows, 1),
            "positions_per_row": round(engine.positions / engine.rows, 1),
            "real_positions_per_row": round(engine.real_positions / engine.rows, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: the CPUs this process may use)")
    p.add_argument("--result", default="batching", help="name of the result file under bench/results/")
    args = p.parse_args()

    from nmt.bundle import load_bundle
    from nmt.search import SearchOptions, translate_batch
    from nmt.tokenizer import Tokenizer
    from service.config import Defaults, SchedulerConfig
    from service.metrics import Metrics
    from service.onnx_engine import OnnxEngine
    from service.scheduler import Job, Scheduler

    bundle = load_bundle(args.bundle)
    tok = Tokenizer(bundle.source_tokenizer)
    ids = [tok.encode(t) for t in sample_sentences(args.sentences)]
    factor = Defaults().max_length_factor

    alone = Counted(OnnxEngine(bundle, threads=args.threads))
    configs = {"continuous": SchedulerConfig(kind="continuous"),
               "continuous, encode ahead": SchedulerConfig(kind="continuous", encode_ahead=True),
               "static": SchedulerConfig(kind="static")}
    schedulers = {c: Scheduler(Counted(OnnxEngine(bundle, threads=args.threads)), "m", Metrics(), cfg)
                  for c, cfg in configs.items()}
    engines = {"engine alone": alone, **{c: s.engine for c, s in schedulers.items()}}
    for s in schedulers.values():
        s.start()

    def served(scheduler: Scheduler, options: SearchOptions) -> tuple[float, list]:
        outputs: list = [None] * len(ids)
        todo, lock = iter(range(len(ids))), threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                done = threading.Event()
                job = Job(ids[i], options, on_done=lambda _: done.set())
                scheduler.submit([job])
                done.wait()
                outputs[i] = job.hypotheses[0].token_ids
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(ids) / (time.perf_counter() - started), outputs

    def by_itself(options: SearchOptions) -> tuple[float, list]:
        started = time.perf_counter()
        hyps = translate_batch(alone, ids, options, max_batch=args.clients)
        return len(ids) / (time.perf_counter() - started), [h[0].token_ids for h in hyps]

    rows = []
    try:
        for beam in (1, 5):
            options = SearchOptions(beam_size=beam, max_length_factor=factor)
            runs: dict = {"engine alone": []}
            runs.update({c: [] for c in configs})
            _, reference = by_itself(options)
            same = {c: True for c in configs}
            for c, s in schedulers.items():
                served(s, options)  # warm up
                s.metrics = Metrics()  # count the measured runs only
            for engine in engines.values():
                engine.reset()
            for _ in range(args.repeats):
                runs["engine alone"].append(by_itself(options)[0])
                for c, s in schedulers.items():
                    rate, outputs = served(s, options)
                    runs[c].append(rate)
                    same[c] &= outputs == reference
            base = statistics.median(runs["engine alone"])
            for key, rates in runs.items():
                rate = statistics.median(rates)
                row = {"beam": beam, "config": key, "per_s": round(rate, 1), "runs": [round(r, 1) for r in rates],
                       "vs_engine": round(rate / base, 3), "identical": same.get(key, True)}
                if key in schedulers:
                    row.update(where_time_went(schedulers[key].metrics))
                row.update(inside_the_engine(engines[key]))
                rows.append(row)
                print(row, flush=True)
    finally:
        for s in schedulers.values():
            s.stop()
    print("\n| beam | configuration | sentences/s | vs the engine alone | outputs identical |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['beam']} | {r['config']} | {r['per_s']:.1f} | {r['vs_engine']:.0%} | {'yes' if r['identical'] else 'no'} |")
    print("\n| beam | scheduler | sentences admitted together | encode + merge, us per sentence | rows per step | us per step |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "rows_per_step" in r:
            print(f"| {r['beam']} | {r['config']} | {r['sentences_per_encode']:.1f} | {r['encode_us_per_sentence']:.0f} "
                  f"| {r['rows_per_step']:.1f} | {r['step_us']:.0f} |")
    print("\n| beam | configuration | encoder, us per sentence | decoder, us per row-step | source positions per row, padded / real |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['beam']} | {r['config']} | {r['encoder_us_per_sentence']:.0f} | {r['row_step_us']:.1f} "
              f"| {r['positions_per_row']:.1f} / {r['real_positions_per_row']:.1f} |")
    write_result(args.result, {"sentences_from": sentence_source(), "sentences": len(ids), "clients": args.clients,
                               "repeats": args.repeats, "threads": args.threads, "bundle": Path(args.bundle).name,
                               "rows": rows})


if __name__ == "__main__":
    main()
