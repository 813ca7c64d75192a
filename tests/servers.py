"""A real gRPC server on loopback, run in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from pathlib import Path

import grpc

from service.config import DEMO_BUNDLE, ServerConfig
from service.metrics import Metrics
from service.server import create_server

DEMO = Path(DEMO_BUNDLE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(**changes) -> ServerConfig:
    """Small limits so that every limit is cheap to hit; port 0 picks a free port."""
    cfg = ServerConfig(bundles=[str(DEMO)], host="127.0.0.1", port=0, metrics_port=0, http_port=0, threads=2)
    cfg.limits = dataclasses.replace(cfg.limits, max_texts=8, max_chars=300, max_tokens=60, max_beam=5,
                                     max_output_tokens=200, max_message_bytes=64 * 1024)
    for key, value in changes.items():
        section, _, attr = key.partition("__")
        if attr:
            setattr(getattr(cfg, section), attr, value)
        else:
            setattr(cfg, key, value)
    return cfg


class RunningServer:
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.srv = self.call(self._create())
        self.port = self.srv.port
        self.address = f"127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.srv.http_port}"

    async def _create(self):
        return create_server(self.cfg, self.metrics)

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "RunningServer":
        self.call(self.srv.set_serving(False))
        self.call(self.srv.start("127.0.0.1", self.cfg.http_port))
        return self

    def stop(self, grace: float = 2.0) -> None:
        self.call(self.srv.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def value(self, name: str, **labels) -> float:
        v = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v
