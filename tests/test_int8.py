"""int8 bundles run int8 kernels only where the CPU multiplies int8; elsewhere fp32 weights."""

from __future__ import annotations

import onnx
import pytest

from nmt.bundle import load_bundle
from nmt.search import SearchOptions, translate_batch
from nmt.tokenizer import Tokenizer
from service.client import TranslatorClient
from service.cpus import cpu_flags, int8_dot_products
from service.int8 import choose, dequantize
from service.onnx_engine import OnnxEngine
from tests.servers import DEMO, RunningServer, make_config

INT8 = DEMO.parent / "demo-de-en-int8"
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
             "Kinder spielen auf der Straße.", "Ein Mann mit einem roten Hut singt."]


def test_cpu_flags_are_read_on_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 fma\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert int8_dot_products(cpu_flags(x86)) is None
    assert int8_dot_products(cpu_flags(arm)) == "Arm dot product"
    assert int8_dot_products({"avx2", "avx512_vnni"}) == "AVX-512 VNNI"
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_picks_int8_only_with_int8_dot_products():
    assert choose("auto", "int8", "AVX-VNNI") == ("int8", "int8 MatMulNBits on AVX-VNNI")
    kernels, why = choose("auto", "int8", None)
    assert kernels == "fp32" and "no int8 dot-product instructions" in why
    assert choose("int8", "int8", None)[0] == "int8" and choose("fp32", "int8", "AVX-512 VNNI")[0] == "fp32"
    assert choose("auto", "none", "AVX-512 VNNI")[0] == "fp32"  # an fp32 bundle is fp32 whatever the CPU
    with pytest.raises(ValueError, match="--int8-kernels"):
        choose("fast", "int8", None)


def test_int8_bundle_with_fp32_kernels_translates_like_int8_kernels():
    bundle = load_bundle(INT8)
    src, tgt = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
    ids = src.encode_batch(SENTENCES)
    outputs = {}
    for kernels in ("int8", "fp32"):
        engine = OnnxEngine(bundle, 2, kernels)
        assert engine.kernels == kernels
        hyps = translate_batch(engine, ids, SearchOptions(beam_size=2))
        outputs[kernels] = [tgt.decode(h[0].token_ids) for h in hyps]
    graph = dequantize(onnx.load(str(INT8 / "decoder.onnx"))).graph
    assert not [n for n in graph.node if n.op_type == "MatMulNBits"] and any(n.op_type == "MatMul" for n in graph.node)
    same = sum(a == b for a, b in zip(outputs["int8"], outputs["fp32"]))
    assert same >= len(SENTENCES) - 1, outputs  # int8 kernels also quantize activations: rarely a word differs
    assert "man" in outputs["fp32"][0].lower()


def test_list_models_and_metrics_say_which_kernels_run():
    server = RunningServer(make_config(bundles=[str(DEMO), str(INT8)], int8_kernels="fp32")).start()
    try:
        with TranslatorClient(server.address) as client:
            models = {m.name: m for m in client.list_models()}
        assert models["demo-de-en"].kernels.startswith("fp32: unquantized bundle")
        assert models["demo-de-en-int8"].kernels == "fp32: --int8-kernels fp32"
        assert server.value("translator_model_info", model="demo-de-en-int8", source_language="de",
                            target_language="en", quantization="int8", kernels="fp32",
                            parameters=str(load_bundle(INT8).manifest["parameters"])) == 1
    finally:
        server.stop()
