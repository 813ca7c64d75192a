"""The batcher: one thread per model that owns the engine and decodes everyone's sentences together.

continuous (iteration-level): between two decoder steps it admits waiting sentences (encodes them
  together and merges their rows into the running batch), drops cancelled or expired ones, and
  answers finished ones at once; a short sentence never waits for a long one.
static (request-level): takes a batch of waiting sentences, decodes it until all are done, then
  takes the next batch. Kept to measure what continuous batching buys.

Both drive the same `nmt.search.BatchSearch`, so a sentence's output does not depend on the mode
or on its company. ONNX Runtime releases the GIL, so gRPC handlers keep running during steps.

encode ahead (continuous, `--encode-ahead`): an encoder thread takes the queue and encodes the
  arrivals while the scheduler thread steps the batch; the scheduler thread merges what was encoded
  between two steps. On a machine where ONNX Runtime leaves a core free, arrivals then cost the
  batch only the merge (bench/serve_bench.py); where it has every core, it buys nothing (auto: off).

Guarantees an operator relies on:
- every job ends exactly once (`Job.finish`): translated, or with the reason it was not
  (cancelled, deadline, shutdown, internal); an engine failure fails exactly the sentences of the
  batch it hit and the scheduler carries on; `max_failures` failures in a row report unhealthy;
- a cancelled or expired job leaves the queue at once and stops counting toward `max_queue`;
- memory is bounded by the budgets, in both modes: decoder rows (`max_rows`) and padded source
  positions, rows x longest source in the batch (`max_tokens`; the engine's source buffers keep
  half as many rows again spare, at least 32); nothing grows with the number of requests served
  (BatchSearch recycles its slots, the in-flight jobs are the search's requests).

Cost of continuity: every admission or retirement changes the row layout. The engine keeps the
large source-side state (memory, keys) in buffers with spare rows and writes only the rows that
move (`nmt.engine.RecurrentState`): joining sentences go into the spare rows, and the search gives
a departed request's place to the last request whose rows fit it, so an admission no longer copies
the whole batch (with beam search those arrays are one copy per beam, megabytes a step). Sentences
arriving one or two at a time are still encoded one or two at a time, which costs a sentence about
twice what a sorted static batch pays (bench/batching.py). Tried ad hoc and not kept: admitting
arrivals in groups (within the machine's noise; the encoder gains little from batches of a few),
and a lane of its own for long sentences, stepped every 2nd or 4th step (served, one request in
four long: the others' p50 better, their p99 and the throughput worse).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from nmt.engine import Engine
from nmt.search import BatchSearch, SearchRequest, encode_requests
from service.config import SchedulerConfig
from service.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job(SearchRequest):
    """One sentence of one request: the search's request itself, plus what the service needs.
    `on_done(job)` is called exactly once."""

    deadline: float = math.inf  # time.monotonic() by which it must be answered
    on_done: Callable[["Job"], None] = lambda job: None
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: str | None = None  # why the caller gave up: "cancelled" or "deadline"
    error: str | None = None  # "deadline", "cancelled", "shutdown" or "internal"
    reason: str = ""  # for "internal": what failed
    finished: bool = False

    def finish(self, error: str | None = None, reason: str = "") -> None:
        if self.finished:  # exactly once, whatever path gets here second
            return
        self.finished = True
        self.error, self.reason = error, reason
        self.on_done(self)


class Scheduler:
    def __init__(self, engine: Engine, model: str, metrics: Metrics, cfg: SchedulerConfig,
                 on_health: Callable[[bool], None] | None = None) -> None:
        self.engine, self.model, self.metrics, self.cfg = engine, model, metrics, cfg
        self.on_health = on_health or (lambda healthy: None)
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        # encode ahead: an encoder thread takes the queue and hands encoded sentences over, at most
        # one batch waiting (`_encoded`); the scheduler thread merges them and steps
        self._ahead = cfg.encode_ahead and cfg.kind == "continuous"
        self._encoded: collections.deque[tuple[list[Job], object, float]] = collections.deque()
        self._encoding = False  # the encoder thread holds jobs it took from the queue
        self._merging = False  # the scheduler thread holds an encoded batch not yet in the search
        self._thread = threading.Thread(target=self._run_ahead if self._ahead else self._run,
                                        name=f"scheduler-{model}", daemon=True)
        self._encoder = threading.Thread(target=self._encode_loop, name=f"encoder-{model}",
                                         daemon=True) if self._ahead else None
        self.search = BatchSearch(engine)
        self.failures = 0  # engine failures in a row
        self.healthy = True
        self._wait_pays = cfg.batch_wait_ms > 0  # whether waiting for company caught any lately
        self._started_alone: float | None = None  # when a sentence last started without waiting

    # -- called from request handlers -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self._encoder is not None:
            self._encoder.start()

    def submit(self, jobs: list[Job]) -> str | None:
        """Queue all jobs, or none: None when queued, else why not ("shutdown" or "overloaded")."""
        with self._cond:
            if self._stopping:
                return "shutdown"
            if len(self._queue) + len(jobs) > self.cfg.max_queue:
                return "overloaded"
            self._queue.extend(jobs)
            self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            self._cond.notify_all()  # with encode ahead, two threads wait on it
        return None

    def cancel(self, jobs: list[Job], reason: str = "cancelled") -> None:
        """The caller gave up: queued jobs leave the queue now; running ones leave the batch
        before the next step."""
        with self._cond:
            for job in jobs:
                job.cancelled = job.cancelled or reason
            left = self._remove_from_queue(lambda j: j.cancelled is not None)
            self._cond.notify_all()
        for job in left:
            self._leave_queue(job, job.cancelled)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is running and queued, then end the thread; after `timeout` seconds, what is
        still queued is answered "shutdown"."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        end = time.monotonic() + timeout
        for thread in (self._thread, self._encoder):
            if thread is not None and thread.ident is not None:
                thread.join(max(0.0, end - time.monotonic()))
        self.abort_queued("shutdown")

    def abort_queued(self, reason: str = "shutdown") -> None:
        with self._cond:
            left = self._remove_from_queue(lambda j: True)
        for job in left:
            self._leave_queue(job, reason)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- the scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not len(self.search) and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue and not len(self.search):
                    return
                expired, admitted = self._due()
                self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            for job in expired:
                self._leave_queue(job, "deadline")
            self._admit(admitted)
            self._drop_abandoned()
            if len(self.search):
                self._step()
            self._publish()

    def _due(self) -> tuple[list[Job], list[Job]]:
        """(lock held) The queued jobs whose deadline passed, and those to admit now (after waiting
        for company when nothing runs)."""
        if not len(self.search):
            self._wait_for_company()
        else:
            self._note_company()
        now = time.monotonic()
        return self._remove_from_queue(lambda j: now >= j.deadline), self._take()

    def _run_ahead(self) -> None:
        """The scheduler thread with encode ahead: merge what the encoder thread encoded, step.
        When nothing decodes there is nothing to encode ahead of: it admits arrivals itself, as
        without encode ahead (a hand-over to the encoder thread cost a lone client's request time)."""
        while True:
            expired, direct = [], []
            with self._cond:
                while not self._encoded and not len(self.search):
                    if self._stopping and not self._queue and not self._encoding:
                        return
                    if self._queue and not self._encoding:
                        break
                    self._cond.wait()
                batch = self._encoded.popleft() if self._encoded else None
                if batch is None and not len(self.search):
                    expired, direct = self._due()
                    self.metrics.queue_depth.labels(self.model).set(len(self._queue))
                self._merging = batch is not None or bool(direct)
            for job in expired:
                self._leave_queue(job, "deadline")
            if batch is not None or direct:
                if batch is not None:
                    self._merge_encoded(*batch)
                else:
                    self._admit(direct)
                with self._cond:
                    self._merging = False
                    self._cond.notify_all()
            self._drop_abandoned()
            if len(self.search):
                self._step()
                if self._queue:  # rows left: the encoder thread may find room for what waits
                    with self._cond:
                        self._cond.notify_all()
            self._publish()

    def _encode_loop(self) -> None:
        """The encoder thread (encode ahead): while a batch decodes, take what fits the budgets,
        encode it while the scheduler thread steps the batch (ONNX Runtime lets go of the GIL), hand
        it over. It takes again only once the last batch is in the search, so the budgets it checks
        hold."""
        while True:
            with self._cond:
                while True:
                    if self._stopping and not self._queue:
                        return
                    if self._queue and not self._encoded and not self._merging and len(self.search):
                        expired, taken = self._due()
                        if taken or expired:
                            break
                    self._cond.wait()
                self._encoding = bool(taken)
                self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            for job in expired:
                self._leave_queue(job, "deadline")
            if not taken:
                continue
            live = self._admissible(taken)
            started = time.perf_counter()
            try:
                result: object = encode_requests(self.engine, live)
            except Exception as e:  # handed over: the scheduler thread fails exactly these
                result = e
            with self._cond:
                self._encoding = False
                self._encoded.append((live, result, time.perf_counter() - started))
                self._cond.notify_all()

    def _merge_encoded(self, jobs: list[Job], result: object, seconds: float) -> None:
        if isinstance(result, Exception):
            self._engine_failed("encode", result, jobs)
            return
        requests, state = result
        if not requests:
            return
        started = time.perf_counter()
        self.search.add(requests, state)  # cancelled or expired meanwhile: dropped before the step
        seconds += time.perf_counter() - started  # encode + merge, as `_admit` counts them
        self.metrics.inference_seconds.labels(self.model, "encode").observe(seconds)
        self.metrics.batch_tokens.labels(self.model).observe(len(requests) * max(j.src_length for j in requests))

    def _remove_from_queue(self, leaving: Callable[[Job], bool]) -> list[Job]:
        """(lock held) Take the jobs for which `leaving` holds out of the queue."""
        if not self._queue:
            return []
        gone = [j for j in self._queue if leaving(j)]
        if gone:
            self._queue = collections.deque(j for j in self._queue if not leaving(j))
            self.metrics.queue_depth.labels(self.model).set(len(self._queue))
        return gone

    def _leave_queue(self, job: Job, outcome: str) -> None:
        self.metrics.queue_wait.labels(self.model, outcome).observe(time.monotonic() - job.enqueued)
        if outcome in ("cancelled", "deadline"):
            self.metrics.cancellations.labels(outcome).inc()
        job.finish(outcome)

    def _wait_for_company(self) -> None:
        """(lock held) Idle and woken by a first sentence: give others a moment to arrive and share
        the encoding, as long as waiting pays. A lone client's requests find no company: after one
        wait that caught nobody the scheduler stops waiting (a request then starts at once), and
        starts again when sentences turn up within the wait after a start that did not wait."""
        window = self.cfg.batch_wait_ms / 1000
        now = time.monotonic()
        if not self._wait_pays:
            self._started_alone = now
            return
        wanted = self.cfg.static_batch if self.cfg.kind == "static" else self.cfg.max_rows
        before, end = len(self._queue), now + window
        while len(self._queue) < wanted and not self._stopping:
            left = end - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        self._wait_pays = len(self._queue) > before

    def _note_company(self) -> None:
        """(lock held) After a start that did not wait: did others arrive within the wait?"""
        if self._started_alone is not None and self._queue:
            if self._queue[0].enqueued - self._started_alone <= self.cfg.batch_wait_ms / 1000:
                self._wait_pays = True
            self._started_alone = None

    def _take(self) -> list[Job]:
        """(lock held) Jobs that fit the budgets: rows, and padded source positions (rows x the
        longest source in the batch), counting each request at its beam size. Static mode takes
        a batch only when the previous one is done. A job alone is always taken (it could never
        fit otherwise; its own limits are checked at the door)."""
        if not self._queue or (self.cfg.kind == "static" and len(self.search)):
            return []
        requests = list(self.search.requests.values())
        rows = sum(r.options.beam_size for r in requests)
        longest = max((r.src_length for r in requests), default=0)
        taken: list[Job] = []
        limit = self.cfg.static_batch if self.cfg.kind == "static" else math.inf
        while self._queue and len(taken) < limit:
            job = self._queue[0]
            new_rows = rows + job.options.beam_size
            new_longest = max(longest, job.src_length)
            fits = new_rows <= self.cfg.max_rows and new_rows * new_longest <= self.cfg.max_tokens
            if not fits and (taken or rows):
                break
            taken.append(self._queue.popleft())
            rows, longest = new_rows, new_longest
        return taken

    def _admissible(self, jobs: list[Job]) -> list[Job]:
        """The taken jobs still wanted and with something to decode; the others are answered."""
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.cancelled or now >= job.deadline:
                self._leave_queue(job, job.cancelled or "deadline")
            else:
                self.metrics.queue_wait.labels(self.model, "admitted").observe(now - job.enqueued)
                live.append(job)
        for job in [j for j in live if not j.src_ids]:  # nothing to decode: answered at once
            job.finish()
        return [j for j in live if j.src_ids]

    def _admit(self, jobs: list[Job]) -> None:
        live = self._admissible(jobs)
        if not live:
            return
        started = time.perf_counter()
        try:
            self.search.admit(live)
        except Exception as e:  # the engine failed: exactly these sentences fail
            self._engine_failed("encode", e, live)
            return
        self.metrics.inference_seconds.labels(self.model, "encode").observe(time.perf_counter() - started)
        self.metrics.batch_tokens.labels(self.model).observe(len(live) * max(j.src_length for j in live))
        if self.cfg.kind == "static":
            self.metrics.static_batch.labels(self.model).observe(len(live))

    def _drop_abandoned(self) -> None:
        now = time.monotonic()
        gone = [job for job in self.search.requests.values() if job.cancelled or now >= job.deadline]
        if gone:
            self.search.remove(gone)
            for job in gone:
                reason = job.cancelled or "deadline"
                self.metrics.cancellations.labels(reason).inc()
                job.finish(reason)

    def _step(self) -> None:
        m, model = self.metrics, self.model
        m.batch_size.labels(model).observe(len(self.search.requests))
        m.batch_rows.labels(model).observe(len(self.search))
        started = time.perf_counter()
        try:
            finished = self.search.advance()
        except Exception as e:  # fail the sentences of this batch, start clean
            self._engine_failed("decode", e, list(self.search.requests.values()))
            self.search = BatchSearch(self.engine)
            return
        m.inference_seconds.labels(model, "decode").observe(time.perf_counter() - started)
        m.decode_steps.labels(model).inc()
        self._engine_ok()
        for job in finished:
            m.sentences.labels(model).inc()
            m.source_tokens.labels(model).inc(job.src_length)
            if job.hypotheses:
                m.generated_tokens.labels(model).inc(len(job.hypotheses[0].token_ids))
            job.finish()

    def _engine_failed(self, stage: str, error: Exception, jobs: list[Job]) -> None:
        log.error("%s failed for %d sentences of model %s: %s: %s", stage, len(jobs), self.model,
                  type(error).__name__, error, exc_info=error)
        self.metrics.engine_failures.labels(self.model, stage).inc()
        for job in jobs:
            job.finish("internal", f"{stage} failed: {type(error).__name__}: {error}")
        self.failures += 1
        if self.failures >= self.cfg.max_failures and self.healthy:
            self.healthy = False
            log.error("model %s: %d engine failures in a row; reporting NOT_SERVING", self.model, self.failures)
            self.on_health(False)

    def _engine_ok(self) -> None:
        self.failures = 0
        if not self.healthy:
            self.healthy = True
            log.info("model %s: engine recovered; reporting SERVING", self.model)
            self.on_health(True)

    def _publish(self) -> None:
        self.metrics.rows_in_flight.labels(self.model).set(len(self.search))
        self.metrics.sentences_in_flight.labels(self.model).set(len(self.search.requests))
