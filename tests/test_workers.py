"""`--workers N`: one server of N processes on one port. Connections are spread over the workers,
/metrics adds them up, a worker that dies is replaced while the others keep serving, and the
server refuses a busy port or a worker that cannot start (service/workers.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service.client import TranslatorClient
from tests.servers import DEMO, free_port

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Ein Hund läuft über die Wiese."


class Workers:
    def __init__(self, *args: str, workers: int = 2) -> None:
        self.port, self.metrics, self.http = free_port(), free_port(), free_port()
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--bundle", str(DEMO), "--host", "127.0.0.1", "--port", str(self.port),
             "--metrics-port", str(self.metrics), "--http-port", str(self.http), "--threads", str(workers),
             "--grace-seconds", "5", "--workers", str(workers), *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()

    def text(self) -> str:
        return "".join(self.log)

    def wait_for(self, words: str, times: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(words) < times:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"no {words!r} in:\n{self.text()}"
            time.sleep(0.1)

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def scrape(self) -> dict[tuple, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics").read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handled_ok(samples: dict) -> float:
    return sum(v for (name, labels), v in samples.items()
               if name == "grpc_server_handled_total" and ("grpc_code", "OK") in labels
               and ("grpc_method", "Translate") in labels)


def translate_from(port: int, clients: int, calls: int) -> list[str]:
    """`clients` clients, each with a connection of its own, `calls` calls each."""
    def client(_):
        with TranslatorClient(f"127.0.0.1:{port}", connections=1) as c:
            return [c.translate([SENTENCE])[0].text for _ in range(calls)]
    with ThreadPoolExecutor(clients) as pool:
        return [text for texts in pool.map(client, range(clients)) for text in texts]


def test_workers_share_one_port_their_metrics_add_up_and_they_stop_together():
    server = Workers()
    try:
        server.wait_for("with 2 workers")
        workers = server.pids()
        assert len(workers) == 2
        with TranslatorClient(f"127.0.0.1:{server.port}") as c:
            expected = c.translate([SENTENCE])[0].text
        before = {pid: cpu_seconds(pid) for pid in workers}
        answers = translate_from(server.port, clients=16, calls=6)
        assert answers == [expected] * 96
        used = {pid: cpu_seconds(pid) - before[pid] for pid in workers}
        assert all(seconds > 0.05 for seconds in used.values()), used  # both workers translated
        before = {pid: cpu_seconds(pid) for pid in workers}
        with TranslatorClient(f"127.0.0.1:{server.port}", connections=16) as one_client:  # one client, 16 connections
            assert [one_client.translate([SENTENCE])[0].text for _ in range(48)] == [expected] * 48
        used = {pid: cpu_seconds(pid) - before[pid] for pid in workers}
        assert all(seconds > 0.02 for seconds in used.values()), used
        samples = server.scrape()
        assert handled_ok(samples) == 145  # every worker's calls in one /metrics
        assert samples["translator_sentences_total", (("model", "demo-de-en"),)] == 145
        assert samples["translator_queue_depth", (("model", "demo-de-en"),)] == 0  # gauges: live sum
        assert any(name == "translator_model_info" and ("model", "demo-de-en") in labels
                   for name, labels in samples)
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.http}/languages").read()  # HTTP shares its port too
        assert b'"de"' in page
    finally:
        code = server.stop()
    assert code == 0, server.text()
    assert "[worker 1]" in server.text() and "[worker 2]" in server.text() and "stopped" in server.text()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_worker_that_dies_is_replaced_and_the_other_keeps_serving():
    server = Workers()
    try:
        server.wait_for("with 2 workers")
        connected = [TranslatorClient(f"127.0.0.1:{server.port}", connections=1) for _ in range(8)]
        assert all(c.translate([SENTENCE])[0].text for c in connected)  # some on each worker
        counted = handled_ok(server.scrape())
        victim = server.pids()[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for("starting another")
        # Clients whose connection was to the dead worker connect again (to the live one): no call fails
        assert all(c.translate([SENTENCE])[0].text for c in connected)
        answers = translate_from(server.port, clients=8, calls=2)  # new connections
        assert len(answers) == 16 and all(answers)
        server.wait_for("with 2 workers", times=2)
        for c in connected:
            c.close()
        assert victim not in server.pids() and len(server.pids()) == 2
        translate_from(server.port, clients=8, calls=2)
        assert handled_ok(server.scrape()) >= counted + 8 + 32  # the dead worker's counts stay
    finally:
        assert server.stop() == 0, server.text()


def test_a_busy_port_or_a_worker_that_cannot_start_stops_the_server():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "service", "--workers", "2", "--host", "127.0.0.1",
                              "--port", str(port), "--metrics-port", "0", "--http-port", "0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr
    server = Workers("--bundle", "/nonexistent/bundle")
    assert server.proc.wait(60) == 1
    assert "exited during start-up" in server.text() and "/nonexistent/bundle" in server.text()

