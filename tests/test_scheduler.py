"""The batcher's order and budgets, on an engine whose output lengths the test controls."""

import threading
import time

import pytest

from nmt.search import SearchOptions
from service.config import SchedulerConfig
from service.metrics import Metrics
from service.scheduler import Job, Scheduler
from tests.tiny import LengthEngine

ENCODE_AHEAD = {"on": False}


@pytest.fixture(autouse=True, params=[False, True], ids=["plain", "encode-ahead"])
def _encode_ahead(request):
    """Every behaviour below holds too with arrivals encoded on a thread of their own (continuous
    batching's encode ahead; static batching ignores it)."""
    ENCODE_AHEAD["on"] = request.param


def config(**values) -> SchedulerConfig:
    return SchedulerConfig(encode_ahead=ENCODE_AHEAD["on"], **values)




def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def run_jobs(kind: str, plan: list[tuple[float, int]], **cfg):
    """plan: (submit time in s, output length). Returns finish order and the scheduler's metrics."""
    engine = LengthEngine(delay=0.004)
    metrics = Metrics()
    scheduler = Scheduler(engine, "m", metrics, config(kind=kind, batch_wait_ms=0, **cfg))
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
        assert not scheduler.submit([Job([length, 7], SearchOptions(max_length=500), deadline=time.monotonic() + 30, on_done=on_done)])
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


def test_waiting_for_company_stops_when_it_catches_nobody_and_resumes_when_company_comes():
    """A lone client's sentence is not held back batch_wait_ms for company that never comes; when
    sentences arrive close together again, they share the encoding again."""
    encoded = []

    class Recording(LengthEngine):
        def encode(self, src_ids, src_lengths):
            encoded.append(len(src_ids))
            return super().encode(src_ids, src_lengths)

    scheduler = Scheduler(Recording(delay=0.005), "m", Metrics(), config(batch_wait_ms=400))
    scheduler.start()

    def pair(gap: float) -> None:
        """Two one-sentence requests `gap` seconds apart, each decoded for 60 steps."""
        done, on_done, event = collect(2)
        for i in range(2):
            assert scheduler.submit([Job([60, 7], SearchOptions(max_length=100), deadline=time.monotonic() + 30,
                                         on_done=on_done)]) is None
            time.sleep(gap if i == 0 else 0)
        assert event.wait(30)

    pair(0.1)  # the first waits and catches the second: one encoding of two
    assert encoded == [2]
    single, on_done, event = collect(1)
    assert scheduler.submit([Job([2, 7], SearchOptions(), deadline=time.monotonic() + 30, on_done=on_done)]) is None
    assert event.wait(30)  # waited for nobody: waiting stops
    pair(0.1)  # the first starts at once, the second joins it at the next step; waiting resumes
    pair(0.1)
    scheduler.stop()
    assert encoded == [2, 1, 1, 1, 2]


def test_row_budget_holds_requests_back_until_rows_free():
    engine = LengthEngine()
    scheduler = Scheduler(engine, "m", Metrics(), config(max_rows=4, batch_wait_ms=0))
    finished = []
    jobs = [Job([3, 1], SearchOptions(beam_size=2, max_length=9), deadline=time.monotonic() + 30,
                on_done=finished.append)
            for _ in range(5)]
    assert scheduler.submit(jobs) is None
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
    scheduler = Scheduler(LengthEngine(), "m", Metrics(), config(max_queue=3))
    job = lambda: Job([1, 1], SearchOptions(), deadline=time.monotonic() + 30)  # noqa: E731
    assert scheduler.submit([job(), job()]) is None
    assert scheduler.submit([job(), job()]) == "overloaded"  # would make 4 > 3: refused whole
    assert scheduler.submit([job()]) is None


class FailingEngine(LengthEngine):
    """LengthEngine that raises on chosen calls: fail["encode"] = {2} fails the second encode."""

    def __init__(self, fail: dict[str, set[int]], delay: float = 0.0) -> None:
        super().__init__(delay)
        self.fail, self.calls = fail, {"encode": 0, "step": 0}

    def encode(self, src_ids, src_lengths):
        self.calls["encode"] += 1
        if self.calls["encode"] in self.fail.get("encode", ()):
            raise RuntimeError("encoder exploded")
        return super().encode(src_ids, src_lengths)

    def step(self, prev_ids, state, k):
        self.calls["step"] += 1
        if self.calls["step"] in self.fail.get("step", ()):
            raise RuntimeError("decoder exploded")
        return super().step(prev_ids, state, k)


def collect(n):
    """on_done callback and an event set when n jobs are done."""
    done, lock, event = [], threading.Lock(), threading.Event()

    def on_done(job):
        with lock:
            done.append(job)
            if len(done) >= n:
                event.set()
    return done, on_done, event


def make_jobs(count, on_done, length=3, beam=1, deadline=30.0):
    return [Job([length, 1], SearchOptions(beam_size=beam, max_length=50), deadline=time.monotonic() + deadline,
                on_done=on_done) for _ in range(count)]


def test_state_stays_bounded_over_100000_requests():
    scheduler = Scheduler(LengthEngine(), "m", Metrics(), config(batch_wait_ms=0, max_rows=64))
    scheduler.start()
    total, chunk = 100_000, 500
    done, on_done, event = collect(total)
    peak_capacity = 0
    for start in range(0, total, chunk):
        while scheduler.queued > 500:
            peak_capacity = max(peak_capacity, scheduler.search.capacity)
            time.sleep(0.001)
        assert scheduler.submit(make_jobs(chunk, on_done, length=1 + start // chunk % 3)) is None
    assert event.wait(120), f"{len(done)} of {total} done"
    scheduler.stop()
    search = scheduler.search
    assert len(done) == total and all(j.error is None and j.hypotheses for j in done)
    # everything proportional to what was in flight (at most 64 rows), nothing to what was served
    assert search.capacity <= 128 and peak_capacity <= 128
    assert len(search._free) == search.capacity and not search.requests and not search._finished
    assert len(search) == 0 and search.history.size == 0 and search.coverage.size == 0
    assert scheduler.queued == 0


@pytest.mark.parametrize("stage,fail", [("encode", {"encode": {2}}), ("step", {"step": {3}})])
def test_an_engine_failure_fails_exactly_its_batch_and_serving_goes_on(stage, fail):
    engine = FailingEngine(fail)
    scheduler = Scheduler(engine, "m", Metrics(), config(batch_wait_ms=0, max_rows=4))
    done, on_done, event = collect(12)
    jobs = make_jobs(12, on_done)  # max_rows 4: three batches of four, encoded one after another
    assert scheduler.submit(jobs) is None
    scheduler.start()
    assert event.wait(10)
    scheduler.stop()
    failed = [j for j in jobs if j.error]
    assert len(done) == 12 and len(set(map(id, done))) == 12  # each answered exactly once
    assert len(failed) == 4 and all(j.error == "internal" and "exploded" in j.reason for j in failed)
    assert all(j.hypotheses for j in jobs if not j.error)
    assert scheduler.healthy  # one failure is not a trend
    failures = scheduler.metrics.registry.get_sample_value(
        "translator_engine_failures_total", {"model": "m", "stage": "encode" if stage == "encode" else "decode"})
    assert failures == 1


def test_repeated_engine_failures_report_unhealthy_then_recovery_reports_healthy():
    engine = FailingEngine({"encode": {1, 2, 3}})
    health = []
    scheduler = Scheduler(engine, "m", Metrics(), config(batch_wait_ms=0, max_rows=1, max_failures=3),
                          on_health=health.append)
    done, on_done, event = collect(5)
    assert scheduler.submit(make_jobs(5, on_done)) is None
    scheduler.start()
    assert event.wait(10)
    scheduler.stop()
    assert [j.error for j in done] == ["internal"] * 3 + [None] * 2
    assert health == [False, True]


def test_cancelled_jobs_leave_the_queue_at_once_and_shutdown_answers_the_rest():
    engine = LengthEngine(delay=0.02)
    metrics = Metrics()
    scheduler = Scheduler(engine, "m", metrics, config(batch_wait_ms=0, max_rows=1, max_queue=3))
    done, on_done, _ = collect(0)
    running = make_jobs(1, on_done, length=40)  # 40 steps of 20 ms
    waiting = make_jobs(3, on_done)
    assert scheduler.submit(running) is None
    scheduler.start()
    until(lambda: len(scheduler.search) == 1)  # the first is decoding (max_rows 1): polled, not slept,
    assert scheduler.submit(waiting) is None  # so a busy machine cannot reorder the steps
    until(lambda: scheduler.queued == 3)  # three wait: the queue is full
    assert scheduler.submit(make_jobs(1, on_done)) == "overloaded"
    scheduler.cancel(waiting[:2])
    assert [j.error for j in waiting[:2]] == ["cancelled", "cancelled"]  # answered now, not later
    later = make_jobs(2, on_done)
    assert scheduler.queued == 1 and scheduler.submit(later) is None  # they stopped counting
    scheduler.stop(timeout=0.1)  # still decoding the first: what waits is told "shutdown"
    assert [j.error for j in [waiting[2]] + later] == ["shutdown"] * 3
    assert scheduler.submit(make_jobs(1, on_done)) == "shutdown"
    outcomes = {o: metrics.registry.get_sample_value("translator_queue_wait_seconds_count",
                                                     {"model": "m", "outcome": o}) or 0
                for o in ("admitted", "cancelled", "deadline", "shutdown")}
    assert outcomes == {"admitted": 1, "cancelled": 2, "deadline": 0, "shutdown": 3}
    deadline = time.monotonic() + 5
    while not running[0].finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running[0].error is None and running[0].hypotheses  # running work was finished


def test_a_job_past_its_deadline_in_the_queue_is_answered_without_being_run():
    engine = LengthEngine(delay=0.02)
    scheduler = Scheduler(engine, "m", Metrics(), config(batch_wait_ms=0, max_rows=1))
    done, on_done, event = collect(2)
    assert scheduler.submit(make_jobs(1, on_done, length=20) + make_jobs(1, on_done, deadline=0.1)) is None
    scheduler.start()
    assert event.wait(5)
    scheduler.stop()
    late = [j for j in done if j.error]
    assert [j.error for j in late] == ["deadline"] and not late[0].hypotheses


@pytest.mark.parametrize("kind", ["continuous", "static"])
def test_budgets_bound_rows_and_padded_positions_in_both_modes(kind):
    """Sources of 2 to 40 tokens under a budget of 96 padded positions and 8 rows: without the
    padding-aware budget a 40-token source among seven short ones would hold 320 positions."""
    seen = []

    class Recording(LengthEngine):
        def step(self, prev_ids, state, k):
            seen.append((len(prev_ids), state["mask"].shape[1]))
            return super().step(prev_ids, state, k)

    scheduler = Scheduler(Recording(), "m", Metrics(), config(
        kind=kind, batch_wait_ms=5, max_rows=8, max_tokens=96, static_batch=64))
    done, on_done, event = collect(40)
    jobs = [Job([3] + [1] * (1 if i % 5 else 39), SearchOptions(beam_size=1 + i % 2, max_length=9),
                deadline=time.monotonic() + 30, on_done=on_done) for i in range(40)]
    assert scheduler.submit(jobs) is None
    scheduler.start()
    assert event.wait(20)
    scheduler.stop()
    assert all(j.error is None for j in done)
    assert max(rows for rows, _ in seen) <= 8
    assert max(rows * width for rows, width in seen) <= 96
    assert any(width == 40 for _, width in seen) and any(width <= 2 for _, width in seen)
    sizes = scheduler.metrics.registry.get_sample_value("translator_batch_size_count", {"model": "m"})
    assert sizes == scheduler.metrics.registry.get_sample_value("translator_decode_steps_total", {"model": "m"})


def test_a_job_with_nothing_to_decode_is_answered_not_forgotten():
    scheduler = Scheduler(LengthEngine(), "m", Metrics(), config(batch_wait_ms=0))
    done, on_done, event = collect(2)
    empty = Job([], SearchOptions(), deadline=time.monotonic() + 30, on_done=on_done)
    assert scheduler.submit([empty] + make_jobs(1, on_done)) is None
    scheduler.start()
    assert event.wait(5)
    scheduler.stop()
    assert empty.finished and empty.error is None and empty.hypotheses == []


def test_encode_ahead_keeps_the_batch_decoding_while_newcomers_are_encoded():
    """With encode ahead, a slow encoding of newcomers (tens of milliseconds of ONNX Runtime, which
    lets go of the GIL) no longer stops the running batch: its steps go on meanwhile."""
    events = []  # (what, thread, time)

    class SlowEncoder(LengthEngine):
        def encode(self, src_ids, src_lengths):
            events.append(("encode start", threading.current_thread().name, time.monotonic()))
            time.sleep(0.05)
            events.append(("encode end", threading.current_thread().name, time.monotonic()))
            return super().encode(src_ids, src_lengths)

        def step(self, prev_ids, state, k):
            events.append(("step", threading.current_thread().name, time.monotonic()))
            return super().step(prev_ids, state, k)

    scheduler = Scheduler(SlowEncoder(delay=0.002), "m", Metrics(), config(batch_wait_ms=0))
    scheduler.start()
    done, on_done, event = collect(2)
    assert scheduler.submit([Job([150, 7], SearchOptions(max_length=500), deadline=time.monotonic() + 30,
                                 on_done=on_done)]) is None
    until(lambda: sum(e[0] == "step" for e in events) >= 10)
    assert scheduler.submit([Job([5, 7], SearchOptions(max_length=500), deadline=time.monotonic() + 30,
                                 on_done=on_done)]) is None
    assert event.wait(30)
    scheduler.stop()
    (_, thread, start), (_, _, end) = [e for e in events if e[0].startswith("encode")][2:4]  # the newcomer's
    steps_meanwhile = sum(1 for what, _, at in events if what == "step" and start < at < end)
    if ENCODE_AHEAD["on"]:
        assert thread == "encoder-m" and steps_meanwhile >= 5
    else:
        assert thread == "scheduler-m" and steps_meanwhile == 0
