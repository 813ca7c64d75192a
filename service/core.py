"""Translating a TranslateRequest, whatever protocol it came by: gRPC (`servicer.py`) and HTTP
(`http.py`) both call `TranslationCore.translate`, so their sentences share the same schedulers,
limits, defaults and metrics. Failures are `ServiceError`s carrying the gRPC status code; each
protocol turns them into its own kind of error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import grpc

from service.config import ServerConfig
from service.metrics import Metrics
from service.models import Model
from service.response import build_translations
from service.scheduler import Job
from service.validation import InvalidArgument, check_sentences, check_texts, search_options
from translation.v1 import translator_pb2 as pb

SHUTTING_DOWN = "server is shutting down; retry elsewhere"
# Text work for a request this small (characters) runs on the event loop: a hop to the executor
# costs more than segmenting and tokenizing a sentence or two (well under a millisecond); longer
# texts go to the executor so that they do not hold up other requests (1,000 characters can take
# 5 ms).
INLINE_CHARS = 300
JOB_ERRORS = {
    "deadline": (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while translating"),
    "shutdown": (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN),
    "internal": (grpc.StatusCode.INTERNAL, "decoding failed"),
    "cancelled": (grpc.StatusCode.CANCELLED, "cancelled"),
}


class ServiceError(Exception):
    """A request that cannot be answered: the gRPC status code, the reason, and for
    INVALID_ARGUMENT the (field, description) violations."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: list[tuple[str, str]] | None = None, overloaded: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.violations = code, message, violations or []
        self.overloaded = overloaded  # UNAVAILABLE because the queue is full (HTTP: 429, not 503)


class TranslationCore:
    def __init__(self, models: dict[str, Model], cfg: ServerConfig, metrics: Metrics) -> None:
        self.models, self.cfg, self.metrics = models, cfg, metrics
        self.default = next(iter(models))
        self.draining = False  # shutting down: refuse new translations, finish running ones
        self.in_flight = 0
        self._answers: list[tuple[asyncio.Future, Job]] = []  # finished jobs on their way to the loop
        self._answers_lock = threading.Lock()
        self._answers_scheduled = False

    def model(self, name: str) -> Model:
        model = self.models.get(name or self.default)
        if model is None:
            self.metrics.rejections.labels("unknown_model").inc()
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"model {name!r} is not served here; served: {', '.join(self.models)}")
        return model

    def list_models(self) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[m.info(name == self.default) for name, m in self.models.items()])

    async def translate(self, request: pb.TranslateRequest,
                        time_remaining: Callable[[], float | None] | None = None) -> pb.TranslateResponse:
        """Translate within the client's time (`time_remaining()`: seconds left, None for no
        deadline; capped by the server's limit). If the caller is cancelled, the request's sentences
        leave the scheduler at once, counted as cancelled or, when its time ran out, as deadline."""
        if self.draining:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        self.in_flight += 1
        try:
            return await self._translate(request, time_remaining)
        finally:
            self.in_flight -= 1

    async def _translate(self, request: pb.TranslateRequest,
                         time_remaining: Callable[[], float | None] | None) -> pb.TranslateResponse:
        model = self.model(request.model)
        limits = self.cfg.limits
        loop = asyncio.get_running_loop()
        try:
            options = search_options(request.options, self.cfg.defaults, limits)
            check_texts(request.texts, limits)
            started = time.perf_counter()
            # segmentation and tokenization take milliseconds per page: pages leave the event loop
            sentences = await _run(loop, sum(map(len, request.texts)),
                                   lambda: [model.text.split(t) for t in request.texts])
            self.metrics.inference_seconds.labels(model.name, "tokenize").observe(time.perf_counter() - started)
            check_sentences(sentences, limits)
        except InvalidArgument as e:
            self.metrics.rejections.labels("invalid_argument").inc()
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(e), e.violations) from None
        remaining = time_remaining() if time_remaining else None
        budget = limits.max_request_seconds if remaining is None else min(remaining, limits.max_request_seconds)
        deadline = time.monotonic() + budget
        # placeholders and brackets are put back with the help of the attention: ask for it there
        with_attention = replace(options, return_attention=True)
        futures, jobs = [], []
        for sentence in (s for text in sentences for s in text):
            future = loop.create_future()
            jobs.append(Job(sentence.ids, with_attention if sentence.needs_attention else options, deadline=deadline,
                            on_done=lambda job, f=future: self._answer(loop, f, job)))
            futures.append(future)
        refused = model.scheduler.submit(jobs) if jobs else None
        if refused == "shutdown":
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        if refused == "engine exited":  # every engine process of the model is gone (--engine-processes)
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, f"model {model.name!r} cannot translate now: "
                                                            "its engine processes exited")
        if refused:
            self.metrics.rejections.labels("queue_full").inc()
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"server overloaded: more than {self.cfg.scheduler.max_queue} sentences are "
                               f"waiting for model {model.name!r}; retry with backoff", overloaded=True)
        try:
            done = await asyncio.gather(*futures)
        except asyncio.CancelledError:  # the client cancelled or its deadline passed
            left = time_remaining() if time_remaining else deadline - time.monotonic()
            model.scheduler.cancel(jobs, "deadline" if left is not None and left <= 0.001 else "cancelled")
            raise
        for job in done:
            if job.error:
                code, text = JOB_ERRORS[job.error]
                raise ServiceError(code, f"{text}: {job.reason}" if job.reason else text)
        translations = await _run(
            loop, sum(map(len, request.texts)),
            lambda: build_translations(model, request.texts, sentences, done, options.return_attention))
        return pb.TranslateResponse(translations=translations, model=model.name)

    def _answer(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, job: Job) -> None:
        """(scheduler thread) Hand a finished job to the event loop. The jobs that finish in one
        decoder step are handed over together: one wake-up of the loop, not one per sentence."""
        with self._answers_lock:
            self._answers.append((future, job))
            if self._answers_scheduled:
                return
            self._answers_scheduled = True
        loop.call_soon_threadsafe(self._resolve_answers)

    def _resolve_answers(self) -> None:
        with self._answers_lock:
            answers, self._answers = self._answers, []
            self._answers_scheduled = False
        for future, job in answers:
            if not future.done():
                future.set_result(job)


async def _run(loop: asyncio.AbstractEventLoop, chars: int, work: Callable):
    """`work()` on the event loop when the request is small, else in the executor."""
    return work() if chars <= INLINE_CHARS else await loop.run_in_executor(None, work)
