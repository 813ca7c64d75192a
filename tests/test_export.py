"""Export: a tiny trained model round-trips through ONNX; bundles are validated; serving needs no torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmt.bundle import BundleError, load_bundle
from nmt.search import SearchOptions, translate_batch
from service.onnx_engine import OnnxEngine
from tests.servers import DEMO
from training import checkpoint
from training.torch_engine import TorchEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny-bundle"
    run = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(tiny_checkpoint[1]),
                          "--out", str(out), "--verify-sentences", "50"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "100.00% identical" in run.stdout
    return out


def test_exported_bundle_translates_like_pytorch(tiny_checkpoint, tiny_bundle):
    from export.onnx_export import HALF_MIN_ELEMENTS

    # like with like: the bundle computes with the weights it stores (large ones in fp16)
    model = checkpoint.round_weights_to_half(checkpoint.build_model(checkpoint.load(tiny_checkpoint[1])),
                                             HALF_MIN_ELEMENTS)
    torch_engine, onnx_engine = TorchEngine(model), OnnxEngine(load_bundle(tiny_bundle))
    rng = np.random.default_rng(0)
    sources = [rng.integers(4, model.cfg.src_vocab_size, size=n).tolist() for n in (1, 9, 3, 14, 6, 2)]
    for batch in (1, 6):
        for options in (SearchOptions(max_length=20), SearchOptions(beam_size=3, num_hypotheses=2, max_length=20)):
            a = translate_batch(torch_engine, sources, options, max_batch=batch)
            b = translate_batch(onnx_engine, sources, options, max_batch=batch)
            for x, y in zip(a, b):
                assert [h.token_ids for h in x] == [h.token_ids for h in y]
                np.testing.assert_allclose([h.log_prob for h in x], [h.log_prob for h in y], atol=1e-3)
    # padding must not change a sentence's result
    alone = [translate_batch(onnx_engine, [s], SearchOptions(max_length=20))[0][0].token_ids for s in sources]
    mixed = [h[0].token_ids for h in translate_batch(onnx_engine, sources, SearchOptions(max_length=20))]
    assert alone == mixed


def test_manifest_describes_the_bundle(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["quantization"] == "none"
    assert set(manifest["files"]) == {"encoder.onnx", "decoder.onnx", "spm.joint.model", "MODEL_CARD.md",
                                      "source_words.txt", "copied_words.txt", "shortlist.npz"}
    # the shortlist comes from the checkpoint's own training corpus
    assert manifest["shortlist"]["corpus"] == ["train.de", "train.en"]
    assert manifest["verification"]["shortlist"]["sentences"] == 50
    assert manifest["known_words"] == "source_words.txt" and manifest["name"] == "de-en"  # --name default
    assert manifest["copied_words"] == "copied_words.txt"  # from the checkpoint (trained here)
    assert [i["name"] for i in manifest["graphs"]["decoder"]["inputs"]][:2] == ["prev_ids", "k"]
    assert manifest["verification"]["parity_greedy"]["identical"] == 1.0
    card = (tiny_bundle / "MODEL_CARD.md").read_text()
    assert "# Model card: de-en" in card and "identical" in card and "How to reproduce" in card


@pytest.mark.parametrize("damage,message", [
    ("flip", r"encoder.onnx: sha256 .* does not match manifest.json"),
    ("missing", r"decoder.onnx: missing \(listed in manifest.json\)"),
    ("version", r"format_version 99 is not supported"),
    ("no-manifest", r"manifest.json: missing"),
])
def test_bundle_validation_names_file_and_mismatch(tiny_bundle, tmp_path, damage, message):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    if damage == "flip":
        data = bytearray((bundle / "encoder.onnx").read_bytes())
        data[100] ^= 1
        (bundle / "encoder.onnx").write_bytes(bytes(data))
    elif damage == "missing":
        (bundle / "decoder.onnx").unlink()
    elif damage == "version":
        m = json.loads((bundle / "manifest.json").read_text())
        m["format_version"] = 99
        (bundle / "manifest.json").write_text(json.dumps(m))
    else:
        (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_demo_bundle_is_committed_and_valid():
    bundle = load_bundle(DEMO)
    assert sum(f.stat().st_size for f in DEMO.iterdir()) <= 30 * 1024 * 1024
    assert bundle.manifest["source_language"] == "de" and bundle.manifest["target_language"] == "en"
    assert "non-commercial" in (DEMO / "MODEL_CARD.md").read_text()


def test_serving_code_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "import service.__main__, service.server, service.client, service.healthcheck, service.onnx_engine\n"
            "assert 'training' not in sys.modules and 'export' not in sys.modules\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_int8_demo_bundle_is_small_valid_and_reports_its_own_scores():
    int8 = DEMO.parent / "demo-de-en-int8"
    bundle = load_bundle(int8)
    assert sum(f.stat().st_size for f in int8.iterdir()) <= 15 * 1024 * 1024
    assert bundle.manifest["quantization"] == "int8"
    assert set(bundle.manifest["scores"]) == {"greedy"}  # measured on the quantized graphs
    assert bundle.manifest["verification"]["batch_invariance"]["identical"] >= 0.99
    from nmt.tokenizer import Tokenizer

    src, tgt = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
    [hyps] = translate_batch(OnnxEngine(bundle), [src.encode("Ein Mann fährt Fahrrad.")], SearchOptions())
    assert "man" in tgt.decode(hyps[0].token_ids).lower()


def test_export_that_fails_its_checks_publishes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "rejected"
    run = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(tiny_checkpoint[1]), "--out", str(out),
                          "--verify-sentences", "20", "--max-log-prob-diff", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "EXPORT REJECTED" in run.stderr and "log-prob difference" in run.stderr
    assert not out.exists()


def test_int8_export_of_a_fresh_model_loads_and_translates(tiny_checkpoint, tmp_path):
    out = tmp_path / "int8"
    run = subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(tiny_checkpoint[1]), "--out", str(out),
                          "--quantize", "int8", "--verify-sentences", "30"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "skip to quantize" not in run.stderr + run.stdout  # the quantizer's per-node log is silenced
    bundle = load_bundle(out)
    assert bundle.manifest["quantization"] == "int8"
    assert (out / "decoder.onnx").stat().st_size < (tiny_checkpoint[0] / "best.pt").stat().st_size
    [hyps] = translate_batch(OnnxEngine(bundle), [[5, 6, 7]], SearchOptions(beam_size=2, max_length=10))
    assert hyps and all(isinstance(t, int) for t in hyps[0].token_ids)


@pytest.mark.parametrize("rnn_type,layers,attention", [("gru", 1, "additive"), ("lstm", 2, "general"),
                                                       ("gru", 2, "dot")])
def test_encoder_graph_gives_what_the_pytorch_encoder_gives(rnn_type, layers, attention):
    """The encoder written node by node (ONNX's bidirectional RNN with the sentence lengths) gives
    the PyTorch encoder's states, as trained (packed sequences), for every sentence of a padded
    batch, and zeros beyond each sentence."""
    import torch

    from export.encoder_graph import encoder_model
    from service.onnx_engine import inference_session
    from training.model import ModelConfig, Seq2Seq

    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=50, tgt_vocab_size=40, rnn_type=rnn_type, emb_size=12, encoder_hidden=8,
                      encoder_layers=layers, decoder_hidden=16, attention=attention, attention_size=10,
                      output_size=14)
    model = Seq2Seq(cfg).eval()
    session = inference_session(encoder_model(model, 18).SerializeToString())
    lengths = np.array([5, 1, 3, 7], np.int64)
    src = np.where(np.arange(7)[None, :] < lengths[:, None], np.random.default_rng(0).integers(4, 50, (4, 7)), 0)
    outputs = session.run(None, {"src_ids": src, "src_lengths": lengths})
    got = dict(zip([o.name for o in session.get_outputs()], outputs))
    with torch.no_grad():
        want = {k: v.numpy() for k, v in model.encode(torch.from_numpy(src), torch.from_numpy(lengths)).items()}
    assert list(got) == list(want)
    mask = want["mask"]
    np.testing.assert_array_equal(got["mask"], mask)
    for name in want:
        if name in ("memory", "keys"):
            np.testing.assert_allclose(got[name][mask], want[name][mask], atol=1e-5, err_msg=name)
            assert not got[name][~mask].any()
        elif name != "mask":
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
