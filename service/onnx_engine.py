"""The ONNX Runtime engine: a bundle behind the engine interface of `nmt.engine` (no torch).

Session choices, on purpose:
- one global intra-op thread pool shared by the encoder and decoder sessions: two private pools
  spin against each other on a small machine and halve batch-1 speed;
- all graph optimizations (the fp16->fp32 Casts of stored weights are folded once at load);
- sequential execution: the graphs are chains, parallel execution only adds scheduling.
Spinning is not set: `session.intra_op.allow_spinning` and `session.force_spinning_stop` only apply
to per-session pools (measured: decoder steps took the same time with them on and off under the
global pool, whose worker spins between runs whatever they say: the process uses 2 cores' CPU with
1 ms of Python between steps). Per-session pools that spin made single steps faster but every
search slower (batch 1: 136 vs 194 sentences/s), the spinning worker stealing the core that the
search's Python code needs between steps; ones that stop spinning after each run wake a parked
thread at every step (1 row: 295 vs 226 us), and served 32 concurrent clients more slowly than the
global pool (336 vs 375 sentences/s; without spinning 222).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import onnxruntime as ort

from nmt.bundle import Bundle, BundleError
from nmt.engine import RecurrentState, State
from nmt.shortlist import Shortlist
from service import int8
from service.cpus import int8_dot_products
from service.config import EMBEDDING_TABLES_MB
from service.embedding_tables import fold_embedding
from service.one_column_matmuls import one_column_matmuls_as_einsum
from service.shortlist_graph import shortlist_decoder

_pool_lock = threading.Lock()
_pool_threads: int | None = None

ORT_TYPES = {"int64": "tensor(int64)", "float32": "tensor(float)", "bool": "tensor(bool)"}


def _global_pool(threads: int) -> None:
    """Create the process-wide thread pool once (ONNX Runtime allows it once per process)."""
    global _pool_threads
    with _pool_lock:
        if _pool_threads is None:
            ort.set_global_thread_pool_sizes(threads, 1)
            _pool_threads = threads


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.use_per_session_threads = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def inference_session(model: bytes | str, threads: int = 0) -> ort.InferenceSession:
    """A CPU session as the service runs it, on the process-wide pool (created with `threads` if
    none exists yet; 0: ONNX Runtime's default)."""
    _global_pool(threads)
    session = ort.InferenceSession(model, session_options(), providers=["CPUExecutionProvider"])
    # ONNX Runtime's Python wrapper keeps a model given as bytes for as long as the session lives
    # (its own TODO says so), only to retry creating it: a rewritten decoder's 46 MB, for nothing.
    if isinstance(model, bytes) and getattr(session, "_model_bytes", None) is model:
        session._model_bytes = None
    return session


def _check_signature(session: ort.InferenceSession, spec: dict, file: str) -> None:
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        got = [(a.name, a.type) for a in actual]
        want = [(x["name"], ORT_TYPES[x["dtype"]]) for x in spec[kind]]
        if got != want:
            raise BundleError(f"{file}: graph {kind} {got} do not match the manifest's {want}")


class OnnxEngine(RecurrentState):
    def __init__(self, bundle: Bundle, threads: int = 0, int8_kernels: str = "auto",
                 embedding_tables_mb: float = EMBEDDING_TABLES_MB, einsum_scores: bool = True) -> None:
        _global_pool(threads)
        self.bundle = bundle
        self.einsum_scores = einsum_scores  # one-column MatMuls as Einsum (off: only to measure it)
        self.embedding_tables_mb = embedding_tables_mb
        self.embedding_tables_bytes = 0  # memory the decoder's embedding tables take (0: none)
        # kernels: "int8" or "fp32", and why (ListModels and the start-up log say it)
        self.kernels, self.kernels_reason = int8.choose(
            int8_kernels, bundle.manifest.get("quantization", "none"), int8_dot_products())
        ids = bundle.manifest["special_ids"]
        self.bos_id, self.eos_id = ids["bos"], ids["eos"]
        self.state_names = list(bundle.manifest["decoder_state"])
        self.vocab_size = int(bundle.manifest["architecture"]["tgt_vocab_size"])
        graphs = bundle.manifest["graphs"]
        self.encoder = self._session(graphs["encoder"])
        self.decoder = self._session(graphs["decoder"], decoder=True)
        self.encoder_outputs = [o["name"] for o in graphs["encoder"]["outputs"]]
        self.decoder_outputs = [o["name"] for o in graphs["decoder"]["outputs"]]
        self.shortlist: Shortlist | None = None
        self.shortlist_decoder: ort.InferenceSession | None = None
        self._vocab_key: np.ndarray | None = None  # the `vocab` state entry the cache below is for
        self._vocab_feed: dict[str, np.ndarray] | None = None
        self._vocab_ids = np.zeros(0, np.int64)
        spec = bundle.manifest.get("shortlist")
        if spec:
            self.set_shortlist(Shortlist.load(bundle.file(spec["file"])))

    def set_shortlist(self, shortlist: Shortlist) -> None:
        """Use this shortlist for the sentences that ask for one (the bundle's, or a bench's)."""
        arch = self.bundle.manifest["architecture"]
        try:
            shortlist.check(int(arch["src_vocab_size"]), self.vocab_size)
        except ValueError as e:
            raise BundleError(f"{self.bundle.path}: {e}") from None
        self.shortlist = shortlist
        self._vocab_key = None

    def _shortlist_decoder(self) -> ort.InferenceSession:
        """The decoder with a shortlisted output layer, built when a request first asks for it: the
        shortlist is off by default, and the session costs start-up time and a second copy of the
        decoder's weights."""
        if self.shortlist_decoder is None:
            model = self._graph(self.bundle.manifest["graphs"]["decoder"], decoder=True)
            model = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
            model, self._out_weight, self._out_bias = shortlist_decoder(model)
            self.shortlist_decoder = inference_session(model.SerializeToString())
        return self.shortlist_decoder

    def _session(self, spec: dict, decoder: bool = False) -> ort.InferenceSession:
        path = self.bundle.file(spec["file"])
        try:
            graph = self._graph(spec, decoder)
            if isinstance(graph, onnx.ModelProto):
                graph = graph.SerializeToString()
            session = inference_session(graph)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        _check_signature(session, spec, str(path))
        return session

    def _graph(self, spec: dict, decoder: bool = False) -> onnx.ModelProto | str:
        """A graph of the bundle as this engine runs it: its path, or the model rewritten at load
        (dequantized; the decoder's embedding products as tables, `service/embedding_tables.py`;
        its one-column MatMuls as Einsum)."""
        path = str(self.bundle.file(spec["file"]))
        model = None
        if self.kernels == "fp32" and self.bundle.manifest.get("quantization") == "int8":
            model = int8.dequantize(onnx.load(path))
        if decoder and self.embedding_tables_mb > 0:
            model = model or onnx.load(path)
            self.embedding_tables_bytes = fold_embedding(model, self.vocab_size, int(self.embedding_tables_mb * 2**20))
        if decoder and self.einsum_scores:  # the attention's scores (`service/one_column_matmuls.py`)
            model = model or onnx.load(path)
            one_column_matmuls_as_einsum(model)
        return model or path

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray,
               shortlist: np.ndarray | None = None) -> State:
        outputs = self.encoder.run(None, {"src_ids": src_ids.astype(np.int64, copy=False),
                                          "src_lengths": src_lengths.astype(np.int64, copy=False)})
        state = dict(zip(self.encoder_outputs, outputs))
        if self.shortlist is not None and shortlist is not None:
            state["vocab"] = self.shortlist.rows(src_ids, src_lengths)
            state["vocab"][~np.asarray(shortlist, bool)] = True  # these sentences: every token
        return state

    def step(self, prev_ids: np.ndarray, state: State, k: int):
        feed = {name: state[name] for name in self.state_names + list(self.SOURCE_KEYS)}
        feed["prev_ids"] = prev_ids.astype(np.int64, copy=False)
        vocab_feed = self._vocab_inputs(state["vocab"]) if "vocab" in state else None
        if vocab_feed is None:
            feed["k"] = np.array([min(k, self.vocab_size)], np.int64)  # TopK fails for k > vocabulary
            out = dict(zip(self.decoder_outputs, self.decoder.run(None, feed)))
            top_ids = out["top_ids"]
        else:
            feed.update(vocab_feed)
            feed["k"] = np.array([min(k, len(self._vocab_ids))], np.int64)
            out = dict(zip(self.decoder_outputs, self._shortlist_decoder().run(None, feed)))
            top_ids = self._vocab_ids[out["top_ids"]]
        new = {name: out[f"{name}_out"] for name in self.state_names}
        new.update({name: state[name] for name in self.SENTENCE_KEYS if name in state})
        return out["top_log_probs"], top_ids, out["attention"], new

    def _vocab_inputs(self, vocab: np.ndarray) -> dict[str, np.ndarray] | None:
        """The output layer's rows for the union of the rows' shortlists, and each row's mask; None
        when every row may produce every token. Computed again only when the rows change (the
        state's `vocab` array is then a new one)."""
        if vocab is not self._vocab_key:
            self._vocab_key = vocab
            self._vocab_feed = None
            if not vocab.all():
                self._shortlist_decoder()  # the output layer's weights come with it
                ids = np.flatnonzero(vocab.any(axis=0))
                self._vocab_ids = ids
                self._vocab_feed = {"vocab_weight": self._out_weight[ids], "vocab_bias": self._out_bias[ids],
                                    "vocab_mask": np.where(vocab[:, ids], 0.0, -np.inf).astype(np.float32)}
        return self._vocab_feed
