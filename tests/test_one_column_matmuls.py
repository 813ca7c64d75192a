"""The additive attention's scores run as Einsum instead of a MatMul by a one-column weight: the
same decoder outputs, the same translations, only the node changes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nmt.bundle import load_bundle
from nmt.search import SearchOptions, translate_batch
from nmt.tokenizer import Tokenizer
from service.one_column_matmuls import one_column_matmuls_as_einsum
from service.onnx_engine import OnnxEngine, inference_session
from tests.servers import DEMO

INT8 = DEMO.parent / "demo-de-en-int8"
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
             "Kinder spielen auf der Straße.", "Ein Mann mit einem roten Hut singt.",
             "Eine Gruppe von Menschen steht vor einem Gebäude, und ein Hund bellt laut."]


def _scoring_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.output[0].startswith("/decoder/attention/energy_layer")]


@pytest.mark.parametrize("attention,rewritten", [("additive", 1), ("general", 0)])
def test_the_rewritten_decoder_computes_what_the_exported_one_does(tmp_path, attention, rewritten):
    import torch

    from export.onnx_export import export_graphs
    from training.model import ModelConfig, Seq2Seq

    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=50, tgt_vocab_size=40, emb_size=16, encoder_hidden=8, decoder_hidden=16,
                      attention=attention, attention_size=8, output_size=12)
    paths = export_graphs(Seq2Seq(cfg).eval(), tmp_path)
    exported, model = onnx.load(str(paths["decoder"])), onnx.load(str(paths["decoder"]))
    assert one_column_matmuls_as_einsum(model) == rewritten  # only additive attention has a one-column weight
    if rewritten:
        assert _scoring_nodes(exported) == ["MatMul"] and _scoring_nodes(model) == ["Einsum"]
    encoder = inference_session(str(paths["encoder"]))
    lengths = np.array([5, 2, 7], np.int64)
    src = np.where(np.arange(7)[None, :] < lengths[:, None], np.random.default_rng(0).integers(4, 50, (3, 7)), 0)
    state = dict(zip([o.name for o in encoder.get_outputs()], encoder.run(None, {"src_ids": src, "src_lengths": lengths})))
    before, after = inference_session(exported.SerializeToString()), inference_session(model.SerializeToString())
    feed = {i.name: state[i.name] for i in before.get_inputs() if i.name in state}
    feed.update(prev_ids=np.array([2, 9, 17], np.int64), k=np.array([5], np.int64))
    for want, got in zip(before.run(None, feed), after.run(None, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", [DEMO, INT8])
def test_the_demo_bundles_translate_the_same_with_the_scores_as_einsum(path):
    bundle = load_bundle(path)
    ids = Tokenizer(bundle.source_tokenizer).encode_batch(SENTENCES)
    served, exported = OnnxEngine(bundle, threads=2), OnnxEngine(bundle, threads=2, einsum_scores=False)
    graph = served._graph(bundle.manifest["graphs"]["decoder"], decoder=True)
    assert _scoring_nodes(graph) == ["Einsum"]
    for beam in (1, 5):
        options = SearchOptions(beam_size=beam)
        got = [r[0].token_ids for r in translate_batch(served, ids, options)]
        want = [r[0].token_ids for r in translate_batch(exported, ids, options)]
        assert got == want
