"""The batcher's order and budgets, on an engine whose output lengths the test controls."""

import threading
import time

from nmt.search import SearchOptions
from service.config import SchedulerConfig
from service.metrics import Metrics
from service.scheduler import Job, Scheduler
from tests.tiny import LengthEngine


def run_jobs(kind: str, plan: list[tuple[float, int]], **cfg):
    """plan: (submit time in s, output length). Returns finish order and the scheduler's metrics."""
    engine = LengthEngine(delay=0.004)
    metrics = Metrics()
    scheduler = Scheduler(engine, "m", metrics, SchedulerConfig(kind=kind, batch_wait_ms=0, **cfg))
    scheduler.start()
    order, done = [], threading.Event()
    lock = threading.Lock()

    def on_done(job):
        with lock:
            order.append(job.src_ids[0])
            if len(order) == len(plan):
                done.set()

    start = time.monotonic()
    for at, length in sorted(plan):
        time.sleep(max(0.0, start + at - time.monotonic()))
        assert scheduler.submit([Job([length, 7], SearchOptions(max_length=500), time.monotonic() + 30, on_done)])
    assert done.wait(30)
    scheduler.stop()
    return order, metrics


def test_short_request_admitted_during_a_long_batch_finishes_first():
    order, metrics = run_jobs("continuous", [(0.0, 200), (0.1, 5)])
    assert order == [5, 200]
    assert metrics.registry.get_sample_value("translator_batch_size_sum", {"model": "m"}) > 200


def test_static_batching_makes_the_short_request_wait():
    order, _ = run_jobs("static", [(0.0, 200), (0.1, 5)])
    assert order == [200, 5]


def test_row_budget_holds_requests_back_until_rows_free():
    engine = LengthEngine()
    scheduler = Scheduler(engine, "m", Metrics(), SchedulerConfig(max_rows=4, batch_wait_ms=0))
    finished = []
    jobs = [Job([3, 1], SearchOptions(beam_size=2, max_length=9), time.monotonic() + 30, finished.append)
            for _ in range(5)]
    assert scheduler.submit(jobs)
    scheduler.start()
    deadline = time.monotonic() + 10
    peak = 0
    while len(finished) < 5 and time.monotonic() < deadline:
        peak = max(peak, len(scheduler.search))
        time.sleep(0.0005)
    scheduler.stop()
    assert len(finished) == 5 and all(j.error is None for j in finished)
    assert peak <= 4


def test_full_queue_sheds_at_once():
    scheduler = Scheduler(LengthEngine(), "m", Metrics(), SchedulerConfig(max_queue=3))
    job = lambda: Job([1, 1], SearchOptions(), time.monotonic() + 30, lambda j: None)  # noqa: E731
    assert scheduler.submit([job(), job()])
    assert not scheduler.submit([job(), job()])  # would make 4 > 3: refused whole
    assert scheduler.submit([job()])
