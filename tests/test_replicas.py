"""Two replicas behind one client: calls are balanced round_robin, and stopping a replica with
SIGTERM in the middle of a steady stream loses no request (draining replicas answer UNAVAILABLE,
which the client's retry policy sends to the other one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from service.client import TranslatorClient, channel_target
from tests.servers import DEMO, free_port

ROOT = Path(__file__).resolve().parents[1]


def start_replica() -> dict:
    port, metrics = free_port(), free_port()
    env = {**os.environ, "TRANSLATOR_BUNDLES": str(DEMO), "TRANSLATOR_PORT": str(port), "TRANSLATOR_HOST": "127.0.0.1",
           "TRANSLATOR_METRICS_PORT": str(metrics), "TRANSLATOR_HTTP_PORT": "0", "TRANSLATOR_THREADS": "1",
           "TRANSLATOR_GRACE_SECONDS": "5"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return {"proc": proc, "port": port, "metrics": metrics}


def wait_serving(replica: dict) -> None:
    health = [sys.executable, "-m", "service.healthcheck", "--target", f"127.0.0.1:{replica['port']}"]
    deadline = time.monotonic() + 60
    while subprocess.run(health, cwd=ROOT, capture_output=True).returncode != 0:
        assert replica["proc"].poll() is None, replica["proc"].stdout.read()
        assert time.monotonic() < deadline, "replica did not become healthy"
        time.sleep(0.3)


def handled(replica: dict) -> float:
    """Translate calls this replica answered OK, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{replica['metrics']}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="Translate"' in line and 'grpc_code="OK"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_targets_for_one_several_and_resolved_addresses():
    assert channel_target("localhost:50051") == "localhost:50051"
    assert channel_target("dns:///translator-headless:50051") == "dns:///translator-headless:50051"
    assert channel_target("127.0.0.1:1,127.0.0.2:2") == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert channel_target(["localhost:7", "127.0.0.1:8"]) in ("ipv4:127.0.0.1:7,127.0.0.1:8",
                                                                "ipv6:[::1]:7,[::ffff:127.0.0.1]:8")
    with pytest.raises(ValueError):
        channel_target(" , ")


def test_sigterm_on_one_replica_in_a_steady_stream_loses_nothing():
    a, b = start_replica(), start_replica()
    try:
        wait_serving(a)
        wait_serving(b)
        client = TranslatorClient([f"127.0.0.1:{a['port']}", f"127.0.0.1:{b['port']}"], timeout=30)
        failures, done = [], []
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                try:
                    [t] = client.translate(["Ein Mann fährt mit seinem Fahrrad durch die Stadt."])
                    done.append(t.text)
                except Exception as e:  # any failure at all is what this test is about
                    failures.append(repr(e))

        workers = [threading.Thread(target=stream) for _ in range(4)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(done) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        served_by_a = handled(a)
        a["proc"].send_signal(signal.SIGTERM)  # mid-stream
        assert a["proc"].wait(timeout=30) == 0
        before = len(done)
        while len(done) < before + 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for w in workers:
            w.join(30)
        client.close()
        assert not failures, failures[:5]
        assert len(done) >= before + 60 and len(set(done)) == 1
        assert served_by_a > 0 and handled(b) > 0  # both replicas served traffic
        assert handled(b) >= len(done) - served_by_a - 4  # after the SIGTERM, b answered the rest
    finally:
        for replica in (a, b):
            if replica["proc"].poll() is None:
                replica["proc"].kill()
                replica["proc"].wait()
