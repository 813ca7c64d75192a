"""The decoder's products with the previous token's embedding, looked up from tables made at load:
the same translations, for every kind of decoder graph the engine runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nmt.bundle import load_bundle
from nmt.search import SearchOptions, translate_batch
from nmt.tokenizer import Tokenizer
from service.embedding_tables import fold_embedding
from service.onnx_engine import OnnxEngine, inference_session
from tests.servers import DEMO

INT8 = DEMO.parent / "demo-de-en-int8"
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
             "Kinder spielen auf der Straße.", "Ein Mann mit einem roten Hut singt.",
             "Eine Gruppe von Menschen steht vor einem Gebäude."]


def _outputs(session, feed):
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


@pytest.mark.parametrize("rnn_type,attention,input_feeding", [("gru", "additive", True), ("lstm", "general", True),
                                                              ("gru", "dot", False)])
def test_folded_decoder_computes_what_the_exported_one_does(tmp_path, rnn_type, attention, input_feeding):
    import torch

    from export.onnx_export import export_graphs
    from training.model import ModelConfig, Seq2Seq

    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=50, tgt_vocab_size=40, rnn_type=rnn_type, emb_size=16, encoder_hidden=8,
                      decoder_hidden=16, attention=attention, attention_size=8, output_size=12,
                      input_feeding=input_feeding)
    paths = export_graphs(Seq2Seq(cfg).eval(), tmp_path)
    exported = onnx.load(str(paths["decoder"]))
    folded = onnx.load(str(paths["decoder"]))
    gates = 3 if rnn_type == "gru" else 4
    added = fold_embedding(folded, 40, 2**20)
    assert added == 40 * (gates * 16 + 12) * 4  # one table row per token: the RNN's gates and the output layer
    # the embedding itself is gone: the token only selects table rows
    readers = [n for n in folded.graph.node if "prev_ids" in n.input]
    assert readers and all(n.op_type == "Gather" and n.name.endswith("/table") for n in readers)
    assert not [i for i in folded.graph.initializer if "embed" in i.name]

    encoder = inference_session(str(paths["encoder"]))
    lengths = np.array([5, 2, 7], np.int64)
    src = np.where(np.arange(7)[None, :] < lengths[:, None], np.random.default_rng(0).integers(4, 50, (3, 7)), 0)
    state = _outputs(encoder, {"src_ids": src, "src_lengths": lengths})
    before, after = inference_session(exported.SerializeToString()), inference_session(folded.SerializeToString())
    inputs = [i.name for i in before.get_inputs()]
    assert inputs == [i.name for i in after.get_inputs()]
    for prev in ([2, 2, 2], [39, 0, 17], [5, 6, 7]):
        feed = {n: state[n] for n in inputs if n in state}
        feed.update(prev_ids=np.array(prev, np.int64), k=np.array([5], np.int64))
        want, got = _outputs(before, feed), _outputs(after, feed)
        np.testing.assert_array_equal(got["top_ids"], want["top_ids"])
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)
        state.update({n.removesuffix("_out"): v for n, v in got.items() if n.endswith("_out")})


def test_tables_over_the_budget_leave_the_graph_as_it_is():
    model = onnx.load(str(DEMO / "decoder.onnx"))
    nodes = [n.name for n in model.graph.node]
    assert fold_embedding(model, 4480, 10 * 2**20) == 0  # the demo model's tables take 35 MB
    assert [n.name for n in model.graph.node] == nodes
    assert OnnxEngine(load_bundle(DEMO), 2, embedding_tables_mb=0).embedding_tables_bytes == 0


@pytest.mark.parametrize("path,kernels", [(DEMO, "auto"), (INT8, "int8"), (INT8, "fp32")])
def test_translations_with_tables_are_those_without(path, kernels):
    bundle = load_bundle(path)
    src, tgt = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
    ids = src.encode_batch(SENTENCES)
    outputs = {}
    for budget in (0, 256):
        engine = OnnxEngine(bundle, 2, kernels, embedding_tables_mb=budget)
        assert engine.kernels == ("int8" if kernels == "int8" else "fp32")
        assert (engine.embedding_tables_bytes > 30 * 2**20) == (budget > 0)
        for beam in (1, 4):
            hyps = translate_batch(engine, ids, SearchOptions(beam_size=beam))
            outputs[budget, beam] = [tgt.decode(h[0].token_ids) for h in hyps]
    for beam in (1, 4):
        same = sum(a == b for a, b in zip(outputs[0, beam], outputs[256, beam]))
        # int8 kernels quantize the embedding's activations too, the table does not: rarely a word differs
        assert same >= len(SENTENCES) - (1 if kernels == "int8" else 0), (outputs[0, beam], outputs[256, beam])
    assert "man" in outputs[256, 1][0].lower()


def test_tables_cost_the_server_about_their_own_size_in_memory():
    """Resident memory an engine adds, with and without tables, in a fresh process: the difference
    is the tables (and the fp32 rest of the two weights), not copies of the rewritten graph."""
    import subprocess
    import sys

    script = f"""
import gc
from nmt.bundle import load_bundle
from service.models import _release_freed_memory
from service.onnx_engine import OnnxEngine

def rss():
    gc.collect()
    _release_freed_memory()
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) * 1024

bundle = load_bundle({str(DEMO)!r})
start = rss()
plain = OnnxEngine(bundle, 2, embedding_tables_mb=0)
middle = rss()
tables = OnnxEngine(bundle, 2)
print(middle - start, rss() - middle, tables.embedding_tables_bytes)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=DEMO.parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    plain, with_tables, table_bytes = map(int, run.stdout.split())
    assert with_tables - plain < 1.5 * table_bytes, (plain, with_tables, table_bytes)
