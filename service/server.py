"""Building and running the gRPC server (grpc.aio).

grpc.aio, not the threaded server: a threaded server gives each waiting request a worker thread,
so `max_workers` would silently cap how many requests can share a batch. Here requests are
coroutines waiting on futures; the decoding happens in one scheduler thread per model. The HTTP
API (`service/http.py`) runs in the same event loop on the same translation core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.config import ServerConfig
from service.core import TranslationCore
from service.http import HttpApi, start_http
from service.interceptors import AuthInterceptor, MetricsInterceptor
from service.metrics import Metrics, ModelInfoFiles
from service.models import Model, load_models, warm_up
from service.servicer import TranslatorServicer
from translation.v1 import translator_pb2, translator_pb2_grpc

log = logging.getLogger("service")
SERVICE_NAME = translator_pb2.DESCRIPTOR.services_by_name["Translator"].full_name


class StartupError(RuntimeError):
    pass


@dataclass
class Server:
    server: grpc.aio.Server
    port: int
    models: dict[str, Model]
    health: health.aio.HealthServicer
    metrics: Metrics
    core: TranslationCore
    http: HttpApi | None = None
    http_port: int = 0  # bound HTTP port once started (0: no HTTP API)
    _http_runner: object = None

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def watch_engines(self) -> None:
        """A model whose engine keeps failing turns health NOT_SERVING (load balancers route
        around the replica); SERVING again when it recovers."""
        loop = asyncio.get_running_loop()

        def changed(_healthy: bool) -> None:
            serving = all(m.scheduler.healthy for m in self.models.values()) and not self.core.draining
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.set_serving(serving)))

        for model in self.models.values():
            model.scheduler.on_health = changed

    async def start(self, http_host: str = "", http_port: int = 0, shared_ports: bool = False) -> None:
        """Start listening (health NOT_SERVING), warm every model up, then report SERVING.
        With an HTTP API, it listens on http_port (0: a free one) from the start as well."""
        await self.server.start()
        if self.http is not None:
            try:
                self._http_runner = await start_http(self.http, http_host, http_port, shared_ports)
            except OSError as e:
                await self.server.stop(0)
                raise StartupError(f"cannot serve HTTP on port {http_port}: {e.strerror} "
                                   f"(is another server using the port?)") from None
            self.http_port = self._http_runner.addresses[0][1]
        self.watch_engines()
        await self.ready()

    async def ready(self) -> None:
        """Start the schedulers and warm every model up; SERVING only once all succeeded."""
        for model in self.models.values():
            model.scheduler.start()
            seconds = await asyncio.to_thread(warm_up, model)
            log.info("model %s warmed up in %.2fs", model.name, seconds)
        await self.set_serving(True)

    async def stop(self, grace: float) -> None:
        """Graceful shutdown: health NOT_SERVING and new translations refused (UNAVAILABLE) at once,
        running translations finish (within `grace` seconds), then the server closes."""
        await self.set_serving(False)
        self.core.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.core.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for model in self.models.values():  # out of time: what still waits is told why
            model.scheduler.abort_queued("shutdown")
        await self.server.stop(max(0.0, deadline - loop.time()))
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        for model in self.models.values():
            await asyncio.to_thread(model.scheduler.stop)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise StartupError(f"cannot read {path}: {e.strerror}") from None


def create_server(cfg: ServerConfig, metrics: Metrics | None = None) -> Server:
    """Load the bundles and bind the port (0 picks a free one). Nothing is served before `start`."""
    metrics = metrics or Metrics()
    models = load_models(cfg.bundles, metrics, cfg.scheduler, cfg.threads, cfg.int8_kernels,
                         cfg.embedding_tables_mb, cfg.encode_ahead, cfg.engine_processes)
    interceptors = [MetricsInterceptor(metrics)]
    if cfg.auth_token:
        interceptors.append(AuthInterceptor(cfg.auth_token, metrics))
    server = grpc.aio.server(interceptors=interceptors, options=[
        # a second server on the same port must fail, not share traffic; the workers of one
        # server (service/workers.py, which checked the port was free) share it
        ("grpc.so_reuseport", 1 if cfg.worker else 0),
        ("grpc.max_receive_message_length", cfg.limits.max_message_bytes),
        ("grpc.max_send_message_length", 64 << 20),
        # clients ping idle connections every 30 s (service/client.py): allow it, not more often than 10 s
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ])
    core = TranslationCore(models, cfg, metrics)
    translator_pb2_grpc.add_TranslatorServicer_to_server(TranslatorServicer(core), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if cfg.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
    address = f"{cfg.host}:{cfg.port}"
    try:
        if cfg.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(_read(cfg.tls_key), _read(cfg.tls_cert))],
                root_certificates=_read(cfg.tls_client_ca) if cfg.tls_client_ca else None,
                require_client_auth=bool(cfg.tls_client_ca))
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise StartupError(f"cannot listen on {address}: {e} (is another server using the port?)") from None
    if not port:
        raise StartupError(f"cannot listen on {address} (is another server using the port?)")
    http = HttpApi(core, cfg.auth_token, cfg.cors_origins) if cfg.http_port else None
    return Server(server, port, models, health_servicer, metrics, core, http)


async def serve(cfg: ServerConfig) -> None:
    from prometheus_client import start_http_server

    srv = create_server(cfg)
    await srv.set_serving(False)
    if cfg.metrics_port:
        try:
            start_http_server(cfg.metrics_port, registry=srv.metrics.registry)
        except OSError as e:
            raise StartupError(f"cannot serve metrics on port {cfg.metrics_port}: {e.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await srv.start(cfg.host, cfg.http_port, shared_ports=bool(cfg.worker))
    log.info("serving %s on port %d (HTTP %s, metrics %s), scheduler %s",
             ", ".join(srv.models), srv.port, f"on {srv.http_port}" if srv.http_port else "off",
             f"on {cfg.metrics_port}" if cfg.metrics_port else "with the other workers'" if cfg.worker else "off",
             cfg.scheduler.kind)
    if cfg.worker and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # tells service/workers.py it is ready
        ModelInfoFiles.write(os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid(), srv.metrics.model_infos)
    await stop.wait()
    log.info("shutting down: finishing calls in flight (grace %.1fs)", cfg.grace_seconds)
    await srv.stop(cfg.grace_seconds)
    log.info("stopped")
