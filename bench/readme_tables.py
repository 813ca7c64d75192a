"""The README's measured tables, generated from the result files under bench/results/ (each records
its CPU, versions, commit and command). Figures are never typed into the README by hand.

    python bench/readme_tables.py           # rewrite the tables between <!-- table:NAME --> markers
    python bench/readme_tables.py --check   # exit 1 when the README and the result files disagree
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def _source(*results: dict) -> str:
    parts = []
    for r in results:
        p = r["provenance"]
        flags = p["cpu"].get("flags", [])
        # the widest vector set, and AVX-VNNI beside it: two machines both called "AMD EPYC" here differ by it
        isa = ", ".join([name for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
                         if flag in flags][:1] + (["AVX-VNNI"] if "avx_vnni" in flags else []))
        ort = p.get("versions", {}).get("onnxruntime")
        parts.append(f"`{p['command']}` at {p['commit'][:10]}{' (uncommitted changes)' if p.get('dirty') else ''}, "
                     f"{p['cpu']['model']} ({p['cpu']['cores']} cores{', ' + isa if isa else ''})"
                     f"{', ONNX Runtime ' + ort if ort else ''}, {p['date'][:10]}")
    return "Source: " + "; ".join(parts) + "."


def robustness() -> str:
    now = _load("robustness-test-demo-de-en")
    before = _load("robustness-test-previous-demo-as-typed")
    old = {r["variant"]: r for r in before["rows"]}
    lines = ["| input (test_2016_flickr, beam 5) | texts | BLEU | degenerate | verbatim | before: BLEU | before: degenerate | before: verbatim |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cells(r):
        if r is None:
            return ["", "", ""]
        bleu = "" if r["bleu"] is None else f"{r['bleu']:.2f}"
        if "one_by_one_bleu" in r:
            bleu += f" (one by one {r['one_by_one_bleu']:.2f})"
        verbatim = f"{r['verbatim']:.1f}% of {r['items']}{' ' + r['unit'] if 'unit' in r else ''}" if "verbatim" in r else ""
        return [bleu, f"{r['degenerate']:.1f}%", verbatim]

    for r in now["rows"]:
        lines.append("| " + " | ".join([r["variant"], str(r["texts"])] + cells(r) + cells(old.get(r["variant"]))) + " |")
    brackets, emoji = _load("robustness-test-no-brackets"), _load("robustness-test-no-emoji-apart")
    asides, quotes = _load("robustness-test-no-asides"), _load("robustness-test-no-quotations")
    typed = _load("robustness-test-no-localize")
    [b], [a], [q] = brackets["rows"], asides["rows"], quotes["rows"]
    t = {r["variant"]: r for r in typed["rows"]}
    numbers, written = t["numbers and dates (written)"], t["protected items (written)"]
    e = {r["variant"]: r for r in emoji["rows"]}
    edge, inner = e["an emoji at the start or end"], e["an emoji inside"]
    return ("\n".join(lines) + f"\n\nThe same model without the bracket rule (`--no-brackets`), a phrase in brackets: "
            f"BLEU {b['bleu']:.2f}, {b['verbatim']:.1f}% of {b['items']} bracket pairs kept, {b['degenerate']:.1f}% "
            f"degenerate; with emoji given to the model as placeholders (`--no-emoji-apart`): at the start or "
            f"end BLEU {edge['bleu']:.2f}, inside BLEU {inner['bleu']:.2f} with {inner['verbatim']:.1f}% of "
            f"{inner['items']} emoji once; with a number in brackets given to the model (`--no-asides`): BLEU "
            f"{a['bleu']:.2f} with {a['verbatim']:.1f}% of {a['items']} asides once; with quotations given to the "
            f"model (`--no-quotations`): BLEU {q['bleu']:.2f} with {q['verbatim']:.1f}% of {q['items']} quotations "
            f"in quotes; with numbers and dates as typed (`--no-localize`): numbers and dates (written) BLEU "
            f"{numbers['bleu']:.2f} with {numbers['verbatim']:.1f}% of {numbers['items']} as English writes them, "
            f"protected items (written) BLEU {written['bleu']:.2f}.\n\n"
            + _source(now, before, brackets, emoji, asides, quotes, typed))


def guards() -> str:
    g = _load("guards-val-demo-de-en")
    lines = [f"| guard (validation, beam {g['beam']}) | BLEU | vs none | degenerate | two-word fragments BLEU |",
             "|---|---|---|---|---|"]
    for r in g["rows"]:
        lines.append(f"| {r['guard']} | {r['bleu']:.2f} | {r['delta']:+.2f} | {r['degenerate']:.1f}% | "
                     f"{r['fragments_bleu']:.2f} |")
    return "\n".join(lines) + "\n\n" + _source(g)


def segmenters() -> str:
    s = _load("segmenters")
    lines = ["| segmenter | German cases right | English cases right |", "|---|---|---|"]
    by = {}
    for r in s["rows"]:
        by.setdefault(r["segmenter"], {})[r["lang"]] = f"{r['correct']}/{r['cases']}"
    for name, langs in by.items():
        lines.append(f"| {name} | {langs.get('de', '')} | {langs.get('en', '')} |")
    return "\n".join(lines) + "\n\n" + _source(s)


def demo_scores() -> str:
    rows = ["| bundle | decoding | BLEU | chrF | signature |", "|---|---|---|---|---|"]
    sources = []
    for name in ("demo-de-en", "demo-de-en-int8"):
        path = ROOT / "models" / name / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for key, score in sorted(manifest.get("scores", {}).items()):
            rows.append(f"| `{name}` | {key} | {score['bleu']:.2f} | {score['chrf']:.2f} | `{score['bleu_signature']}` |")
        sources.append(f"`models/{name}/manifest.json`")
    return "\n".join(rows) + "\n\nSource: " + ", ".join(sources) + "."


def quantization() -> str:
    rows = ["| bundle | size | greedy BLEU (ONNX Runtime) | greedy identical to PyTorch | identical alone vs in a batch |",
            "|---|---|---|---|---|"]
    for name in ("demo-de-en", "demo-de-en-int8"):
        folder = ROOT / "models" / name
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        v = manifest["verification"]
        size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        rows.append(f"| `{name}` ({manifest['quantization']}) | {size:.1f} MB | {v['bleu_greedy_onnx']:.2f} | "
                    f"{v['parity_greedy']['identical']:.1%} of {v['parity_greedy']['sentences']} | "
                    f"{v['batch_invariance']['identical']:.1%} of {v['batch_invariance']['sentences']} |")
    return "\n".join(rows) + "\n\nSource: `models/demo-de-en*/manifest.json` (export-time checks)."


def _variants(names: list[tuple[str, str]], variants: list[str]) -> str:
    results = [(label, _load(name)) for label, name in names]
    lines = ["| rule (validation, beam 5) | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for label, r in results:
        by = {row["variant"]: row for row in r["rows"]}
        lines.append(f"| {label} | " + " | ".join(f"{by[v]['bleu']:.2f}" for v in variants) + " |")
    return "\n".join(lines) + "\n\n" + _source(*(r for _, r in results))


def casing() -> str:
    return _variants([("as typed (augmentation only)", "robustness-val-casing-none"),
                      ("all-caps input lower-cased", "robustness-val-casing-lower"),
                      ("truecasing (served)", "robustness-val-casing-truecase")],
                     ["clean", "lower-cased", "UPPER-CASED", "Title Cased"])


def punctuation() -> str:
    return _variants([("as typed", "robustness-val-punctuation-as-typed"),
                      ("full stop completed (served)", "robustness-val-punctuation-complete")],
                     ["clean", "no final punctuation", "two-word fragments"])


def soak() -> str:
    r = _load("soak")
    v = r["verdict"]
    lines = [f"Soak, `python bench/soak.py`: {r['requests']:,} one-sentence greedy requests from {r['clients']} "
             f"concurrent clients, in blocks of {r['block']:,}:", "",
             "| block | requests served | requests/s | server RSS (MB) |", "|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['block']} | {row['requests']:,} | {row['per_s']:.1f} | {row['rss_mb']:.1f} |")
    lines += ["", f"Last block's throughput is {v['last_vs_first_throughput']:.1%} of the first's; RSS grew "
              f"{v['rss_growth_mb']:+.1f} MB from the first block to the last; {v['errors']} errors."]
    return "\n".join(lines) + "\n\n" + _source(r)


def serve(name: str = "serve") -> str:
    r = _load(name)
    lines = ["| clients | scheduler | beam | sentences/s | vs one client | sentences per decoder step | p50 / p99 ms "
             "| outputs identical | vs the engine alone |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        vs = f"{row['vs_engine']:.0%}" if "vs_engine" in row and row["clients"].endswith("concurrent") else ""
        lines.append(f"| {row['clients']} | {row['scheduler']} | {row['beam']} | {row['per_s']:.1f} | {row['ratio']:.2f}x | "
                     f"{row['batch']:.1f} | {row['p50_ms']} / {row['p99_ms']} | {row['identical']:.0%} | {vs} |")
    alone = ", ".join(f"beam {b}: {v:.1f} sentences/s" for b, v in r.get("engine_alone", {}).items())
    note = (f"\n\nThe engine alone (same sentences, same text pipeline, batches of {r['engine_batch']}, in its "
            f"own process, same run): {alone}." if alone else "")
    if r.get("repeats", 1) > 1:
        note += (f" Medians of {r['repeats']} runs of every configuration, taken in turn; latency percentiles "
                 "over all their ordinary calls.")
    throttled = [f"{row['scheduler'].removeprefix('continuous, ')}, {row['clients']}, beam {row['beam']}: "
                 f"{row['throttled_periods']:.0%}" for row in r["rows"] if "throttled_periods" in row]
    if throttled:
        note += (" Pods: the share of CFS periods (100 ms) in which a pod's CPU quota ran out and held it back "
                 "(Kubernetes' container_cpu_cfs_throttled_periods_total over its periods): " + "; ".join(throttled) + ".")
    by = {(row["clients"], row["beam"], row["scheduler"]): row for row in r["rows"]}
    schedulers = {row["scheduler"] for row in r["rows"]}
    pairs = [(f"{clients}, beam {beam}" + scheduler.removeprefix("continuous"), row,
              by[clients, beam, _static_for(scheduler, schedulers)])
             for (clients, beam, scheduler), row in by.items()
             if scheduler.startswith("continuous") and (clients, beam, "static") in by]
    if pairs:  # what the issue's targets for continuous batching read
        lines += ["", "| continuous batching against static | sentences/s, continuous over static "
                  "| p99 of the ordinary calls, static over continuous |", "|---|---|---|"]
        lines += [f"| {what} | {cont['per_s'] / stat['per_s']:.0%} | {stat['p99_ms'] / cont['p99_ms']:.2f}x |"
                  for what, cont, stat in pairs]
    return "\n".join(lines) + note + "\n\n" + _source(r)


def _static_for(scheduler: str, schedulers: set[str]) -> str:
    """The static batching to hold a continuous configuration against: static in the same layout
    ("continuous, 2 replicas ..." against "static, 2 replicas ...") where measured, else the one
    static server."""
    same_layout = "static" + scheduler.removeprefix("continuous")
    return same_layout if same_layout in schedulers else "static"


def serve_machines() -> str:
    """The service's targets on each machine measured: what the engine alone does, what the
    scheduler keeps of it without the gRPC front, and what 32 clients get over gRPC; continuous
    batching with and without encode ahead, and as replicas where measured."""
    setups = [("2 cores, shared by everything", "serve", "batching"),
              ("2 cores, ONNX Runtime on 1", "serve-one-cpu-pod", None),
              ("16 cores, ONNX Runtime on 2", "serve-spare-cores", "batching-spare-cores"),
              ("16 cores, ONNX Runtime on all 16", "serve-all-cores", None)]
    lines = ["| machine | scheduler | engine alone, sentences/s | scheduler without gRPC, share of its engine alone "
             "| served, 32 clients, share of the engine alone "
             "| served, share of the same layout's engines alone | over static, sentences/s "
             "| 1 in 4 long: ordinary calls' p99 (p50), static over it "
             "| 1 in 4 long: ordinary calls' p99 over their p99 with no long calls (static's) |",
             "|---|---|---|---|---|---|---|---|---|"]
    sources = []
    for label, serve_name, batching_name in setups:
        r = _load(serve_name)
        sources.append(r)
        by = {(row["clients"], row["scheduler"], row["beam"]): row for row in r["rows"]}
        clients, long = f"{r['engine_batch']} concurrent", f"{r['engine_batch']}, 1 in 4 long"
        share = {}
        if batching_name:
            b = _load(batching_name)
            sources.append(b)
            share = {(row["beam"], row["config"]): row["vs_engine"] for row in b["rows"]}
        schedulers = {row["scheduler"] for row in r["rows"]}
        for variant in dict.fromkeys(row["scheduler"] for row in r["rows"] if row["scheduler"].startswith("continuous")):
            if (clients, variant, 1) not in by:
                continue
            stat = _static_for(variant, schedulers)
            static, ordinary = by[long, stat, 1], by[long, variant, 1]
            scheduler = " / ".join(f"{share[beam, variant]:.0%}" for beam in (1, 5)) if (1, variant) in share else ""
            lines.append(
                f"| {label} | {variant} | {r['engine_alone']['1']:.1f} / {r['engine_alone']['5']:.1f} | {scheduler} | "
                + " / ".join(f"{by[clients, variant, beam]['vs_engine']:.0%}" for beam in (1, 5)) + " | "
                + _layout_share(by, clients, variant) + " | "
                + " / ".join(f"{by[clients, variant, beam]['per_s'] / by[clients, stat, beam]['per_s']:.0%}"
                             for beam in (1, 5))
                + f" | {static['p99_ms'] / ordinary['p99_ms']:.2f}x ({static['p50_ms'] / ordinary['p50_ms']:.2f}x) "
                + f"| {ordinary['p99_ms'] / by[clients, variant, 1]['p99_ms']:.2f}x "
                + f"({static['p99_ms'] / by[clients, stat, 1]['p99_ms']:.2f}x) |")
    note = ("Sentences/s, shares and ratios: beam 1 / beam 5, each against the engine alone of its own run (the "
            "scheduler's without the text pipeline, the served one's with it). \"The same layout's engines alone\": "
            "as many engines as the layout has replicas, engine processes or workers, each with its share of the threads, "
            "the sentences and the batch, side by side. The long mix is greedy; its last "
            "column divides by the same scheduler's 32-concurrent row of the same run.")
    return "\n".join(lines) + "\n\n" + note + "\n\n" + _source(*sources)


def _layout_share(by: dict, clients: str, variant: str) -> str:
    """Served over the engines alone as the layout runs them (N engines of threads/N side by side);
    for one server that is the one engine alone. Empty for results measured before it was."""
    rows = [by[clients, variant, beam] for beam in (1, 5)]
    if all("vs_layout_engines" in row for row in rows):
        return " / ".join(f"{row['vs_layout_engines']:.0%}" for row in rows)
    return "" if "replicas" in variant or "processes" in variant else " / ".join(f"{row['vs_engine']:.0%}" for row in rows)


def serve_profile() -> str:
    r = _load("serve-profile")
    rows = r["rows"]
    threads = ("scheduler", "event loop")
    buckets = list(dict.fromkeys(b for row in rows for t in threads for b in row["busy_share"].get(t, {})))
    head = " | ".join(f"{t} thread, beam {row['beam']}" for t in threads for row in rows)
    lines = [f"| where the busy time of a thread went | {head} |", "|---" * (1 + len(threads) * len(rows)) + "|"]
    for b in buckets:
        cells = []
        for t in threads:
            for row in rows:
                share = row["busy_share"].get(t, {}).get(b)
                cells.append("" if not share else f"{share:.0%}" if share >= 0.005 else "<1%")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    cpu = "; ".join(f"beam {row['beam']} ({row['per_s']:.1f} sentences/s): "
                    + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_cores"].items()) for row in rows)
    text = "\n".join(lines) + f"\n\nCPU cores used, by thread: {cpu}.\n\n"
    beside = [row for row in rows if "beside_the_front" in row]
    if beside:
        text += ("| beam | the front's CPU (all but the scheduler and ONNX Runtime, plus the clients), cores "
                 "| engine alone, sentences/s | engine alone beside that load | served (not sampled) |\n|---|---|---|---|---|\n")
        for row in beside:
            b = row["beside_the_front"]
            alone, loaded, served = (b["rates"][k] for k in ("engine alone", "engine alone beside the load", "served"))
            text += (f"| {row['beam']} | {b['front_cores']:.2f} | {alone:.1f} | {loaded:.1f} ({loaded / alone:.0%}) "
                     f"| {served:.1f} ({served / alone:.0%}) |\n")
        text += f"\nMedians of {r['repeats']} runs of each, taken in turn.\n\n"
    return text + _source(r)


def engines() -> str:
    r = _load("engines")
    configs = r["configs"]
    base = r["rates"].get("onnx fp32") or next(iter(r["rates"].values()))
    lines = ["| engine | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    for engine, rates in r["rates"].items():
        lines.append(f"| {engine} | " + " | ".join(f"{rates[c]:.1f} ({rates[c] / base[c]:.2f}x)" for c in configs) + " |")
    ratios = []  # (what, numerator, denominator): what the issue's targets and the prose read
    if "pytorch" in r["rates"]:
        ratios += [(f"{e} over pytorch", e, "pytorch") for e in r["rates"] if e != "pytorch"]
    ratios += [(f"{e.removesuffix(', no tables')} with the embedding tables over without", e.removesuffix(", no tables"), e)
               for e in r["rates"] if e.endswith(", no tables")]
    if ratios:
        lines += ["", "| ratio | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
        lines += [f"| {what} | " + " | ".join(f"{r['rates'][a][c] / r['rates'][b][c]:.2f}x" for c in configs) + " |"
                  for what, a, b in ratios]
    return "\n".join(lines) + "\n\n" + _source(r)


def decoder() -> str:
    r = _load("engines")
    lines = ["| engine | configuration | rows per step | decoder row-steps/s | GFLOP/s | reference: projection alone "
             "| share | reference: all the decoder's MatMuls | share | encoder share of time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for engine, per_config in r["decoder"].items():
        for config, d in per_config.items():
            lines.append(f"| {engine} | {config} | {d['rows_per_step']:.1f} | {d['row_steps_per_s']:.0f} | {d['gflops']:.1f} "
                         f"| {d['matmul_gflops']:.1f} | {d['gflops'] / d['matmul_gflops']:.0%} "
                         f"| {d['weights_gflops']:.1f} | {d['gflops'] / d['weights_gflops']:.0%} | {d['encoder_share']:.0%} |")
    return "\n".join(lines) + "\n\n" + _source(r)


def step_profile() -> str:
    r = _load("step-profile-demo-de-en")
    rows = r["rows"]
    parts = {int(k): v for k, v in r["parts_us"].items()}
    names = sorted({k for v in parts.values() for k in v}, key=lambda k: (-parts[rows[-1]].get(k, 0.0), k))  # ties: by name
    lines = ["| part of the decoder step (kind of node) | " + " | ".join(f"{n} row{'s' if n > 1 else ''}" for n in rows) + " |",
             "|---" * (len(rows) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{parts[n].get(name, 0.0):.0f} us ({parts[n].get(name, 0.0) / sum(parts[n].values()):.0%})"
                                                 for n in rows) + " |")
    lines.append("| the step (sum of its kernels) | " + " | ".join(f"{sum(parts[n].values()):.0f} us" for n in rows) + " |")
    lines += ["", "| output projection's MatMul, GFLOP/s | " + " | ".join(f"{n} row{'s' if n > 1 else ''}" for n in rows) + " |",
              "|---" * (len(rows) + 1) + "|"]
    for how in next(iter(r["projection_gflops"].values())):
        lines.append(f"| {how} | " + " | ".join(f"{r['projection_gflops'][str(n)][how]:.0f}" for n in rows) + " |")
    if "scores" in r:
        lines += ["", "| the attention's scoring node, MatMul as exported -> Einsum as run | "
                  + " | ".join(f"{n} row{'s' if n > 1 else ''}" for n in rows) + " |", "|---" * (len(rows) + 1) + "|"]
        for key, what in (("scores_us", "the node"), ("step_us", "the step (sum of its kernels)")):
            lines.append(f"| {what} | " + " | ".join(
                f"{r['scores'][str(n)]['MatMul'][key]:.0f} -> {r['scores'][str(n)]['Einsum'][key]:.0f} us" for n in rows) + " |")
    return "\n".join(lines) + "\n\n" + _source(r)


def shortlist() -> str:
    r = _load("shortlist")
    lines = [f"| shortlist (frequent x per source token) | candidates per sentence | union per batch of {r['batch']} "
             f"(of {r['vocabulary']}) | decoding | sentences/s full -> shortlist | speed | BLEU full -> shortlist "
             "| identical to full |", "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for name, c in row["configs"].items():
            decoding = name if "batch 1" in name else f"{name}, batch {r['batch']}"
            lines.append(f"| {row['size']} | {row['candidates_per_sentence']:.0f} | {row['union_per_batch']:.0f} | {decoding} "
                         f"| {c['full']:.1f} -> {c['shortlist']:.1f} | {c['speedup']:.2f}x "
                         f"| {c['bleu_full']:.2f} -> {c['bleu_shortlist']:.2f} | {c['identical']:.1%} |")
    return "\n".join(lines) + "\n\n" + _source(r)


def batching(name: str = "batching") -> str:
    r = _load(name)
    lines = ["| beam | configuration | sentences/s | vs the engine alone | sentences admitted together "
             "| encode + merge, us per sentence | rows per step | us per step |", "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        detail = (f"{row['sentences_per_encode']:.1f} | {row['encode_us_per_sentence']:.0f} | {row['rows_per_step']:.1f} "
                  f"| {row['step_us']:.0f}") if "step_us" in row else " |  |  | "
        lines.append(f"| {row['beam']} | {row['config']} | {row['per_s']:.1f} | {row['vs_engine']:.0%} | {detail} |")
    lines += ["", "| beam | configuration | encoder, us per sentence | decoder, us per row-step "
              "| source positions per row, padded / real |", "|---|---|---|---|---|"]
    lines += [f"| {row['beam']} | {row['config']} | {row['encoder_us_per_sentence']:.0f} | {row['row_step_us']:.1f} "
              f"| {row['positions_per_row']:.1f} / {row['real_positions_per_row']:.1f} |"
              for row in r["rows"] if "row_step_us" in row]
    same = all(row["identical"] for row in r["rows"])
    per_s = {(row["beam"], row["config"]): row["per_s"] for row in r["rows"]}
    versus = ", ".join(f"beam {b} {per_s[b, 'continuous'] / per_s[b, 'static']:.0%}" for b in sorted({b for b, _ in per_s})
                       if (b, "continuous") in per_s and (b, "static") in per_s)
    note = (f"Medians of {r['repeats']} runs of every configuration, taken in turn; {r['sentences']} test sentences; "
            f"outputs {'identical to the engine alone in every run' if same else 'NOT all identical to the engine alone'}. "
            "Second table: the engine's calls timed around them, over all the measured runs."
            + (f" Continuous batching's sentences/s as a share of static's: {versus}." if versus else ""))
    return "\n".join(lines) + "\n\n" + note + "\n\n" + _source(r)


def embedding_tables() -> str:
    r = _load("embedding-tables")
    lines = ["| bundle (kernels) | decoding | BLEU, tables off -> on | outputs identical | engine's resident memory, off -> on |",
             "|---|---|---|---|---|"]
    lines += [f"| {x['bundle']} ({x['kernels']}) | {x['decoding']} | {x['bleu_off']:.2f} -> {x['bleu_on']:.2f} "
              f"| {x['identical']:.1%} | {x['engine_mb']:.0f} -> {x['engine_with_tables_mb']:.0f} MB "
              f"(tables {x['tables_mb']:.0f} MB) |" for x in r["rows"]]
    return (f"{r['sentences']} {r['split']} captions through the served text pipeline.\n\n" + "\n".join(lines)
            + "\n\n" + _source(r))


def vocab_trim() -> str:
    r = _load("vocab-trim")
    pieces = r["target_pieces"]
    lines = [f"| set | decoding | BLEU, {pieces['full']} -> {pieces['trimmed']} target pieces | outputs identical |",
             "|---|---|---|---|"]
    for q in r["quality"]:
        lines.append(f"| {q['split']} | {q['decoding']} | {q['bleu_full']:.2f} -> {q['bleu_trimmed']:.2f} | {q['identical']:.1%} |")
    lines += ["", f"| decoding (ONNX Runtime fp32) | sentences/s, {pieces['full']} -> {pieces['trimmed']} target pieces | speed |",
              "|---|---|---|"]
    for row in r["speed"]:
        lines.append(f"| {row['decoding']} | {row['full']:.1f} -> {row['trimmed']:.1f} | {row['trimmed'] / row['full']:.2f}x |")
    return "\n".join(lines) + "\n\n" + _source(r)


TABLES = {"embedding_tables": embedding_tables, "batching": batching, "vocab_trim": vocab_trim, "step_profile": step_profile, "serve_profile": serve_profile, "decoder": decoder, "shortlist": shortlist, "serve": serve, "serve_machines": serve_machines,
          "serve_spare_cores": lambda: serve("serve-spare-cores"), "serve_one_cpu_pod": lambda: serve("serve-one-cpu-pod"), "batching_spare_cores": lambda: batching("batching-spare-cores"), "engines": engines, "soak": soak, "casing": casing, "punctuation": punctuation, "quantization": quantization, "robustness": robustness, "guards": guards, "segmenters": segmenters, "demo_scores": demo_scores}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- table:{name} --> block")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md tables differ from bench/results/: run python bench/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
