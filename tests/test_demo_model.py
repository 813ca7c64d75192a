"""The committed demo model translates German captions into English."""

import gzip

import pytest
import sacrebleu

from nmt.bundle import load_bundle
from nmt.search import SearchOptions, translate_batch
from nmt.tokenizer import Tokenizer
from service.onnx_engine import OnnxEngine
from tests.servers import DEMO
from tests.tiny import MULTI30K


@pytest.fixture(scope="module")
def demo():
    bundle = load_bundle(DEMO)
    return OnnxEngine(bundle), Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)


def translate(demo, sentences, beam=1):
    engine, src, tgt = demo
    hyps = translate_batch(engine, src.encode_batch(sentences), SearchOptions(beam_size=beam))
    return tgt.decode_batch([h[0].token_ids for h in hyps])


def test_demo_model_translates_simple_captions(demo):
    out = translate(demo, ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."], beam=5)
    assert "man" in out[0].lower() and ("bike" in out[0].lower() or "bicycle" in out[0].lower())
    assert "two dogs" in out[1].lower() and "snow" in out[1].lower()


@pytest.mark.skipif(not MULTI30K.exists(), reason=f"Multi30k not found at {MULTI30K}")
def test_demo_model_scores_on_multi30k_test(demo):
    src = gzip.open(MULTI30K / "test_2016_flickr.de.gz", "rt", encoding="utf-8").read().splitlines()[:200]
    ref = gzip.open(MULTI30K / "test_2016_flickr.en.gz", "rt", encoding="utf-8").read().splitlines()[:200]
    bleu = sacrebleu.corpus_bleu(translate(demo, src), [ref]).score
    assert bleu > 30, f"greedy BLEU {bleu:.1f} on the first 200 test sentences"
