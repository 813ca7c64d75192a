"""Server interceptors: gRPC metrics (go-grpc-prometheus names) and bearer-token authentication."""

from __future__ import annotations

import asyncio
import hmac
import time

import grpc

from service.metrics import Metrics

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2)
    return service, name


def _rpc_type(handler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _code_name(context, error: BaseException | None) -> str:
    code = context.code()
    if code is not None:
        return code.name if isinstance(code, grpc.StatusCode) else _from_int(int(code))
    if error is None:
        return "OK"
    return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"


def _from_int(value: int) -> str:
    return next((s.name for s in grpc.StatusCode if s.value[0] == value), "UNKNOWN")


class _Undecodable:
    """Stands for request bytes that do not parse: the handler answers INVALID_ARGUMENT instead of
    the library's UNKNOWN."""


UNDECODABLE = _Undecodable()
UNDECODABLE_TEXT = "request bytes are not a valid message of this method's request type"


def _safe(deserializer):
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception:  # protobuf raises DecodeError (and others for deeply broken input)
            return UNDECODABLE

    return parse


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC with the go-grpc-prometheus metrics, and turns undecodable requests into
    INVALID_ARGUMENT."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        service, method = _split(details.method)
        labels = (_rpc_type(handler), service, method)
        m = self.m

        def finish(context, started, error):
            m.grpc_handled.labels(*labels, _code_name(context, error)).inc()
            m.grpc_seconds.labels(*labels).observe(time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                started = time.perf_counter()
                m.grpc_started.labels(*labels).inc()
                m.grpc_received.labels(*labels).inc()
                error = None
                try:
                    if request is UNDECODABLE:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_TEXT)
                    response = await inner(request, context)
                    m.grpc_sent.labels(*labels).inc()
                    return response
                except BaseException as e:
                    error = e
                    raise
                finally:
                    finish(context, started, error)

            return grpc.unary_unary_rpc_method_handler(unary, _safe(handler.request_deserializer),
                                                       handler.response_serializer)
        if handler.stream_stream:
            inner_stream = handler.stream_stream

            async def stream(request_iterator, context):
                started = time.perf_counter()
                m.grpc_started.labels(*labels).inc()

                async def counted():
                    async for request in request_iterator:
                        m.grpc_received.labels(*labels).inc()
                        if request is UNDECODABLE:
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_TEXT)
                        yield request

                error = None
                try:
                    async for response in inner_stream(counted(), context):
                        m.grpc_sent.labels(*labels).inc()
                        yield response
                except BaseException as e:
                    error = e
                    raise
                finally:
                    finish(context, started, error)

            return grpc.stream_stream_rpc_method_handler(stream, _safe(handler.request_deserializer),
                                                         handler.response_serializer)
        return handler  # unary-stream / stream-unary: none in our services except health Watch


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Every call needs `authorization: Bearer <token>` except health checks (probes carry no secret)."""

    def __init__(self, token: str, metrics: Metrics) -> None:
        self.expected = f"Bearer {token}".encode()
        self.metrics = metrics

    async def intercept_service(self, continuation, details):
        if details.method.startswith(HEALTH_PREFIX):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self.expected):
            return await continuation(details)
        self.metrics.rejections.labels("unauthenticated").inc()
        handler = await continuation(details)

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        if handler is not None and handler.request_streaming:
            async def deny_stream(request_iterator, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
                yield  # pragma: no cover  (makes this an async generator)

            return grpc.stream_stream_rpc_method_handler(deny_stream)
        return grpc.unary_unary_rpc_method_handler(deny)
