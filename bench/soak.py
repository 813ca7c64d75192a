"""Soak: the real server under steady load for N requests; throughput and memory per block.

    python bench/soak.py [--requests 200000] [--block 10000] [--clients 16]

Starts `python -m service` with the demo bundle, keeps `--clients` concurrent one-sentence greedy
calls going, and after every block of requests prints the block's throughput and the server's
resident memory (VmRSS). A server whose cost per request grows with what it has served shows it
here: the last block's throughput and the RSS growth are the verdict. Writes
bench/results/soak.json and bench/results/soak.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import sample_sentences  # noqa: E402
from bench.provenance import RESULTS, write_result  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--block", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--port", type=int, default=50099)
    p.add_argument("--bundle", default=str(ROOT / "models" / "demo-de-en"))
    args = p.parse_args()

    import grpc

    from translation.v1 import translator_pb2 as pb
    from translation.v1 import translator_pb2_grpc as pb_grpc

    env = {**os.environ, "TRANSLATOR_PORT": str(args.port), "TRANSLATOR_METRICS_PORT": "0",
           "TRANSLATOR_BUNDLES": args.bundle}
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"127.0.0.1:{args.port}")
    stub = pb_grpc.TranslatorStub(channel)
    sentences = sample_sentences(1000)
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        deadline = time.monotonic() + 60
        while True:  # until warmed up and serving
            try:
                stub.Translate(pb.TranslateRequest(texts=["Ein Hund."]), timeout=5)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        counter = iter(range(args.requests))
        lock = threading.Lock()
        done = [0]
        errors = [0]

        def client() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    stub.Translate(pb.TranslateRequest(texts=[sentences[i % len(sentences)]]), timeout=30)
                except grpc.RpcError:
                    with lock:
                        errors[0] += 1
                with lock:
                    done[0] += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
        start = time.monotonic()
        rows = []
        rss0 = rss_mb(server.pid)
        for t in threads:
            t.start()
        last_t, last_n = start, 0
        while last_n < args.requests:
            time.sleep(0.2)
            n = done[0]
            if n - last_n >= args.block or n >= args.requests:
                now = time.monotonic()
                row = {"block": len(rows) + 1, "requests": n, "per_s": round((n - last_n) / (now - last_t), 1),
                       "rss_mb": round(rss_mb(server.pid), 1), "errors": errors[0]}
                rows.append(row)
                print(f"block {row['block']:3d}: {n:7d} requests, {row['per_s']:6.1f}/s, RSS {row['rss_mb']:.1f} MB, "
                      f"errors {row['errors']}", flush=True)
                last_t, last_n = now, n
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(30)
    first, last = rows[0], rows[-1]
    verdict = {"last_vs_first_throughput": round(last["per_s"] / first["per_s"], 3),
               "rss_growth_mb": round(last["rss_mb"] - rows[0]["rss_mb"], 1),
               "rss_at_start_mb": round(rss0, 1), "errors": errors[0]}
    print(f"last block / first block throughput: {verdict['last_vs_first_throughput']:.3f}; "
          f"RSS growth from the first block to the last: {verdict['rss_growth_mb']:+.1f} MB; errors: {errors[0]}")
    write_result("soak", {"requests": args.requests, "block": args.block, "clients": args.clients,
                          "rows": rows, "verdict": verdict})
    plot(rows)


def plot(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = [r["requests"] for r in rows]
    ax.plot(x, [r["per_s"] for r in rows], "o-", color="#4c72b0")
    ax.set_xlabel("requests served")
    ax.set_ylabel("requests/s", color="#4c72b0")
    ax.set_ylim(0, max(r["per_s"] for r in rows) * 1.15)
    ax2 = ax.twinx()
    ax2.plot(x, [r["rss_mb"] for r in rows], "s--", color="#c44e52")
    ax2.set_ylabel("server RSS (MB)", color="#c44e52")
    ax2.set_ylim(0, max(r["rss_mb"] for r in rows) * 1.15)  # from zero: a flat line reads as flat, not as noise
    ax.set_title("soak: throughput and memory per block")
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=120)


if __name__ == "__main__":
    main()
