"""`--workers N`: N whole server processes listening on the same ports, behind one address.

One process serves gRPC, HTTP and the text pipeline under one GIL; with many cores that front, not
the engine, sets the greedy rate (README "Many replicas"). Workers are replicas on one machine: each
is a complete server (`python -m service ... --worker i`) bound with SO_REUSEPORT, so the kernel
spreads *connections* over them; a client with one connection talks to one worker
(`TranslatorClient(connections=N)` opens several). This process checks the ports are free, starts
the workers, serves /metrics (prometheus_client's multiprocess mode adds up the files the workers
write), starts a worker again if one dies after it was ready, and passes SIGTERM/SIGINT on for a
graceful stop. A worker that fails during start-up stops the whole server: that is configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from prometheus_client import start_http_server
from prometheus_client.multiprocess import mark_process_dead

from service.config import ServerConfig
from service.cpus import available_cpus
from service.metrics import ModelInfoFiles, workers_registry
from service.server import StartupError

log = logging.getLogger("service")


def free_port(host: str, port: int, what: str) -> int:
    """The port (0: a free one), after checking that nothing listens on it: the workers share it with
    SO_REUSEPORT, which would otherwise share it with a stranger too."""
    address = host.strip("[]") or "::"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
            s.bind((address, port))
            return s.getsockname()[1]
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port} ({what}): {e.strerror} "
                           "(is another server using the port?)") from None


class Workers:
    def __init__(self, cfg: ServerConfig, argv: list[str]) -> None:
        self.cfg = cfg
        self.port = free_port(cfg.host, cfg.port, "gRPC")
        self.http_port = free_port(cfg.host, cfg.http_port, "HTTP") if cfg.http_port else 0
        self.threads = max(1, (cfg.threads or available_cpus()) // cfg.workers)
        self.folder = tempfile.mkdtemp(prefix="translator-metrics-")
        # The worker's own flags come last and win. Encode ahead's `auto` would see threads to spare
        # in each worker, which the other workers use: off (bench/serve_bench.py measured replicas).
        self.command = [sys.executable, "-m", "service", *argv, "--workers", "1", "--port", str(self.port),
                        "--http-port", str(self.http_port), "--metrics-port", "0", "--threads", str(self.threads),
                        *(["--encode-ahead", "off"] if cfg.encode_ahead == "auto" else [])]
        self.procs: dict[int, subprocess.Popen] = {}
        self.ready: set[int] = set()  # pids

    def start(self, index: int) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.folder}
        self.procs[index] = subprocess.Popen([*self.command, "--worker", str(index)], env=env)

    def forget(self, proc: subprocess.Popen) -> None:
        """A worker gone: its gauges leave the sums; its counters stay (they only ever go up)."""
        mark_process_dead(proc.pid, self.folder)
        ModelInfoFiles.path(self.folder, proc.pid).unlink(missing_ok=True)
        self.ready.discard(proc.pid)

    def watch(self, stop: threading.Event) -> int:
        """Until `stop`: note workers that became ready, start again those that died after. Returns
        1 when a worker failed during start-up."""
        while not stop.wait(0.2):
            for index, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None:
                    if proc.pid not in self.ready and ModelInfoFiles.path(self.folder, proc.pid).exists():
                        self.ready.add(proc.pid)
                        if len(self.ready) == len(self.procs):
                            log.info("serving on port %d with %d workers of %d ONNX Runtime thread%s (HTTP %s, "
                                     "metrics %s)", self.port, len(self.procs), self.threads,
                                     "s" if self.threads > 1 else "",
                                     f"on {self.http_port}" if self.http_port else "off",
                                     f"on {self.cfg.metrics_port}" if self.cfg.metrics_port else "off")
                    continue
                was_ready = proc.pid in self.ready
                self.forget(proc)
                if not was_ready:
                    log.error("worker %d exited during start-up (code %s)", index, code)
                    return 1
                log.warning("worker %d (pid %d) exited with code %s; starting another", index, proc.pid, code)
                if stop.wait(0.5):  # a worker that keeps dying does not spin
                    break
                self.start(index)
        return 0

    def stop(self) -> None:
        """SIGTERM to every worker (each finishes its calls in flight within the grace), then wait."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace_seconds + 10  # the grace, then the engines' stop
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killed", proc.pid)
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def supervise(cfg: ServerConfig, argv: list[str]) -> int:
    workers = Workers(cfg, argv)
    if cfg.metrics_port:
        try:
            start_http_server(cfg.metrics_port, registry=workers_registry(workers.folder))
        except OSError as e:
            shutil.rmtree(workers.folder, ignore_errors=True)
            raise StartupError(f"cannot serve metrics on port {cfg.metrics_port}: {e.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("starting %d workers on port %d", cfg.workers, workers.port)
    cpus = available_cpus()
    if cfg.workers * workers.threads > cpus:  # bench/serve_bench.py --pods: more threads than quota
        log.warning("%d workers of %d ONNX Runtime thread%s each and %d CPU%s to run on: the workers will wait "
                    "for each other's cores (fewer workers would be faster)", cfg.workers, workers.threads,
                    "s" if workers.threads > 1 else "", cpus, "s" if cpus > 1 else "")
    for index in range(1, cfg.workers + 1):
        workers.start(index)
    try:
        code = workers.watch(stop)
    finally:
        log.info("shutting down %d workers", cfg.workers)
        workers.stop()
    log.info("stopped")
    return code
