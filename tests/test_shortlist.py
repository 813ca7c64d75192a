"""Vocabulary shortlist: built from a corpus, stored in the bundle, used only when asked, and a
sentence's output never depends on its company."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from nmt.bundle import load_bundle
from nmt.search import SearchOptions, pad_batch, translate_batch
from nmt.shortlist import Shortlist, build
from nmt.tokenizer import Tokenizer
from service.client import TranslatorClient
from service.config import parse_args
from service.onnx_engine import OnnxEngine
from tests.servers import DEMO, RunningServer, make_config

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
             "Kinder spielen auf der Straße neben einem großen roten Bus.", "Ein Mann mit einem Hut singt."]


@pytest.fixture(scope="module")
def demo():
    bundle = load_bundle(DEMO)
    return OnnxEngine(bundle, 2), Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)


def test_build_keeps_frequent_tokens_translations_and_copies(tmp_path):
    src_pieces = ["<pad>", "<unk>", "<s>", "</s>", "hund", "katze", "Anna", "der"]
    tgt_pieces = ["<pad>", "<unk>", "<s>", "</s>", "dog", "cat", "the", "Anna", "a"]
    src = [[4, 7], [5, 7], [4], [5, 7], [6, 7]]
    tgt = [[6, 4], [6, 5], [8, 4], [6, 5], [6, 7]]
    table = build(src, tgt, src_pieces, tgt_pieces, always_ids=[3], frequent=1, per_token=1)
    assert set(table.always.tolist()) == {3, 6}  # end of sentence and the most frequent target token
    ids, lengths = pad_batch([[4], [5], [6], [4, 5]])
    allowed = table.rows(ids, lengths)
    assert [set(np.flatnonzero(row).tolist()) for row in allowed] == [{3, 6, 4}, {3, 6, 5}, {3, 6, 7}, {3, 6, 4, 5}]
    table.save(tmp_path / "s.npz")
    again = Shortlist.load(tmp_path / "s.npz")
    assert np.array_equal(again.rows(ids, lengths), allowed)
    with pytest.raises(ValueError, match="does not fit"):
        again.check(8, 100)


def test_shortlisted_output_stays_within_each_sentences_candidates(demo):
    engine, src, _ = demo
    ids = src.encode_batch(SENTENCES)
    hyps = translate_batch(engine, ids, SearchOptions(beam_size=3, use_shortlist=True))
    padded, lengths = pad_batch(ids)
    allowed = engine.shortlist.rows(padded, lengths)
    for row, h in zip(allowed, hyps):
        assert h and all(allowed_token for allowed_token in row[h[0].token_ids])


def test_a_sentence_gets_the_same_translation_alone_and_in_company(demo):
    engine, src, _ = demo
    ids = src.encode_batch(SENTENCES)
    options = SearchOptions(use_shortlist=True)
    together = translate_batch(engine, ids, options)
    for i, sentence in enumerate(ids):
        [alone] = translate_batch(engine, [sentence], options)
        assert alone[0].token_ids == together[i][0].token_ids
        assert abs(alone[0].log_prob - together[i][0].log_prob) < 1e-4


def test_without_the_option_every_token_is_possible_even_beside_shortlisted_rows(demo):
    engine, src, tgt = demo
    ids = src.encode_batch(SENTENCES)
    full = translate_batch(engine, ids, SearchOptions())
    mixed = translate_batch(engine, ids, [SearchOptions(use_shortlist=i % 2 == 0) for i in range(len(ids))])
    for i in range(1, len(ids), 2):  # the rows without the option: exactly the full-vocabulary search
        assert mixed[i][0].token_ids == full[i][0].token_ids
        assert abs(mixed[i][0].log_prob - full[i][0].log_prob) < 1e-4
    assert "dog" in tgt.decode(mixed[1][0].token_ids).lower()


def test_the_server_reports_the_shortlist_and_takes_the_option_and_the_default():
    assert parse_args(["--default-use-shortlist", "on"]).defaults.use_shortlist is True
    assert parse_args([], {"TRANSLATOR_DEFAULT_USE_SHORTLIST": "0"}).defaults.use_shortlist is False
    with pytest.raises(SystemExit):
        parse_args(["--default-use-shortlist", "maybe"])
    server = RunningServer(make_config()).start()
    try:
        with TranslatorClient(server.address) as client:
            [model] = client.list_models()
            assert model.has_shortlist
            plain = client.translate(SENTENCES[:2])
            short = client.translate(SENTENCES[:2], use_shortlist=True)
            assert short[0].text == plain[0].text and "bike" in short[0].text
            with pytest.raises(grpc.RpcError):
                client.translate(SENTENCES[:1], beam_size=99, use_shortlist=True)
    finally:
        server.stop()
