"""The Translator servicer: a thin adapter between protobuf messages and the schedulers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.config import ServerConfig
from service.metrics import Metrics
from service.models import Model
from service.response import build_translations
from service.scheduler import Job
from service.validation import InvalidArgument, check_sentences, check_texts, search_options
from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc

STREAM_WINDOW = 8  # TranslateStream messages in translation at once

JOB_ERRORS = {
    "deadline": (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while translating"),
    "shutdown": (grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry elsewhere"),
    "internal": (grpc.StatusCode.INTERNAL, "decoding failed"),
    "cancelled": (grpc.StatusCode.CANCELLED, "cancelled"),
}


class TranslatorServicer(pb_grpc.TranslatorServicer):
    def __init__(self, models: dict[str, Model], cfg: ServerConfig, metrics: Metrics) -> None:
        self.models, self.cfg, self.metrics = models, cfg, metrics
        self.default = next(iter(models))
        self.draining = False  # shutting down: refuse new translations, finish running ones
        self.in_flight = 0

    async def Translate(self, request, context):
        return await self._translate(request, context)

    async def TranslateStream(self, request_iterator, context):
        """Responses in request order, with up to STREAM_WINDOW messages translated at once (their
        sentences share decoder steps); a finished response is sent at once, so a client that waits
        for each answer before sending the next is served too."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await pending.put(asyncio.ensure_future(self._translate(request, context)))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader  # a broken request stream ends the call with its error
        finally:
            reader.cancel()
            while not pending.empty():
                task = pending.get_nowait()
                if task is not None:
                    task.cancel()

    async def ListModels(self, request, context):
        return pb.ListModelsResponse(models=[m.info(name == self.default) for name, m in self.models.items()])

    # -- internals ---------------------------------------------------------------------------

    async def _translate(self, request, context) -> pb.TranslateResponse:
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry elsewhere")
        self.in_flight += 1
        try:
            return await self._translate_now(request, context)
        finally:
            self.in_flight -= 1

    async def _translate_now(self, request, context) -> pb.TranslateResponse:
        model = self.models.get(request.model or self.default)
        if model is None:
            self.metrics.rejections.labels("unknown_model").inc()
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"model {request.model!r} is not served here; served: {', '.join(self.models)}")
        limits = self.cfg.limits
        loop = asyncio.get_running_loop()
        try:
            options = search_options(request.options, self.cfg.defaults, limits)
            check_texts(request.texts, limits)
            started = time.perf_counter()
            # segmentation and tokenization take milliseconds per page: off the event loop
            sentences = await loop.run_in_executor(None, lambda: [model.text.split(t) for t in request.texts])
            self.metrics.inference_seconds.labels(model.name, "tokenize").observe(time.perf_counter() - started)
            check_sentences(sentences, limits)
        except InvalidArgument as e:
            self.metrics.rejections.labels("invalid_argument").inc()
            await context.abort_with_status(_bad_request(e))
        remaining = context.time_remaining()
        budget = limits.max_request_seconds if remaining is None else min(remaining, limits.max_request_seconds)
        deadline = time.monotonic() + budget
        # placeholders are put back with the help of the attention: ask for it where they are
        with_attention = replace(options, return_attention=True)
        futures, jobs = [], []
        for sentence in (s for text in sentences for s in text):
            future = loop.create_future()
            jobs.append(Job(sentence.ids, with_attention if sentence.items else options, deadline=deadline,
                            on_done=lambda job, f=future: loop.call_soon_threadsafe(_resolve, f, job)))
            futures.append(future)
        refused = model.scheduler.submit(jobs) if jobs else None
        if refused == "shutdown":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry elsewhere")
        if refused:
            self.metrics.rejections.labels("queue_full").inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"server overloaded: more than {self.cfg.scheduler.max_queue} sentences are "
                                f"waiting for model {model.name!r}; retry with backoff")
        try:
            done = await asyncio.gather(*futures)
        except asyncio.CancelledError:  # the client cancelled or its deadline passed
            remaining = context.time_remaining()
            model.scheduler.cancel(jobs, "deadline" if remaining is not None and remaining <= 0.001 else "cancelled")
            raise
        for job in done:
            if job.error:
                code, text = JOB_ERRORS[job.error]
                await context.abort(code, f"{text}: {job.reason}" if job.reason else text)
        translations = await loop.run_in_executor(
            None, lambda: build_translations(model, request.texts, sentences, done, options.return_attention))
        return pb.TranslateResponse(translations=translations, model=model.name)


def _resolve(future: asyncio.Future, job: Job) -> None:
    if not future.done():
        future.set_result(job)


def _bad_request(error: InvalidArgument):
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in error.violations]))
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error),
                                                  details=[detail]))
