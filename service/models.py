"""The served models: each bundle loaded, validated, given its tokenizers and its scheduler."""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, replace

from nmt.bundle import Bundle, BundleError, load_bundle
from nmt.search import SearchOptions, translate_batch
from nmt.text import TextProcessor
from nmt.tokenizer import Tokenizer
from service.config import EMBEDDING_TABLES_MB, SchedulerConfig
from service.cpus import available_cpus, cgroup_quota
from service.engine_processes import EnginePool
from service.metrics import Metrics
from service.onnx_engine import OnnxEngine
from service.scheduler import Scheduler
from translation.v1 import translator_pb2 as pb

log = logging.getLogger("service")


@dataclass
class Model:
    bundle: Bundle
    engine: OnnxEngine | None  # None: the engine runs in engine processes (`scheduler` is their pool)
    source: Tokenizer
    target: Tokenizer
    scheduler: Scheduler | EnginePool
    text: TextProcessor

    @property
    def name(self) -> str:
        return self.bundle.name

    def info(self, is_default: bool) -> pb.ModelInfo:
        m = self.bundle.manifest
        scores = [pb.Score(decoding=k, bleu=v.get("bleu", 0.0), chrf=v.get("chrf", 0.0),
                           signature=v.get("bleu_signature", ""))
                  for k, v in sorted(m.get("scores", {}).items())]
        return pb.ModelInfo(name=self.name, source_language=m.get("source_language", ""),
                            target_language=m.get("target_language", ""),
                            source_vocab_size=len(self.source), target_vocab_size=len(self.target),
                            quantization=m.get("quantization", "none"), scores=scores,
                            is_default=is_default, parameters=m.get("parameters", 0),
                            kernels=f"{self.kernels[0]}: {self.kernels[1]}", has_shortlist=self.has_shortlist)

    @property
    def kernels(self) -> tuple[str, str]:
        """The engine's kernels ("int8" or "fp32") and why."""
        if self.engine is None:
            return self.scheduler.info.kernels, self.scheduler.info.kernels_reason
        return self.engine.kernels, self.engine.kernels_reason

    @property
    def has_shortlist(self) -> bool:
        return self.scheduler.info.shortlist if self.engine is None else self.engine.shortlist is not None


def text_processor(bundle: Bundle, source: Tokenizer, target: Tokenizer) -> TextProcessor:
    """How this model reads texts: its source language's segmenter, its known source words
    (bundles exported before they carried them: names are not protected) and the rare names that
    training copied (protected all the same)."""
    m = bundle.manifest
    known, copied = [bundle.file(m[key]).read_text(encoding="utf-8").split("\n") if m.get(key) else None
                     for key in ("known_words", "copied_words")]
    return TextProcessor(source, target, m.get("source_language", "en") or "en", known, copied_words=copied,
                         target_language=m.get("target_language", "") or "")


def encodes_ahead(setting: str, kind: str, threads: int, cpus: int) -> bool:
    """Whether continuous batching encodes arrivals on a thread of their own (`--encode-ahead`).
    "auto": where ONNX Runtime leaves CPUs to spare. Encoding beside the decoding pays where a core
    is free for it (bench/serve_bench.py on a 16-core machine); where ONNX Runtime has every core,
    the encoder only competes with the decoder for them."""
    return kind == "continuous" and (setting == "on" or (setting == "auto" and threads < cpus))


def load_models(paths: list[str], metrics: Metrics, cfg: SchedulerConfig, threads: int,
                int8_kernels: str = "auto", embedding_tables_mb: float = EMBEDDING_TABLES_MB,
                encode_ahead: str = "auto", engine_processes: int = 0) -> dict[str, Model]:
    """Load and validate every bundle; a bad bundle ends start-up with a message naming it.
    `engine_processes` N > 0: each model's engine runs in N processes of its own, with the threads
    shared among them (`service/engine_processes.py`)."""
    models: dict[str, Model] = {}
    cpus = available_cpus()
    threads = threads or cpus  # 0: what the container may use, not the host's cores
    each = max(1, threads // engine_processes) if engine_processes else threads
    ahead = encodes_ahead(encode_ahead, cfg.kind, each * max(1, engine_processes), cpus)
    cfg = replace(cfg, encode_ahead=ahead)
    quota = cgroup_quota()  # said, so that an operator sees a container's CPU limit was read
    log.info("ONNX Runtime threads: %d of %d CPUs%s%s; encode ahead: %s", threads, cpus,
             f" (CPU quota {quota:g})" if quota is not None else "",
             f", in {engine_processes} engine processes of {each}" if engine_processes else "",
             "on" if ahead else "off" if cfg.kind == "continuous" else "off (static batching)")
    for path in paths:
        bundle = load_bundle(path)
        if bundle.name in models:
            raise BundleError(f"{path}: model name {bundle.name!r} is already served by another bundle")
        source, target = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
        text = text_processor(bundle, source, target)
        if engine_processes:
            try:
                pool = EnginePool(bundle.name, str(bundle.path), metrics, cfg, engine_processes, each,
                                  int8_kernels, embedding_tables_mb)
            except RuntimeError as e:
                raise BundleError(f"{path}: {e}") from None
            model = Model(bundle, None, source, target, pool, text)
            tables = pool.info.embedding_tables_bytes
        else:
            engine = OnnxEngine(bundle, threads, int8_kernels, embedding_tables_mb)
            model = Model(bundle, engine, source, target, Scheduler(engine, bundle.name, metrics, cfg), text)
            tables = engine.embedding_tables_bytes
        log.info("model %s: %s kernels (%s); embedding tables: %s", bundle.name, *model.kernels,
                 f"{tables / 2**20:.1f} MB" if tables else f"none (budget {embedding_tables_mb:g} MB)")
        m = bundle.manifest
        metrics.register_model(bundle.name, {
            "source_language": str(m.get("source_language", "")),
            "target_language": str(m.get("target_language", "")),
            "quantization": str(m.get("quantization", "none")),
            "kernels": model.kernels[0],
            "parameters": str(m.get("parameters", ""))})
        models[bundle.name] = model
    _release_freed_memory()
    return models


def _release_freed_memory() -> None:
    """Give back to the system what loading freed (rewriting graphs at load allocates and frees
    tens of megabytes, which glibc keeps in the heap otherwise: 44 MB of resident memory for the
    demo model with its embedding tables). glibc only; elsewhere a no-op."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warm_up(model: Model) -> float:
    """Translate one sentence (greedy and beam) outside the scheduler; return the seconds it took.
    Health turns SERVING only after this succeeded for every model. Engine processes warmed their
    engines up as they started."""
    started = time.perf_counter()
    # through the text pipeline: the segmenter is loaded now, not by the first client's request
    sentences = model.text.split("Ein Test. Noch ein Test")
    if model.engine is None:
        return time.perf_counter() - started + model.scheduler.warm_up_seconds
    warm_up_engine(model.engine, model.bundle.path, [s.ids for s in sentences if s.ids])
    return time.perf_counter() - started


def warm_up_engine(engine: OnnxEngine, path, ids: list[list[int]] | None = None) -> float:
    """Greedy and beam search over `ids` (default: one token); the seconds it took."""
    started = time.perf_counter()
    for beam in (1, 2):
        hyps = translate_batch(engine, ids or [[4]], SearchOptions(beam_size=beam, max_length=8))
        if not all(hyps):
            raise BundleError(f"{path}: warm-up translation produced nothing")
    return time.perf_counter() - started
