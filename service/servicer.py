"""The Translator servicer: a thin adapter between gRPC calls and the translation core."""

from __future__ import annotations

import asyncio

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.core import ServiceError, TranslationCore
from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc

STREAM_WINDOW = 8  # TranslateStream messages in translation at once


class TranslatorServicer(pb_grpc.TranslatorServicer):
    def __init__(self, core: TranslationCore) -> None:
        self.core = core

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
        return self.core.list_models()

    async def _translate(self, request, context) -> pb.TranslateResponse:
        try:
            return await self.core.translate(request, context.time_remaining)
        except ServiceError as e:
            if e.violations:
                await context.abort_with_status(_bad_request(e))
            await context.abort(e.code, e.message)


def _bad_request(error: ServiceError):
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in error.violations]))
    return rpc_status.to_status(status_pb2.Status(code=error.code.value[0], message=error.message,
                                                  details=[detail]))
