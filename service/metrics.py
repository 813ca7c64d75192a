"""Prometheus metrics, built by a factory bound to a registry (tests use a private one).

gRPC metrics keep the go-grpc-prometheus names that dashboards know; translation metrics use the
`translator_` prefix, base units and closed label sets (model names come from the configuration)."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)
REJECTION_REASONS = ("queue_full", "invalid_argument", "unknown_model", "unauthenticated")
CANCEL_REASONS = ("cancelled", "deadline")
STAGES = ("tokenize", "encode", "decode")
QUEUE_OUTCOMES = ("admitted", "cancelled", "deadline", "shutdown")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.grpc_started = Counter("grpc_server_started_total", "RPCs started on the server.",
                                    GRPC_LABELS, registry=r)
        self.grpc_handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by code.",
                                    GRPC_LABELS + ("grpc_code",), registry=r)
        self.grpc_seconds = Histogram("grpc_server_handling_seconds", "RPC handling time, seconds.",
                                      GRPC_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.grpc_received = Counter("grpc_server_msg_received_total", "Messages received.",
                                     GRPC_LABELS, registry=r)
        self.grpc_sent = Counter("grpc_server_msg_sent_total", "Messages sent.", GRPC_LABELS, registry=r)

        self.batch_size = Histogram("translator_batch_size",
                                    "Sentences per executed decoder step (both scheduler modes).",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.static_batch = Histogram("translator_static_batch_sentences",
                                      "Static mode: sentences per batch taken from the queue.",
                                      ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_rows = Histogram("translator_batch_rows",
                                    "Decoder rows (hypotheses) per executed decoder step.",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("translator_batch_tokens",
                                      "Source positions per encoder batch, padding included.",
                                      ["model"], buckets=TOKEN_BUCKETS, registry=r)
        self.queue_wait = Histogram("translator_queue_wait_seconds",
                                    "Time every sentence spent in the queue, by how it left it "
                                    "(admitted, cancelled, deadline, shutdown).",
                                    ["model", "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("translator_queue_depth", "Sentences waiting for admission.",
                                 ["model"], multiprocess_mode="livesum", registry=r)
        self.rows_in_flight = Gauge("translator_rows_in_flight", "Decoder rows in the running batch.",
                                    ["model"], multiprocess_mode="livesum", registry=r)
        self.sentences_in_flight = Gauge("translator_sentences_in_flight",
                                         "Sentences in the running batch.", ["model"],
                                         multiprocess_mode="livesum", registry=r)
        self.inference_seconds = Histogram("translator_inference_seconds",
                                           "Time spent per stage (tokenize, encode, decode step).",
                                           ["model", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.decode_steps = Counter("translator_decode_steps_total", "Decoder steps executed.",
                                    ["model"], registry=r)
        self.source_tokens = Counter("translator_source_tokens_total", "Source subword tokens translated.",
                                     ["model"], registry=r)
        self.generated_tokens = Counter("translator_generated_tokens_total",
                                        "Target subword tokens returned (best hypotheses).",
                                        ["model"], registry=r)
        self.sentences = Counter("translator_sentences_total", "Sentences translated.", ["model"], registry=r)
        self.rejections = Counter("translator_rejections_total", "Requests refused, by reason.",
                                  ["reason"], registry=r)
        self.cancellations = Counter("translator_cancellations_total",
                                     "Sentences dropped before finishing, by reason.", ["reason"], registry=r)
        self.engine_failures = Counter("translator_engine_failures_total",
                                       "Engine calls that raised; their sentences got INTERNAL.",
                                       ["model", "stage"], registry=r)
        self.model_info = Info("translator_model", "Served models.", ["model"], registry=r)
        self.model_infos: dict[str, dict[str, str]] = {}  # for workers' /metrics (ModelInfoFiles)
        # HTTP API (service/http.py); route is the path for known routes, "other" otherwise
        self.http_requests = Counter("http_requests_total", "HTTP requests, by method, route and status.",
                                     ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram("http_request_duration_seconds", "HTTP request handling time, seconds.",
                                      ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason)
        for reason in CANCEL_REASONS:
            self.cancellations.labels(reason)

    def register_model(self, name: str, info: dict[str, str]) -> None:
        self.model_info.labels(name).info(info)
        self.model_infos[name] = info
        for metric in (self.queue_depth, self.rows_in_flight, self.sentences_in_flight, self.decode_steps,
                       self.source_tokens, self.generated_tokens, self.sentences):
            metric.labels(name)
        for outcome in QUEUE_OUTCOMES:
            self.queue_wait.labels(name, outcome)
        for stage in ("encode", "decode"):
            self.engine_failures.labels(name, stage)


class ModelInfoFiles:
    """translator_model_info of a server in several processes (service/workers.py): prometheus_client's
    multiprocess mode has no Info metric, so each worker leaves its models' info in the metrics
    folder (`write`) and /metrics reads it back."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def path(folder: str | Path, pid: int) -> Path:
        return Path(folder) / f"models_{pid}.json"

    @classmethod
    def write(cls, folder: str | Path, pid: int, infos: dict[str, dict[str, str]]) -> None:
        path = cls.path(folder, pid)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(infos))
        partial.replace(path)  # whole or not at all: the supervisor takes the file as "ready"

    def collect(self):
        family = InfoMetricFamily("translator_model", "Served models.", labels=["model"])
        infos: dict[str, dict[str, str]] = {}
        for path in sorted(self.folder.glob("models_*.json")):
            infos.update(json.loads(path.read_text()))
        for name, info in infos.items():
            family.add_metric([name], info)
        yield family


def workers_registry(folder: str | Path) -> CollectorRegistry:
    """What /metrics shows for several worker processes: their counters and histograms added up,
    gauges summed over the live ones, and the models' info."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    registry.register(ModelInfoFiles(folder))
    return registry
