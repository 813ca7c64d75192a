"""Engine processes (`--engine-processes N`): a model's scheduler and ONNX Runtime engine run in N
processes of their own behind the one front (gRPC, HTTP, the text pipeline, /metrics).

Why: in one process, the scheduler's Python between steps, ONNX Runtime's returns and the event
loop share one GIL, and an engine whose steps span several threads waits at every step for
whichever of them the front preempted. N processes of one thread each wait for neither: on two
cores, two of them delivered more than one server process with both threads for beam search (about
what two whole replicas do), about as much for greedy, where the one front is busiest
(bench/serve_bench.py).

The front sends each request's sentences to the process with the fewest unfinished ones. A process
runs the ordinary `Scheduler` on them and sends back every finished sentence with its hypotheses
(or why it failed), its health changes, and the scheduler metrics it recorded, which the front
replays into its own registry (gauges summed over the processes), so /metrics stays one view.
Deadlines travel as `time.monotonic()` values: one clock for the whole machine. A process that
dies fails its unfinished sentences and turns the model NOT_SERVING.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from dataclasses import dataclass, replace
from typing import Callable

from service.config import SchedulerConfig
from service.metrics import Metrics
from service.scheduler import Job

log = logging.getLogger("service")
FLUSH_SECONDS = 0.05  # metrics recorded in a process reach the front at least this often
START_SECONDS = 300.0  # loading and warming up a process


@dataclass
class EngineInfo:
    """What the front shows of an engine that runs elsewhere (ListModels, the start-up log)."""

    kernels: str
    kernels_reason: str
    shortlist: bool
    embedding_tables_bytes: int
    warm_up_seconds: float


class _Recorder:
    """Stands for `Metrics` in an engine process: records the updates for the front to replay,
    merged as they come (increments summed, the last value of a gauge, observations listed): a
    step makes a dozen of them, and the front replays them under its own GIL."""

    def __init__(self) -> None:
        self._ops: dict[tuple, object] = {}  # (metric, labels, method) -> sum, last value or list
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        recorder = self

        class Metric:
            def labels(self, *labels):
                return Child(labels)

        class Child:
            def __init__(self, labels):
                self.labels = labels

            def observe(self, value):
                with recorder._lock:
                    recorder._ops.setdefault((name, self.labels, "observe"), []).append(value)

            def inc(self, value=1.0):
                key = (name, self.labels, "inc")
                with recorder._lock:
                    recorder._ops[key] = recorder._ops.get(key, 0.0) + value

            def set(self, value):
                with recorder._lock:
                    recorder._ops[name, self.labels, "set"] = value

        return Metric()

    def take(self) -> list[tuple]:
        with self._lock:
            ops, self._ops = self._ops, {}
        return list(ops.items())


def _child_main(conn, bundle_path: str, cfg: SchedulerConfig, threads: int, int8_kernels: str,
                embedding_tables_mb: float) -> None:
    """An engine process: load and warm up the engine, then run the scheduler on what the front sends."""
    # The front drives the shutdown (Ctrl-C reaches the whole process group): a process ends when
    # told to, after its sentences, or when the front is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nmt.bundle import load_bundle
    from service.models import warm_up_engine
    from service.onnx_engine import OnnxEngine
    from service.scheduler import Scheduler

    try:
        bundle = load_bundle(bundle_path)
        engine = OnnxEngine(bundle, threads, int8_kernels, embedding_tables_mb)
        seconds = warm_up_engine(engine, bundle.path)
    except Exception as e:  # the front reports it and stops starting up
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", EngineInfo(engine.kernels, engine.kernels_reason, engine.shortlist is not None,
                                   engine.embedding_tables_bytes, seconds)))
    recorder = _Recorder()
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    scheduler = Scheduler(engine, bundle.name, recorder, cfg,  # type: ignore[arg-type]
                          on_health=lambda healthy: outbox.put(("health", healthy)))
    scheduler.start()

    def send() -> None:  # one message per burst: finished sentences and the metrics recorded so far
        done = False
        while not done:
            try:
                items = [outbox.get(timeout=FLUSH_SECONDS)]
            except queue.Empty:
                items = []
            while not outbox.empty():
                items.append(outbox.get())
            ops = recorder.take()
            done = any(item[0] == "exit" for item in items)
            if items or ops:
                conn.send((items, ops))

    sender = threading.Thread(target=send, name="engine-sender", daemon=True)
    sender.start()

    jobs: dict[int, Job] = {}  # unfinished, by the front's id (for cancelling)

    def answer(job: Job) -> None:
        jobs.pop(job.jid, None)  # type: ignore[attr-defined]
        outbox.put(("done", job.jid, job.error, job.reason, job.hypotheses))  # type: ignore[attr-defined]

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the front is gone
            message = ("stop", 0.0)
        kind = message[0]
        if kind == "submit":
            new = []
            for jid, src_ids, options, deadline in message[1]:
                job = Job(src_ids, options, deadline=deadline, on_done=answer)
                job.jid = jid  # type: ignore[attr-defined]
                new.append(job)
            jobs.update((j.jid, j) for j in new)  # type: ignore[attr-defined]
            refused = scheduler.submit(new)
            for job in new if refused else []:
                job.finish(refused)
        elif kind == "cancel":
            scheduler.cancel([jobs[jid] for jid in message[1] if jid in jobs], message[2])
        elif kind == "abort":
            scheduler.abort_queued(message[1])
        elif kind == "stop":
            scheduler.stop(message[1])
            outbox.put(("exit",))
            sender.join()
            return


class EngineProcess:
    """The front's side of one engine process."""

    def __init__(self, name: str, bundle_path: str, cfg: SchedulerConfig, threads: int, int8_kernels: str,
                 embedding_tables_mb: float) -> None:
        context = multiprocessing.get_context("spawn")  # the front's threads and gRPC must not be forked
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_child_main, name=name, daemon=True,
                                       args=(child, bundle_path, cfg, threads, int8_kernels, embedding_tables_mb))
        self.process.start()
        child.close()
        self.name = name
        self.jobs: dict[int, Job] = {}
        self.gauges: dict[tuple, float] = {}
        self.healthy = True
        self.dead = False  # the process exited: its sentences failed, it takes no more
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def ready(self) -> EngineInfo:
        """Wait until the process has loaded and warmed up its engine."""
        if not self._conn.poll(START_SECONDS):
            raise RuntimeError(f"{self.name} did not start within {START_SECONDS:g}s")
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name} exited while starting (exit code {self.process.exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"{self.name}: {payload}")
        return payload

    def listen(self, replay: Callable[["EngineProcess", list[tuple]], None],
               health: Callable[[], None]) -> None:
        self._replay, self._health = replay, health
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self._reader.start()

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._write(message)

    def _write(self, message: tuple) -> None:
        """(send lock held) To the process, unless it is gone."""
        if self.dead:
            return
        try:
            self._conn.send(message)
        except OSError:  # it is exiting: the reader fails what it holds
            pass

    def submit(self, jobs: list[Job]) -> None:
        items = []
        with self._send_lock:
            if self.dead:
                for job in jobs:
                    job.finish("internal", f"{self.name} exited")
                return
            for job in jobs:
                self._next_id += 1
                job.jid = self._next_id  # type: ignore[attr-defined]
                self.jobs[self._next_id] = job
                items.append((self._next_id, job.src_ids, job.options, job.deadline))
            self._write(("submit", items))

    def cancel(self, jobs: list[Job], reason: str) -> None:
        mine = [job for job in jobs if self.jobs.get(getattr(job, "jid", None)) is job]
        for job in mine:
            job.cancelled = job.cancelled or reason
        if mine:
            self._send(("cancel", [job.jid for job in mine], reason))  # type: ignore[attr-defined]

    def abort_queued(self, reason: str) -> None:
        self._send(("abort", reason))

    def ask_to_stop(self, timeout: float) -> None:
        """The process finishes what it holds within `timeout` seconds, answers, and exits."""
        self._send(("stop", timeout))

    def join(self, timeout: float) -> None:
        if self._reader is not None:
            self._reader.join(timeout + 5)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()

    def _read(self) -> None:
        try:
            while True:
                items, ops = self._conn.recv()
                self._replay(self, ops)
                for item in items:
                    if item[0] == "done":
                        _, jid, error, reason, hypotheses = item
                        job = self.jobs.pop(jid, None)
                        if job is not None:
                            job.hypotheses = hypotheses
                            job.finish(error, reason)
                    elif item[0] == "health":
                        self.healthy = item[1]
                        self._health()
                    elif item[0] == "exit":
                        return
        except (EOFError, OSError):
            with self._send_lock:
                self.dead, self.healthy = True, False
                left, self.jobs = list(self.jobs.values()), {}
            self.process.join(1)
            log.error("%s exited (code %s); failing its %d unfinished sentences", self.name,
                      self.process.exitcode, len(left))
            for job in left:
                job.finish("internal", f"{self.name} exited")
            self._health()


class EnginePool:
    """A model's engine processes, with the scheduler's interface (`submit`, `cancel`, `stop`, ...)."""

    def __init__(self, model: str, bundle_path: str, metrics: Metrics, cfg: SchedulerConfig, processes: int,
                 threads: int, int8_kernels: str, embedding_tables_mb: float) -> None:
        self.model, self.metrics, self.cfg = model, metrics, cfg
        self.on_health: Callable[[bool], None] = lambda healthy: None
        self._stopping = False
        self._lock = threading.Lock()
        self._labelled: dict[tuple, object] = {}  # (metric, labels) -> its labelled child
        # the front counts the queue: a process's own limit would refuse after the call was accepted
        child_cfg = replace(cfg, max_queue=1 << 62)
        self.processes = [EngineProcess(f"engine-{model}-{i}", bundle_path, child_cfg, threads, int8_kernels,
                                        embedding_tables_mb) for i in range(processes)]
        try:
            infos = [p.ready() for p in self.processes]
        except Exception:
            for p in self.processes:
                p.process.kill()
            raise
        self.info = infos[0]
        self.warm_up_seconds = max(i.warm_up_seconds for i in infos)
        for p in self.processes:
            p.listen(self._replay, self._health_changed)

    @property
    def healthy(self) -> bool:
        return all(p.healthy for p in self.processes)

    def start(self) -> None:
        """The processes run their schedulers from the start."""

    def submit(self, jobs: list[Job]) -> str | None:
        """Queue all jobs, or none: None when queued, else why not ("shutdown", "overloaded" or
        "engine exited"). Waiting is what the live processes hold beyond their row budgets."""
        with self._lock:
            if self._stopping:
                return "shutdown"
            alive = [p for p in self.processes if not p.dead]
            if not alive:
                return "engine exited"
            held = sum(len(p.jobs) for p in alive)
            if held + len(jobs) > self.cfg.max_queue + len(alive) * self.cfg.max_rows:
                return "overloaded"
            min(alive, key=lambda p: len(p.jobs)).submit(jobs)
        return None

    def cancel(self, jobs: list[Job], reason: str = "cancelled") -> None:
        for p in self.processes:
            p.cancel(jobs, reason)

    def abort_queued(self, reason: str = "shutdown") -> None:
        for p in self.processes:
            p.abort_queued(reason)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
        for p in self.processes:  # all at once: each has the whole grace
            p.ask_to_stop(timeout)
        for p in self.processes:
            p.join(timeout)

    def _replay(self, process: EngineProcess, ops: list[tuple]) -> None:
        """A process's recorded metric updates, into the front's registry; gauges as their sum over
        the processes."""
        for (name, labels, method), value in ops:
            metric = self._labelled.get((name, labels))
            if metric is None:
                metric = self._labelled[name, labels] = getattr(self.metrics, name).labels(*labels)
            if method == "observe":
                for v in value:
                    metric.observe(v)
            elif method == "inc":
                metric.inc(value)
            else:
                with self._lock:
                    process.gauges[name, labels] = value
                    metric.set(sum(p.gauges.get((name, labels), 0.0) for p in self.processes))

    def _health_changed(self) -> None:
        self.on_health(self.healthy)
