"""The batcher: one thread per model that owns the engine and decodes everyone's sentences together.

continuous (iteration-level): between two decoder steps it admits waiting sentences (encodes them
  together and merges their rows into the running batch), drops cancelled or expired ones, and
  answers finished ones at once; a short sentence never waits for a long one.
static (request-level): takes up to `static_batch` waiting sentences, decodes them until all are
  done, then takes the next batch. Kept to measure what continuous batching buys.

Both drive the same `nmt.search.BatchSearch`, so a sentence's output does not depend on the mode
or on its company. ONNX Runtime releases the GIL, so gRPC handlers keep running during steps.

Cost of continuity: every admission or retirement changes the row layout, and the source-side state
(memory, keys) is then copied (`nmt.engine.merge`/`reorder`); for beam search that is ~18% of a step.
Keeping each request's rows in place would remove most of it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from nmt.engine import Engine
from nmt.search import BatchSearch, Hypothesis, SearchOptions, SearchRequest, pad_batch
from service.config import SchedulerConfig
from service.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One sentence of one request. `on_done(job)` is called once, from the scheduler thread."""

    src_ids: list[int]
    options: SearchOptions
    deadline: float  # time.monotonic() by which it must be answered
    on_done: Callable[["Job"], None]
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: str | None = None  # why the caller gave up: "cancelled" or "deadline"
    hypotheses: list[Hypothesis] | None = None
    error: str | None = None  # "deadline", "cancelled", "shutdown" or "internal"
    request: SearchRequest | None = None

    def finish(self, error: str | None = None) -> None:
        self.error = error
        if error is None and self.request is not None:
            self.hypotheses = self.request.hypotheses
        self.on_done(self)


class Scheduler:
    def __init__(self, engine: Engine, model: str, metrics: Metrics, cfg: SchedulerConfig) -> None:
        self.engine, self.model, self.metrics, self.cfg = engine, model, metrics, cfg
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{model}", daemon=True)
        self._in_flight: dict[int, Job] = {}  # id(SearchRequest) -> Job
        self.search = BatchSearch(engine)

    # -- called from request handlers -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, jobs: list[Job]) -> bool:
        """Queue all jobs, or none when the queue is full (the caller sheds the request)."""
        with self._cond:
            if self._stopping or len(self._queue) + len(jobs) > self.cfg.max_queue:
                return False
            self._queue.extend(jobs)
            self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            self._cond.notify()
        return True

    def cancel(self, jobs: list[Job], reason: str = "cancelled") -> None:
        """Mark jobs abandoned; they leave the queue or the running batch before the next step."""
        with self._cond:
            for job in jobs:
                job.cancelled = reason
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is running and queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    # -- the scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not len(self.search) and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue and not len(self.search):
                    return
                if not len(self.search):
                    self._wait_for_company()
                admitted = self._take()
                self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            try:
                self._admit(admitted)
                self._drop_abandoned()
                if len(self.search):
                    self._step()
                self._publish()
            except Exception:  # keep serving: fail what was running, start clean
                log.exception("decoding failed; failing %d sentences", len(self._in_flight))
                for job in self._in_flight.values():
                    job.finish("internal")
                self._in_flight.clear()
                self.search = BatchSearch(self.engine)

    def _wait_for_company(self) -> None:
        """Idle and woken by a first sentence: give others a moment to arrive and share the encoding."""
        wanted = self.cfg.static_batch if self.cfg.kind == "static" else self.cfg.max_rows
        end = time.monotonic() + self.cfg.batch_wait_ms / 1000
        while len(self._queue) < wanted and not self._stopping:
            left = end - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    def _take(self) -> list[Job]:
        """Jobs that fit the row and token budgets (static mode: only when the batch is empty)."""
        if self.cfg.kind == "static":
            if len(self.search):
                return []
            count = min(self.cfg.static_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]
        rows = sum(r.options.beam_size for r in self.search.requests.values())
        tokens = sum(r.options.beam_size * r.src_length for r in self.search.requests.values())
        taken: list[Job] = []
        while self._queue:
            job = self._queue[0]
            beam = job.options.beam_size
            fits = (rows + beam <= self.cfg.max_rows
                    and tokens + beam * len(job.src_ids) <= self.cfg.max_tokens)
            if not fits and (taken or rows):
                break
            taken.append(self._queue.popleft())
            rows, tokens = rows + beam, tokens + beam * len(job.src_ids)
        return taken

    def _admit(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.cancelled or now >= job.deadline:
                self._abandon(job, job.cancelled or "deadline")
            else:
                live.append(job)
        if not live:
            return
        started = time.perf_counter()
        ids, lengths = pad_batch([j.src_ids for j in live])
        state = self.engine.encode(ids, lengths)
        self.metrics.inference_seconds.labels(self.model, "encode").observe(time.perf_counter() - started)
        self.metrics.batch_tokens.labels(self.model).observe(ids.size)
        requests = []
        for job, length in zip(live, lengths.tolist()):
            self.metrics.queue_wait.labels(self.model).observe(now - job.enqueued)
            job.request = SearchRequest(length, job.options)
            self._in_flight[id(job.request)] = job
            requests.append(job.request)
        self.search.add(requests, state)
        if self.cfg.kind == "static":
            self.metrics.batch_size.labels(self.model).observe(len(live))

    def _drop_abandoned(self) -> None:
        now = time.monotonic()
        gone = [job for job in self._in_flight.values() if job.cancelled or now >= job.deadline]
        if gone:
            self.search.remove([job.request for job in gone])
            for job in gone:
                del self._in_flight[id(job.request)]
                self._abandon(job, job.cancelled or "deadline")

    def _abandon(self, job: Job, reason: str) -> None:
        self.metrics.cancellations.labels(reason).inc()
        job.finish(reason)

    def _step(self) -> None:
        m, model = self.metrics, self.model
        if self.cfg.kind == "continuous":
            m.batch_size.labels(model).observe(len(self.search.requests))
        m.batch_rows.labels(model).observe(len(self.search))
        started = time.perf_counter()
        finished = self.search.advance()
        m.inference_seconds.labels(model, "decode").observe(time.perf_counter() - started)
        m.decode_steps.labels(model).inc()
        for request in finished:
            job = self._in_flight.pop(id(request))
            m.sentences.labels(model).inc()
            m.source_tokens.labels(model).inc(request.src_length)
            if request.hypotheses:
                m.generated_tokens.labels(model).inc(len(request.hypotheses[0].token_ids))
            job.finish()

    def _publish(self) -> None:
        self.metrics.rows_in_flight.labels(self.model).set(len(self.search))
        self.metrics.sentences_in_flight.labels(self.model).set(len(self.search.requests))
