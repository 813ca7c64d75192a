"""HTTP/JSON beside gRPC, in the same process and event loop (aiohttp), on the same translation
core: HTTP and gRPC sentences share decoder steps, limits, defaults, the bearer token and metrics.

- `POST /v1/translate`, `GET /v1/models`: the proto's messages in protobuf's canonical JSON mapping;
  errors `{"error": {"code": HTTP status, "status": gRPC status name, "message", "details"}}`.
- LibreTranslate's API (`POST /translate`, `GET /languages`, `POST /detect`; JSON or form bodies,
  `api_key` or the bearer token), so existing LibreTranslate clients work unchanged; its errors
  are `{"error": "..."}`.
- `GET /`: the attention page (`service/web/index.html`, self-contained); `GET /openapi.json`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path

import grpc
from aiohttp import web
from google.protobuf import json_format

from service import markup
from service.core import ServiceError, TranslationCore
from service.languages import Detector, name
from service.openapi import openapi
from translation.v1 import translator_pb2 as pb

PAGE = Path(__file__).resolve().parent / "web" / "index.html"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
}
ROUTES = ("/", "/openapi.json", "/v1/translate", "/v1/models", "/translate", "/languages", "/detect")


def http_status(error: ServiceError) -> int:
    if error.overloaded:
        return 429  # retry later; 503 is for a replica that is going away
    return HTTP_STATUS.get(error.code, 500)


class HttpApi:
    def __init__(self, core: TranslationCore, token: str = "", cors_origins: str = "*") -> None:
        self.core = core
        self.expected = f"Bearer {token}".encode() if token else b""
        self.token = token
        languages = sorted({lang for m in core.models.values()
                            for lang in (m.bundle.manifest.get("source_language"),
                                         m.bundle.manifest.get("target_language")) if lang})
        self.detector = Detector(languages)
        self.page_html = PAGE.read_bytes()
        self.app = web.Application(client_max_size=core.cfg.limits.max_message_bytes,
                                   middlewares=[self._observe])
        self.app.add_routes([
            web.get("/", self.page), web.get("/openapi.json", self.openapi),
            web.post("/v1/translate", self.v1_translate), web.get("/v1/models", self.v1_models),
            web.post("/translate", self.lt_translate), web.get("/languages", self.lt_languages),
            web.post("/detect", self.lt_detect)])
        if cors_origins:  # browser apps and extensions on other origins (LibreTranslate allows them too)
            import aiohttp_cors

            options = aiohttp_cors.ResourceOptions(allow_headers=("Content-Type", "Authorization"),
                                                   expose_headers=("Retry-After",), max_age=3600)
            cors = aiohttp_cors.setup(self.app, defaults={
                origin.strip(): options for origin in cors_origins.split(",") if origin.strip()})
            for route in list(self.app.router.routes()):
                if route.resource.canonical not in ("/", "/openapi.json"):
                    cors.add(route)

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _observe(self, request: web.Request, handler):
        """Errors as JSON (the handlers' ServiceErrors, body size, unknown routes); metrics by route
        and status."""
        started = time.perf_counter()
        route = request.path if request.path in ROUTES else "other"
        try:
            response = await handler(request)
        except ServiceError as e:
            response = self._error(request, e)
        except web.HTTPRequestEntityTooLarge as e:
            response = self._error(request, ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, e.text or "request too large"))
        except web.HTTPException as e:
            response = self._error(request, ServiceError(
                grpc.StatusCode.NOT_FOUND if e.status == 404 else grpc.StatusCode.INVALID_ARGUMENT,
                f"{request.method} {request.path}: {e.reason}"), status=e.status)
        metrics = self.core.metrics
        metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        metrics.http_seconds.labels(request.method, route, str(response.status)).observe(time.perf_counter() - started)
        return response

    def _error(self, request: web.Request, error: ServiceError, status: int | None = None) -> web.Response:
        status = status or http_status(error)
        headers = {"Retry-After": "1"} if status in (429, 503) else None
        if self._libretranslate(request):
            return web.json_response({"error": error.message}, status=status, headers=headers)
        body = {"code": status, "status": error.code.name, "message": error.message}
        if error.violations:
            body["details"] = [{"field": f, "description": d} for f, d in error.violations]
        return web.json_response({"error": body}, status=status, headers=headers)

    @staticmethod
    def _libretranslate(request: web.Request) -> bool:
        return request.path in ("/translate", "/languages", "/detect")

    def _authorize(self, request: web.Request, api_key: str | None = None) -> None:
        if not self.expected:
            return
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, self.expected):
            return
        if api_key is not None and hmac.compare_digest(str(api_key).encode(), self.token.encode()):
            return
        self.core.metrics.rejections.labels("unauthenticated").inc()
        if self._libretranslate(request):  # LibreTranslate answers a bad key with 403
            raise ServiceError(grpc.StatusCode.PERMISSION_DENIED, "Invalid API key")
        raise ServiceError(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    @staticmethod
    async def _body(request: web.Request) -> dict:
        """JSON or form body (LibreTranslate accepts both); list values for repeated form keys."""
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError as e:
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "body must be a JSON object")
            return body
        form = await request.post()
        return {k: (form.getall(k) if len(form.getall(k)) > 1 else form[k]) for k in form}

    # -- the page and the documents -----------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page_html, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": "default-src 'self'; style-src 'self' "
                                     "'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    # -- the proto's API in JSON --------------------------------------------------------------

    async def v1_models(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return web.json_response(json_format.MessageToDict(self.core.list_models()))

    async def v1_translate(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await self._body(request)
        try:
            message = json_format.ParseDict(body, pb.TranslateRequest())
        except json_format.ParseError as e:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"not a TranslateRequest: {e}") from None
        response = await self.core.translate(message)
        return web.json_response(json_format.MessageToDict(response))

    # -- LibreTranslate ------------------------------------------------------------------------

    async def lt_languages(self, request: web.Request) -> web.Response:
        targets: dict[str, set[str]] = {}
        for model in self.core.models.values():
            src, tgt = model.bundle.manifest.get("source_language"), model.bundle.manifest.get("target_language")
            targets.setdefault(src, set()).add(tgt)
            targets.setdefault(tgt, set())
        return web.json_response([{"code": code, "name": name(code), "targets": sorted(t)}
                                  for code, t in sorted(targets.items())])

    async def lt_detect(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self._authorize(request, body.get("api_key"))
        q = body.get("q")
        if not isinstance(q, str) or not q.strip():
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid request: missing q parameter")
        ranked = await asyncio.to_thread(self.detector.rank, q)
        return web.json_response([{"confidence": round(p * 100, 1), "language": code} for code, p in ranked])

    def _model_for(self, source: str, target: str) -> str:
        """The served model for a language pair, refused the way LibreTranslate refuses it."""
        pairs = {(m.bundle.manifest.get("source_language"), m.bundle.manifest.get("target_language")): n
                 for n, m in self.core.models.items()}
        if not any(s == source for s, _ in pairs):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"{source} is not supported")
        if (source, target) not in pairs:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{name(target)} ({target}) is not available as a target language from "
                               f"{name(source)} ({source})")
        return pairs[(source, target)]

    async def lt_translate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self._authorize(request, body.get("api_key"))
        q, source, target = body.get("q"), body.get("source"), body.get("target")
        for key, value in (("q", q), ("source", source), ("target", target)):
            if value is None or value == "":
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid request: missing {key} parameter")
        texts = q if isinstance(q, list) else [q]
        if not all(isinstance(t, str) for t in texts):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid request: q must be text or a list of texts")
        fmt = body.get("format", "text") or "text"
        if fmt not in ("text", "html"):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid request: format {fmt!r} (text or html)")
        try:
            alternatives = int(body.get("alternatives", 0) or 0)
        except (TypeError, ValueError):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid request: alternatives must be a number") from None
        if not 0 <= alternatives < self.core.cfg.limits.max_beam:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Invalid request: alternatives must be between 0 and {self.core.cfg.limits.max_beam - 1}")
        detected = None
        if source == "auto":
            ranked = [await asyncio.to_thread(self.detector.rank, t) for t in texts]
            detected = [{"confidence": round(r[0][1] * 100, 1), "language": r[0][0]} if r else
                        {"confidence": 0.0, "language": ""} for r in ranked]
            source = max(detected, key=lambda d: d["confidence"])["language"] if detected else ""
        model = self._model_for(source, target)
        options = pb.DecodingOptions(beam_size=alternatives + 1 if alternatives else 0,
                                     num_hypotheses=alternatives + 1, return_attention=fmt == "html")
        if fmt == "html":
            translated, alts = await self._translate_html(texts, model, options)
        else:
            response = await self.core.translate(pb.TranslateRequest(texts=texts, model=model, options=options))
            translated = [t.hypotheses[0].text for t in response.translations]
            alts = [[h.text for h in t.hypotheses[1:]] for t in response.translations]
        one = not isinstance(q, list)
        result: dict = {"translatedText": translated[0] if one else translated}
        if alternatives:
            result["alternatives"] = alts[0] if one else alts
        if detected is not None:
            result["detectedLanguage"] = detected[0] if one else detected
        return web.json_response(result)

    async def _translate_html(self, documents: list[str], model: str, options) -> tuple[list[str], list[list[str]]]:
        """Every document's text segments in one request; markup put back around the translation,
        and around each alternative by the alternative's own attention."""
        parsed = [markup.parse(d) for d in documents]
        texts = [s.text for segments in parsed for s in segments if s.translatable]
        # a page has more paragraphs than a request has texts (--max-texts): several requests, at
        # once; the body size (--max-message-bytes) and the queue bound the whole
        step = self.core.cfg.limits.max_texts
        chunks = [asyncio.ensure_future(self.core.translate(
            pb.TranslateRequest(texts=texts[i:i + step], model=model, options=options)))
            for i in range(0, len(texts), step)]
        try:
            responses = await asyncio.gather(*chunks)
        finally:  # one part refused or failed: the others leave the scheduler instead of decoding
            for chunk in chunks:
                chunk.cancel()
        translations = [t for response in responses for t in response.translations]
        out, alts, k = [], [], 0
        for segments in parsed:
            n = sum(s.translatable for s in segments)
            mine = translations[k: k + n]
            k += n
            out.append(markup.render(segments, mine))
            n_alt = max((len(t.hypotheses) for t in mine), default=1) - 1
            alts.append([markup.render(segments, mine, rank) for rank in range(1, n_alt + 1)])
        return out, alts


async def start_http(api: HttpApi, host: str, port: int, shared: bool = False) -> web.AppRunner:
    """Listen on host:port (0 picks a free port); the runner's `addresses` tell where. `shared`: with
    SO_REUSEPORT, beside the other workers of one server (service/workers.py)."""
    runner = web.AppRunner(api.app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, None if host in ("[::]", "0.0.0.0", "") else host.strip("[]"), port,
                       reuse_port=shared)
    await site.start()
    return runner
