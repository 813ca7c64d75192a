"""Does batching pay? One client at a time vs 32 concurrent clients (one sentence per call), with
continuous and static batching, greedy and beam search, against the real server on loopback.

    python bench/serve_bench.py [--bundle models/demo-de-en] [--sentences 256] [--clients 32] [--repeats 3]
                                [--threads 0] [--result serve]

Prints a table (sentences/s, ratio to one client at a time, mean sentences per executed decoder
step, p50/p99 latency, outputs identical to the one-at-a-time run, and the share of what the engine
alone does with the same sentences in batches of 32, measured in the same run in its own process)
and saves bench/results/serve.png (`--result` names another). Every configuration runs `--repeats`
times, in turn with the others (all servers stay up), and the table shows medians: the machine's
speed drifts. `--threads N` gives the server and the engine alone N ONNX Runtime threads, which on a
machine with more cores leaves the rest to the server's front and the clients.
The "1 in 4 long" rows make every fourth call ask for 80+ output tokens; their latency columns are
those of the other, ordinary calls: what a short request pays for sharing the server with long ones.
`--replicas N` adds N continuous servers on the same machine, each with 1/N of the ONNX Runtime
threads (encode ahead off: they share the cores), every client balancing its calls over all of
them round_robin as against replicas in a cluster, and N static servers alike (continuous against
static in the same layout); `--engine-processes N` adds one server whose
engine runs in N processes sharing the threads (`service/engine_processes.py`), and `--workers N`
one server of N worker processes on one port (`service/workers.py`). `--pods N` adds N continuous
servers as Kubernetes pods with a CPU limit run them: each in a cgroup of its own with a CPU quota
of 1/N of the threads (`bench/cpu_quota.py`; needs root), once with `--threads 0`, which follows
the quota, and once with as many threads as the machine has CPUs, as a server that ignored the
quota would take; the result also gives the share of CFS periods in which a pod's quota ran out.
Each takes several counts (`--replicas 2 4`: both layouts; 0, or 1 for workers, leaves it out;
no pods by default). Their shares are of the one engine alone with all the threads, and ("vs
layout") of as many engines alone side by side as the layout has replicas, processes, workers or
pods, each with its share of the threads and the batch.
Every client has a connection of its own, as separate applications do.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences, sentence_source  # noqa: E402
from bench.cpu_quota import CpuQuota, unavailable as quota_unavailable  # noqa: E402
from bench.provenance import write_result  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from service.client import TranslatorClient  # noqa: E402
from service.cpus import available_cpus  # noqa: E402



SCHEDULERS = {"continuous": ("continuous", False),  # label: (--scheduler, --encode-ahead)
              "continuous, encode ahead": ("continuous", True), "static": ("static", False)}


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on and not handed out before: servers start together, so one might
    not be listening yet on a port the system would offer again."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Server:
    def __init__(self, bundle: str, scheduler: str, threads: int = 0, encode_ahead: bool = False,
                 engine_processes: int = 0, workers: int = 1, quota: CpuQuota | None = None) -> None:
        self.workers, self.quota = workers, quota
        self.port, self.metrics_port = free_port(), free_port()
        env = {**os.environ, "TRANSLATOR_BUNDLES": bundle, "TRANSLATOR_PORT": str(self.port),
               "TRANSLATOR_METRICS_PORT": str(self.metrics_port), "TRANSLATOR_SCHEDULER": scheduler,
               "TRANSLATOR_HOST": "127.0.0.1", "TRANSLATOR_HTTP_PORT": "0", "TRANSLATOR_THREADS": str(threads),
               "TRANSLATOR_ENCODE_AHEAD": str(int(encode_ahead)), "TRANSLATOR_ENGINE_PROCESSES": str(engine_processes),
               "TRANSLATOR_WORKERS": str(workers),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.log = tempfile.TemporaryFile("w+")  # workers: the supervisor says when all are ready
        self.proc = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=quota.enter if quota else None)

    def wait_ready(self) -> None:
        """Apart from starting, so that many servers load their models at once."""
        health = [sys.executable, "-m", "service.healthcheck", "--target", f"127.0.0.1:{self.port}"]
        deadline = time.monotonic() + 60
        while subprocess.run(health, capture_output=True, cwd=ROOT).returncode != 0 or not self._all_workers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.3)

    def _all_workers(self) -> bool:
        if self.workers < 2:
            return True
        self.log.seek(0)
        return f"with {self.workers} workers" in self.log.read()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def batch_stats(self) -> tuple[float, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics").read().decode()
        values = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in ("translator_batch_size_sum", "translator_batch_size_count"):
                    values[s.name] = values.get(s.name, 0.0) + s.value
        return values.get("translator_batch_size_sum", 0.0), values.get("translator_batch_size_count", 0.0)

    def periods(self) -> tuple[int, int]:
        return self.quota.periods() if self.quota else (0, 0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        if self.quota:
            self.quota.close()


class Replicas:
    """Several servers as one target: each client balances its calls over all of them."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers

    @property
    def target(self) -> str:
        return ",".join(s.target for s in self.servers)

    def wait_ready(self) -> None:
        for server in self.servers:
            server.wait_ready()

    def batch_stats(self) -> tuple[float, float]:
        stats = [s.batch_stats() for s in self.servers]
        return sum(a for a, _ in stats), sum(b for _, b in stats)

    def periods(self) -> tuple[int, int]:
        periods = [s.periods() for s in self.servers]
        return sum(a for a, _ in periods), sum(b for _, b in periods)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def run(server: Server | Replicas, texts: list[str], clients: int, beam: int, long_every: int = 0) -> dict:
    """`long_every` N: every Nth call asks for at least 80 output tokens (a long request)."""
    before, periods_before = server.batch_stats(), server.periods()
    # A connection of its own per client, as separate applications have (and as `--workers` needs)
    channels = [TranslatorClient(server.target, connections=1) for _ in range(clients)]
    for channel in channels:  # connected to every replica before the clock starts
        channel.translate([""])

    def is_long(i: int) -> bool:
        return bool(long_every) and i % long_every == 0

    def call(i: int):
        started = time.perf_counter()
        extra = dict(min_output_tokens=80, max_output_tokens=100) if is_long(i) else {}
        out = channels[i % clients].translate([texts[i]], beam_size=beam, **extra)[0].text
        return out, time.perf_counter() - started

    started = time.perf_counter()
    if clients == 1:
        results = [call(i) for i in range(len(texts))]
    else:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(call, range(len(texts))))
    elapsed = time.perf_counter() - started
    for c in channels:
        c.close()
    after, periods_after = server.batch_stats(), server.periods()
    periods = periods_after[0] - periods_before[0]
    latencies = sorted(r[1] for i, r in enumerate(results) if not is_long(i))  # of the ordinary calls
    return {"outputs": [r[0] for r in results], "rate": len(texts) / elapsed,
            "batch": (after[0] - before[0]) / max(after[1] - before[1], 1), "latencies": latencies,
            "p50": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "throttled": (periods_after[1] - periods_before[1]) / periods if periods else None}


def engine_alone(bundle: str, count: int, beam: int, batch: int, threads: int, part: str | None = None) -> None:
    """Child process: the same sentences through the same text pipeline, straight into the engine in
    batches of `batch` (no gRPC, no scheduler); prints sentences/s. `part` "i/n": only every nth
    sentence from the ith, after printing "ready" and reading a line (so that n engines start
    together), and prints the seconds it took."""
    from nmt.bundle import load_bundle
    from nmt.search import SearchOptions
    from nmt.text import translate_texts
    from service.config import Defaults
    from service.models import text_processor
    from nmt.tokenizer import Tokenizer
    from service.onnx_engine import OnnxEngine

    b = load_bundle(bundle)
    engine = OnnxEngine(b, threads=threads)
    processor = text_processor(b, Tokenizer(b.source_tokenizer), Tokenizer(b.target_tokenizer))
    texts = sample_sentences(count)
    options = SearchOptions(beam_size=beam, max_length_factor=Defaults().max_length_factor)
    translate_texts(engine, processor, texts[:16], options, max_batch=batch)
    if part:
        i, n = map(int, part.split("/"))
        texts = texts[i::n]
        print("ready", flush=True)
        sys.stdin.readline()
    started = time.perf_counter()
    translate_texts(engine, processor, texts, options, max_batch=batch)
    elapsed = time.perf_counter() - started
    print(elapsed if part else len(texts) / elapsed)


def engine_alone_rate(bundle: str, sentences: int, batch: int, beam: int, threads: int = 0) -> float:
    """Sentences/s of `engine_alone`, run in a process of its own."""
    out = subprocess.run([sys.executable, __file__, "--bundle", bundle, "--sentences", str(sentences),
                          "--clients", str(batch), "--engine-alone", str(beam), "--threads", str(threads)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def engines_alone_rate(bundle: str, sentences: int, clients: int, beam: int, count: int, threads_each: int) -> float:
    """Sentences/s of `count` engines alone side by side, as replicas (or engine processes) of
    `threads_each` threads run them: each takes its share of the sentences in batches of its share
    of the clients, all started together. The reference a layout's served rate is held against."""
    command = [sys.executable, __file__, "--bundle", bundle, "--sentences", str(sentences), "--clients",
               str(max(1, clients // count)), "--engine-alone", str(beam), "--threads", str(threads_each)]
    procs = [subprocess.Popen([*command, "--part", f"{i}/{count}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT) for i in range(count)]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("an engine alone did not start")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        seconds = [float(proc.stdout.readline()) for proc in procs]
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.wait()
    return sentences / max(seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-alone", type=int, metavar="BEAM", help=argparse.SUPPRESS)
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--beams", default="1,5")
    p.add_argument("--repeats", type=int, default=3, help="runs of every configuration, interleaved; medians reported")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime threads of the server and of the engine alone (0: the CPUs this process may use); "
                        "fewer than the machine's cores leaves cores to the server's front and the clients")
    p.add_argument("--replicas", type=int, nargs="+", default=[2], metavar="N",
                   help="also N continuous (and N static) servers sharing the threads, clients balancing over them; "
                        "several counts measure several layouts (0: none)")
    p.add_argument("--engine-processes", type=int, nargs="+", default=[2], metavar="N",
                   help="also one continuous server with its engine in N processes sharing the threads; "
                        "several counts measure several (0: none)")
    p.add_argument("--workers", type=int, nargs="+", default=[2], metavar="N",
                   help="also one continuous server of N workers (--workers) sharing the threads; "
                        "several counts measure several (1: none)")
    p.add_argument("--pods", type=int, nargs="+", default=[], metavar="N",
                   help="also N continuous servers as pods with a CPU limit: each in a cgroup with a CPU quota of "
                        "1/N of the threads, once with --threads 0 (following the quota) and once with a thread per "
                        "CPU of the machine (as if it did not); needs root and cgroups (several counts: several layouts)")
    p.add_argument("--result", default="serve", help="name of the result file under bench/results/ (and of its plot)")
    args = p.parse_args()
    if args.engine_alone is not None:
        return engine_alone(args.bundle, args.sentences, args.engine_alone, args.clients, args.threads, args.part)
    texts = sample_sentences(args.sentences)
    beams = [int(b) for b in args.beams.split(",")]
    schedulers = dict(SCHEDULERS)
    threads = args.threads or available_cpus()
    if args.pods and quota_unavailable():
        p.error(f"--pods: {quota_unavailable()}")
    def layouts_of(counts: list[int], least: int, what: str) -> dict[str, tuple[int, int]]:
        """'N <what> of T threads': (N, T), the threads shared out, for each count of at least `least`."""
        split = {n: max(1, threads // n) for n in sorted(set(counts)) if n >= least}
        return {f"{n} {what} of {t} thread{'s' if t > 1 else ''}": (n, t) for n, t in split.items()}

    replicas = {f"{kind}, {layout}": (kind, n, t)  # label: (scheduler, servers, threads each)
                for layout, (n, t) in layouts_of(args.replicas, 2, "replicas").items() for kind in ("continuous", "static")}
    processes = {f"continuous, {k}": v for k, v in layouts_of(args.engine_processes, 1, "engine processes").items()}
    workers = {f"continuous, {k}": v for k, v in layouts_of(args.workers, 2, "workers").items()}
    pods = {}  # label: (pods, CPUs each, ONNX Runtime threads of each: 0 follows the quota)
    host = available_cpus()  # what a server that ignored the quota would take
    for n, cpus in layouts_of(args.pods, 1, "pods").values():
        label = f"continuous, {n} pod{'s' if n > 1 else ''} of {cpus} CPU{'s' if cpus > 1 else ''}"
        pods[label] = (n, cpus, 0)
        pods[f"{label}, {host} threads each"] = (n, cpus, host)
    schedulers.update((label, (kind, False)) for label, (kind, _, _) in replicas.items())
    schedulers.update((label, ("continuous", False)) for label in processes)
    schedulers.update((label, ("continuous", False)) for label in [*workers, *pods])
    # Each layout is also held against its own engines alone: one engine of 16 threads is no
    # ceiling for 8 replicas of 2 (small batches on few threads waste less).
    layout_of = {**{label: (count, each) for label, (_, count, each) in replicas.items()}, **processes, **workers,
                 **{label: (count, cpus) for label, (count, cpus, _) in pods.items()}}
    layouts = sorted(set(layout_of.values()))
    configs = []  # (label, scheduler, beam, clients, long_every)
    for scheduler in schedulers:
        for beam in beams:
            if scheduler in ("continuous", "continuous, encode ahead"):  # a lone client's latency
                configs.append(("1 client at a time", scheduler, beam, 1, 0))
            configs.append((f"{args.clients} concurrent", scheduler, beam, args.clients, 0))
        if 1 in beams:
            configs.append((f"{args.clients}, 1 in 4 long", scheduler, 1, args.clients, 4))
    # All servers up at once and every configuration run in turn, `repeats` times: this shared
    # machine's speed drifts by 10-20% over minutes, and a comparison should not ride on it.
    servers: dict[str, Server | Replicas] = {label: Server(args.bundle, kind, args.threads, encode_ahead=ahead)
                                             for label, (kind, ahead) in SCHEDULERS.items()}
    for label, (kind, count, each) in replicas.items():
        servers[label] = Replicas([Server(args.bundle, kind, each) for _ in range(count)])
    for label, (count, per) in processes.items():
        servers[label] = Server(args.bundle, "continuous", per * count, engine_processes=count)
    for label, (count, each) in workers.items():
        servers[label] = Server(args.bundle, "continuous", each * count, workers=count)
    for label, (count, cpus, each) in pods.items():
        servers[label] = Replicas([Server(args.bundle, "continuous", each, quota=CpuQuota(cpus))
                                   for _ in range(count)])
    runs: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    engine_runs: dict[int, list[float]] = {beam: [] for beam in beams}
    layout_runs: dict[tuple[int, int, int], list[float]] = {(*layout, beam): [] for layout in layouts for beam in beams}
    try:
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():
            for beam in beams:  # warm up at full load: a first run at 32 clients is slower than the rest
                run(server, texts, args.clients, beam)
        for _ in range(args.repeats):
            for i, (_, scheduler, beam, clients, long_every) in enumerate(configs):
                runs[i].append(run(servers[scheduler], texts, clients, beam, long_every))
            for beam in beams:  # the engine alone: same sentences, batches of `clients`, own process
                engine_runs[beam].append(engine_alone_rate(args.bundle, args.sentences, args.clients, beam, args.threads))
                for count, each in layouts:
                    layout_runs[count, each, beam].append(
                        engines_alone_rate(args.bundle, args.sentences, args.clients, beam, count, each))
    finally:
        for server in servers.values():
            server.stop()
    engine = {beam: statistics.median(v) for beam, v in engine_runs.items()}
    layout_engines = {key: statistics.median(v) for key, v in layout_runs.items()}

    def own_engines(scheduler: str, beam: int) -> float:  # the engines alone in the server's layout
        return layout_engines[(*layout_of[scheduler], beam)] if scheduler in layout_of else engine[beam]
    rows = [(label, scheduler, beam, combine(runs[i])) for i, (label, scheduler, beam, _, _) in enumerate(configs)]
    baseline = {beam: r for name, sched, beam, r in rows if name.startswith("1 client") and sched == "continuous"}
    records = []
    print(f"\n{len(texts)} sentences, one per call, bundle {args.bundle}, median of {args.repeats} interleaved runs\n")
    width = max(len(sched) for _, sched, _, _ in rows) + 2
    print(f"{'clients':<20}{'scheduler':<{width}}{'beam':>5}{'sent/s':>9}{'ratio':>7}{'batch':>7}"
          f"{'p50 ms':>8}{'p99 ms':>8}  identical  vs engine  vs layout")
    for name, sched, beam, r in rows:
        base = baseline[beam]
        compared = [(a, b) for outputs in r["outputs"] for i, (a, b) in enumerate(zip(outputs, base["outputs"][0]))
                    if "long" not in name or i % 4]  # long calls asked for different output
        same = sum(a == b for a, b in compared) / len(compared)
        print(f"{name:<20}{sched:<{width}}{beam:>5}{r['rate']:>9.1f}{r['rate'] / base['rate']:>6.2f}x"
              f"{r['batch']:>7.1f}{r['p50'] * 1000:>8.0f}{r['p99'] * 1000:>8.0f}  {same:>8.1%}"
              f"  {r['rate'] / engine[beam]:>8.0%}  {r['rate'] / own_engines(sched, beam):>9.0%}")
        records.append({"clients": name, "scheduler": sched, "beam": beam, "per_s": round(r["rate"], 1),
                        "per_s_runs": [round(x, 1) for x in r["rates"]],
                        "ratio": round(r["rate"] / base["rate"], 2), "batch": round(r["batch"], 1),
                        "p50_ms": round(r["p50"] * 1000), "p99_ms": round(r["p99"] * 1000),
                        "identical": round(same, 4), "vs_engine": round(r["rate"] / engine[beam], 3),
                        "vs_layout_engines": round(r["rate"] / own_engines(sched, beam), 3)})
        if r["throttled"] is not None:  # pods: the share of CFS periods in which a pod's quota ran out
            records[-1]["throttled_periods"] = round(r["throttled"], 3)
    print("\nengine alone (same sentences and text pipeline, batches of "
          f"{args.clients}, own process): " + ", ".join(f"beam {b}: {v:.1f}/s" for b, v in engine.items()))
    for count, each in layouts:
        print(f"{count} engines alone of {each} thread{'s' if each > 1 else ''} each, side by side, batches of "
              f"{max(1, args.clients // count)}: "
              + ", ".join(f"beam {b}: {layout_engines[count, each, b]:.1f}/s" for b in beams))
    write_result(args.result, {"sentences_from": sentence_source(), "sentences": len(texts),
                               "bundle": Path(args.bundle).name, "repeats": args.repeats,
                               "threads": args.threads, "replicas": args.replicas,
                               "engine_processes": args.engine_processes, "workers": args.workers,
                               "rows": records,
                               "engine_alone": {str(b): round(v, 1) for b, v in engine.items()},
                               "engine_alone_runs": {str(b): [round(x, 1) for x in v] for b, v in engine_runs.items()},
                               "layout_engines_alone": [{"engines": c, "threads_each": e, "beam": b,
                                                         "per_s": round(v, 1),
                                                         "per_s_runs": [round(x, 1) for x in layout_runs[c, e, b]]}
                                                        for (c, e, b), v in layout_engines.items()],
                               "engine_batch": args.clients})
    plot(rows, baseline, ROOT / "bench" / "results" / f"{args.result}.png")


def combine(results: list[dict]) -> dict:
    """Several runs of one configuration: the median rate, latency percentiles over all their
    ordinary calls, mean sentences per step, and every run's outputs."""
    latencies = sorted(x for r in results for x in r["latencies"])
    return {"rate": statistics.median(r["rate"] for r in results), "rates": [r["rate"] for r in results],
            "batch": statistics.mean(r["batch"] for r in results), "outputs": [r["outputs"] for r in results],
            "p50": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "throttled": None if results[0]["throttled"] is None else statistics.median(r["throttled"] for r in results)}


def plot(rows, baseline, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels = [f"{name}\n{sched}, beam {beam}" for name, sched, beam, _ in rows]
    ratios = [r["rate"] / baseline[beam]["rate"] for _, _, beam, r in rows]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.bar(range(len(rows)), ratios, color=["#888" if n.startswith("1 client") else "#345" for n, *_ in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("sentences/s vs one client at a time")
    ax.axhline(1, color="k", lw=0.5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"\nplot saved to {path}")


if __name__ == "__main__":
    main()
