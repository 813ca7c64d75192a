"""Where the server's time goes: the real server on loopback under 32 concurrent one-sentence
clients (as `serve_bench.py`), sampled by py-spy, each sample put in one bucket by its stack.

    python bench/serve_profile.py [--bundle models/demo-de-en] [--beams 1,5] [--scheduler continuous] [--repeats 3]

Prints, per beam size, the share of the sampled Python threads' busy time in each bucket, the CPU
used by each kind of thread (from /proc: ONNX Runtime's pool threads run no Python, so py-spy does
not see them), and the bench clients' own CPU; writes bench/results/serve-profile.json. Needs py-spy
(`pip install py-spy`) and permission to trace the server (root, or ptrace_scope 0).

Then what that CPU costs the engine by itself: the engine alone (as in `serve_bench.py`) with and
without other processes keeping the front's cores busy beside it (the CPU of every thread but the
scheduler's and ONNX Runtime's, plus the clients'), taken in turn with served runs (not sampled),
`--repeats` times; medians. Where the engine beside that load keeps about the served share, the gap
is the cores the front takes, not the way the server shares them.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import busy_beside, sample_sentences  # noqa: E402
from bench.provenance import write_result  # noqa: E402
from bench.serve_bench import Server, engine_alone_rate, run  # noqa: E402

# (bucket, frame substrings: the first bucket with a frame in the stack wins; order matters)
BUCKETS = [
    ("idle: waiting for work", ("EpollSelector.select", "Condition.wait", "_worker (concurrent",
                                "SimpleQueue.get", "Event.wait", "serve_forever")),
    ("decoder steps (ONNX Runtime)", ("OnnxEngine.step",)),
    ("encoder (ONNX Runtime)", ("OnnxEngine.encode",)),
    ("state copies (merge, prepare, reorder)", ("RecurrentState.",)),
    ("search bookkeeping (numpy)", ("BatchSearch.",)),
    # a system call that lets go of the GIL: the time includes waiting to get it back
    ("waking the event loop (and the GIL after it)", ("call_soon_threadsafe",)),
    ("text: segment, protect, tokenize, detokenize", ("TextProcessor.", "build_translations")),
    ("metrics", ("prometheus_client",)),
    ("scheduler loop", ("Scheduler.",)),
    ("gRPC and asyncio: handlers, messages, tasks", ("",)),
]
THREADS = (("scheduler-", "scheduler"), ("MainThread", "event loop"), ("_poll_wrapper", "gRPC poller"))
ENGINE_THREADS = ("scheduler", "ONNX Runtime pool")  # the rest, and the clients, are the front


def bucket(stack: str) -> str:
    for name, needles in BUCKETS:
        if any(n in stack for n in needles):
            return name
    return BUCKETS[-1][0]


def thread_cpu(pid: int) -> dict[str, float]:
    """tid -> CPU seconds (user + system) of every thread of `pid`."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def profile(server: Server, texts: list[str], clients: int, beam: int, spy: str) -> dict:
    run(server, texts[:64], clients, beam)  # warm up
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        sampler = subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--rate", "250", "--threads",
                                    "--idle", "--nonblocking", "--format", "raw", "--output", str(raw)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        before, client_before, started = thread_cpu(server.proc.pid), time.process_time(), time.perf_counter()
        rates = [run(server, texts, clients, beam)["rate"] for _ in range(4)]
        elapsed = time.perf_counter() - started
        after, client_cpu = thread_cpu(server.proc.pid), time.process_time() - client_before
        sampler.send_signal(signal.SIGINT)
        sampler.wait(60)
        samples = raw.read_text().splitlines() if raw.exists() else []
    threads: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    kinds: dict[str, str] = {}  # tid -> kind of thread
    for line in samples:
        stack, _, count = line.rpartition(" ")
        head = stack.split(";", 1)[0]  # "thread (TID): NAME"
        kind = next((k for needle, k in THREADS if needle in head), "other Python")
        kinds[head.split("(", 1)[1].split(")", 1)[0] if "(" in head else ""] = kind
        threads[kind][bucket(stack)] += int(count)
    cpu = collections.Counter()
    for tid, seconds in after.items():  # ONNX Runtime's pool threads run no Python: py-spy never sees them
        cpu[kinds.get(tid, "ONNX Runtime pool")] += (seconds - before.get(tid, 0.0)) / elapsed
    busy = {name: {b: n for b, n in c.items() if not b.startswith("idle")} for name, c in threads.items()}
    return {"beam": beam, "per_s": round(sum(rates) / len(rates), 1),
            "cpu_cores": {k: round(v, 2) for k, v in cpu.items() if v >= 0.005} | {"bench clients": round(client_cpu / elapsed, 2)},
            "busy_share": {name: {b: round(n / max(sum(c.values()), 1), 3) for b, n in sorted(c.items(), key=lambda x: -x[1])}
                           for name, c in busy.items() if name in ("scheduler", "event loop") and sum(c.values())},
            "samples": {name: sum(c.values()) for name, c in threads.items()}}


def beside_the_front(server: Server, texts: list[str], clients: int, row: dict, bundle: str, repeats: int) -> dict:
    """Served (not sampled), the engine alone, and the engine alone beside the front's CPU, in turn."""
    front = round(sum(v for k, v in row["cpu_cores"].items() if k not in ENGINE_THREADS), 2)
    rates: dict[str, list[float]] = {"served": [], "engine alone": [], "engine alone beside the load": []}
    for _ in range(repeats):
        rates["served"].append(run(server, texts, clients, row["beam"])["rate"])
        rates["engine alone"].append(engine_alone_rate(bundle, len(texts), clients, row["beam"]))
        with busy_beside(front):
            rates["engine alone beside the load"].append(engine_alone_rate(bundle, len(texts), clients, row["beam"]))
    return {"front_cores": front, "rates": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "runs": {k: [round(x, 1) for x in v] for k, v in rates.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--beams", default="1,5")
    p.add_argument("--scheduler", default="continuous", choices=["continuous", "static"])
    p.add_argument("--repeats", type=int, default=3, help="runs of each rate in the comparison beside the front's load")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    texts = sample_sentences(args.sentences)
    server = Server(args.bundle, args.scheduler)
    server.wait_ready()
    try:
        rows = [profile(server, texts, args.clients, int(b), spy) for b in args.beams.split(",")]
        for row in rows:
            row["beside_the_front"] = beside_the_front(server, texts, args.clients, row, args.bundle, args.repeats)
    finally:
        server.stop()
    for r in rows:
        print(f"\nbeam {r['beam']}: {r['per_s']} sentences/s, {args.clients} concurrent clients, {args.scheduler}")
        print("CPU (cores) by thread: " + ", ".join(f"{k} {v}" for k, v in r["cpu_cores"].items()))
        for thread, shares in r["busy_share"].items():
            print(f"  {thread} thread, busy time:")
            for name, share in shares.items():
                print(f"    {share:>6.1%}  {name}")
        b = r["beside_the_front"]
        alone = b["rates"]["engine alone"]
        print(f"  front (every thread but the engine's, and the clients): {b['front_cores']} cores; "
              + ", ".join(f"{k} {v}/s ({v / alone:.0%})" for k, v in b["rates"].items()))
    write_result("serve-profile", {"clients": args.clients, "scheduler": args.scheduler,
                                   "sentences": args.sentences, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
