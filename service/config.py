"""Server configuration: every flag has an environment variable (TRANSLATOR_<FLAG>) and a default
that works. Precedence: flag, then environment, then default."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path


def _flag(value: str) -> bool:
    """A boolean flag value: 1/0, true/false, yes/no, on/off."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not 1/0, true/false, yes/no or on/off")


_flag.__name__ = "boolean"
DEMO_BUNDLE = str(Path(__file__).resolve().parents[1] / "models" / "demo-de-en")


@dataclass
class Limits:
    """Everything a client controls is bounded here."""

    max_texts: int = 64  # texts per request
    max_chars: int = 20000  # characters per text: a page or two
    max_sentences: int = 500  # sentences per text
    max_request_sentences: int = 1000  # sentences per request, all texts together
    max_tokens: int = 250  # subword tokens per sentence
    max_beam: int = 8
    max_output_tokens: int = 250
    max_message_bytes: int = 4 << 20  # gRPC receive limit (the library answers RESOURCE_EXHAUSTED)
    max_request_seconds: float = 30.0  # cap for requests without (or with a longer) deadline


@dataclass
class Defaults:
    beam_size: int = 1
    length_penalty: float = 1.0
    max_output_tokens: int = 200
    # Guards (bench/robustness.py measured their cost on validation data; README "Real input")
    max_length_factor: float = 2.0  # at most 2 x source tokens + 10
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    coverage_penalty: float = 0.0
    use_shortlist: bool = False  # off: with the demo's vocabulary it did not earn it (README)


@dataclass
class SchedulerConfig:
    kind: str = "continuous"  # continuous | static
    max_rows: int = 256  # decoder rows (hypotheses) in flight
    max_tokens: int = 16384  # rows x source length in flight (memory bound)
    max_queue: int = 1024  # sentences waiting; beyond: UNAVAILABLE at once
    batch_wait_ms: float = 2.0  # when idle, wait this long for company before encoding
    static_batch: int = 64  # static mode: sentences per batch
    max_failures: int = 3  # engine failures in a row before health turns NOT_SERVING
    encode_ahead: bool = False  # continuous: encode arrivals on a thread of their own (see ServerConfig)


EMBEDDING_TABLES_MB = 256.0  # the demo model's take 35 MB


@dataclass
class ServerConfig:
    bundles: list[str] = field(default_factory=lambda: [DEMO_BUNDLE])
    host: str = "[::]"
    port: int = 50051
    metrics_port: int = 9090
    http_port: int = 8080  # HTTP/JSON API, LibreTranslate API and the attention page (0: off)
    cors_origins: str = "*"  # origins whose pages may call the HTTP API (comma-separated; empty: none)
    threads: int = 0  # ONNX Runtime intra-op threads (0: one per core)
    # auto: encode ahead (SchedulerConfig) where ONNX Runtime leaves CPUs to spare (--threads below them)
    encode_ahead: str = "auto"
    engine_processes: int = 0  # N > 0: each model's engine in N processes of its own (service/engine_processes.py)
    workers: int = 1  # N > 1: N server processes on the same ports (service/workers.py)
    worker: int = 0  # set by service/workers.py in a worker: its number (1..N); never by a user
    int8_kernels: str = "auto"  # auto | int8 | fp32: how int8 bundles run (service/int8.py)
    embedding_tables_mb: float = EMBEDDING_TABLES_MB  # per model (service/embedding_tables.py; 0: off)
    grace_seconds: float = 10.0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # set: clients must present a certificate signed by this CA (mTLS)
    auth_token: str = ""  # set: every call except health needs "authorization: Bearer <token>"
    reflection: bool = True
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


# flag -> (section or None, attribute, type, help)
FLAGS = [
    ("host", None, "host", str, "address to bind"),
    ("port", None, "port", int, "gRPC port"),
    ("metrics-port", None, "metrics_port", int, "Prometheus /metrics port (0: off)"),
    ("http-port", None, "http_port", int, "HTTP port: JSON API, LibreTranslate API, attention page (0: off)"),
    ("cors-origins", None, "cors_origins", str,
     "origins whose web pages may call the HTTP API, comma-separated ('*': any, empty: none)"),
    ("threads", None, "threads", int, "ONNX Runtime threads (0: the CPUs the container may use: cgroup quota, affinity)"),
    ("engine-processes", None, "engine_processes", int,
     "0: the engines run in the server process; N: each model's engine in N processes of its own, "
     "sharing --threads, behind the one gRPC/HTTP front"),
    ("workers", None, "workers", int,
     "N > 1: N whole server processes (gRPC, HTTP, engines) listening on the same ports, sharing --threads; "
     "connections are spread over them by the kernel, /metrics adds them up"),
    ("int8-kernels", None, "int8_kernels", str,
     "int8 bundles: auto (int8 where the CPU has int8 dot products, else fp32 weights), int8 or fp32"),
    ("embedding-tables-mb", None, "embedding_tables_mb", float,
     "memory per model for the decoder's embedding products as tables, computed at load (0: off; "
     "a model whose tables need more keeps its matmuls)"),
    ("grace-seconds", None, "grace_seconds", float, "graceful-shutdown grace period"),
    ("tls-cert", None, "tls_cert", str, "server certificate (PEM); enables TLS"),
    ("tls-key", None, "tls_key", str, "server private key (PEM)"),
    ("tls-client-ca", None, "tls_client_ca", str, "CA for client certificates; enables mutual TLS"),
    ("auth-token", None, "auth_token", str, "require 'authorization: Bearer TOKEN' (health exempt)"),
    ("scheduler", "scheduler", "kind", str, "continuous (iteration-level) or static (request-level)"),
    ("max-rows", "scheduler", "max_rows", int, "decoder rows in flight"),
    ("max-batch-tokens", "scheduler", "max_tokens", int, "rows x longest source in flight (padded positions)"),
    ("max-queue", "scheduler", "max_queue", int, "waiting sentences before shedding load"),
    ("batch-wait-ms", "scheduler", "batch_wait_ms", float, "wait for company when idle (while waiting catches any)"),
    ("static-batch", "scheduler", "static_batch", int, "static mode: sentences per batch"),
    ("max-failures", "scheduler", "max_failures", int, "engine failures in a row before health is NOT_SERVING"),
    ("encode-ahead", None, "encode_ahead", str,
     "continuous batching: encode arriving sentences on a thread of their own while the batch decodes: "
     "auto (where --threads leaves CPUs to spare), on or off"),
    ("max-texts", "limits", "max_texts", int, "texts per request"),
    ("max-chars", "limits", "max_chars", int, "characters per text"),
    ("max-sentences", "limits", "max_sentences", int, "sentences per text"),
    ("max-request-sentences", "limits", "max_request_sentences", int, "sentences per request, all texts"),
    ("max-tokens", "limits", "max_tokens", int, "subword tokens per sentence"),
    ("max-beam", "limits", "max_beam", int, "largest beam_size"),
    ("max-output-tokens", "limits", "max_output_tokens", int, "largest max_output_tokens"),
    ("max-message-bytes", "limits", "max_message_bytes", int, "largest request message"),
    ("max-request-seconds", "limits", "max_request_seconds", float, "server-side deadline cap"),
    ("default-beam", "defaults", "beam_size", int, "beam_size when a request says 0"),
    ("default-length-penalty", "defaults", "length_penalty", float, "length_penalty when a request leaves it unset"),
    ("default-max-output-tokens", "defaults", "max_output_tokens", int, "max_output_tokens when a request says 0"),
    ("default-max-length-factor", "defaults", "max_length_factor", float,
     "output tokens at most FACTOR x source tokens + 10 (0: off), when a request leaves it unset"),
    ("default-no-repeat-ngram-size", "defaults", "no_repeat_ngram_size", int, "no n-gram twice (0: off), when unset"),
    ("default-repetition-penalty", "defaults", "repetition_penalty", float, "repetition penalty (1: off), when unset"),
    ("default-coverage-penalty", "defaults", "coverage_penalty", float, "beam coverage penalty (0: off), when unset"),
    ("default-use-shortlist", "defaults", "use_shortlist", _flag,
     "restrict output to the bundle's vocabulary shortlist (1/0), when unset"),
]


def env_name(flag: str) -> str:
    return "TRANSLATOR_" + flag.upper().replace("-", "_")


def parse_args(argv: list[str] | None = None, environ: dict | None = None) -> ServerConfig:
    environ = os.environ if environ is None else environ
    cfg = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve translation bundles over gRPC. Every flag can also be set with the "
                    "environment variable shown.")
    parser.add_argument("--bundle", action="append", metavar="PATH",
                        help=f"model bundle directory; repeat to serve several, the first is the default "
                             f"[env {env_name('bundles')}, comma-separated; default: the demo bundle]")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # service/workers.py
    parser.add_argument("--no-reflection", action="store_true",
                        help=f"disable server reflection [env {env_name('no-reflection')}=1]")
    for flag, section, attr, typ, text in FLAGS:
        target = getattr(cfg, section) if section else cfg
        parser.add_argument(f"--{flag}", type=typ, default=None,
                            help=f"{text} [env {env_name(flag)}; default {getattr(target, attr)!r}]")
    args = parser.parse_args(argv)
    for flag, section, attr, typ, _ in FLAGS:
        target = getattr(cfg, section) if section else cfg
        value = getattr(args, flag.replace("-", "_"))
        if value is None and env_name(flag) in environ:
            try:
                value = typ(environ[env_name(flag)])
            except ValueError:
                parser.error(f"{env_name(flag)}={environ[env_name(flag)]!r} is not a valid {typ.__name__}")
        if value is not None:
            setattr(target, attr, value)
    if args.bundle:
        cfg.bundles = args.bundle
    elif environ.get(env_name("bundles")):
        cfg.bundles = [b.strip() for b in environ[env_name("bundles")].split(",") if b.strip()]
    cfg.worker = args.worker
    cfg.reflection = not (args.no_reflection or environ.get(env_name("no-reflection"), "") in ("1", "true"))
    if cfg.scheduler.kind not in ("continuous", "static"):
        parser.error(f"--scheduler must be continuous or static, got {cfg.scheduler.kind!r}")
    if cfg.int8_kernels not in ("auto", "int8", "fp32"):
        parser.error(f"--int8-kernels must be auto, int8 or fp32, got {cfg.int8_kernels!r}")
    try:
        cfg.encode_ahead = cfg.encode_ahead if cfg.encode_ahead == "auto" else ("on" if _flag(cfg.encode_ahead) else "off")
    except ValueError:
        parser.error(f"--encode-ahead must be auto, on or off, got {cfg.encode_ahead!r}")
    if cfg.engine_processes < 0:
        parser.error(f"--engine-processes must be >= 0, got {cfg.engine_processes}")
    if cfg.workers < 1:
        parser.error(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.embedding_tables_mb < 0:
        parser.error(f"--embedding-tables-mb must be >= 0, got {cfg.embedding_tables_mb}")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if cfg.tls_client_ca and not cfg.tls_cert:
        parser.error("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    return cfg
