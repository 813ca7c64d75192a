"""The gRPC service, end to end: a real server on loopback serving the committed demo bundle."""

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.client import TranslatorClient
from tests.servers import RunningServer, make_config
from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.",
             "Eine Frau in einem roten Kleid singt auf einer Bühne.", "Kinder spielen Fußball.",
             "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.", "Ein Hund rennt."]


@pytest.fixture(scope="module")
def server():
    srv = RunningServer(make_config()).start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    with TranslatorClient(server.address) as c:
        yield c


def stub(server):
    return pb_grpc.TranslatorStub(server.channel())


def test_translates_with_every_option(client):
    [greedy] = client.translate([SENTENCES[0]], beam_size=1)
    assert greedy.text and len(greedy.hypotheses) == 1
    [beam] = client.translate([SENTENCES[0]], beam_size=5, num_hypotheses=5)
    scores = [h.score for h in beam.hypotheses]
    assert 1 < len(scores) <= 5 and scores == sorted(scores, reverse=True)
    # alternatives read differently: two segmentations of the same words are one hypothesis
    assert len({h.text for h in beam.hypotheses}) == len(beam.hypotheses)
    [snow] = client.translate(["Zwei Hunde spielen im Schnee"], beam_size=5, num_hypotheses=5)
    assert len({h.text for h in snow.hypotheses}) == len(snow.hypotheses)
    [short] = client.translate([SENTENCES[2]], max_output_tokens=3)
    assert len(short.best.tokens) <= 3
    [long] = client.translate([SENTENCES[3]], min_output_tokens=25, max_output_tokens=40)
    assert len(long.best.tokens) >= 25
    [plain, penalised] = [client.translate([SENTENCES[1]], beam_size=4, length_penalty=a)[0].best
                          for a in (0.01, 3.0)]
    assert not math.isclose(plain.score, penalised.score)


def test_attention_alignment_shapes_and_sums(client):
    for beam in (1, 3):
        [t] = client.translate([SENTENCES[4]], beam_size=beam, num_hypotheses=beam, return_attention=True)
        for h in t.hypotheses:
            assert h.attention.shape == (len(h.tokens), len(t.source_tokens))
            np.testing.assert_allclose(h.attention.sum(axis=1), 1.0, atol=1e-4)
    [t] = client.translate([SENTENCES[4]])
    assert t.best.attention is None


def test_empty_text_translates_to_empty_text(client, server):
    model = next(iter(server.srv.models))
    steps = server.value("translator_decode_steps_total", model=model)
    results = client.translate(["", "   ", "\n"])
    assert [r.text for r in results] == ["", "   ", "\n"]  # blank texts keep their whitespace
    assert all(r.sentences == [] for r in results)
    assert server.value("translator_decode_steps_total", model=model) == steps


def test_stream_answers_each_message_in_order(client):
    batches = [[s] for s in SENTENCES] + [SENTENCES[:3]]
    alone = [client.translate(b) for b in batches]
    streamed = list(client.translate_stream(batches))
    assert [[t.text for t in r] for r in streamed] == [[t.text for t in r] for r in alone]


def test_list_models_describes_the_bundle(client):
    [model] = client.list_models()
    assert model.is_default and model.source_language == "de" and model.target_language == "en"
    assert model.target_vocab_size > 1000 and model.quantization == "none"


def _violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        detail.Unpack(bad)
        fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize("request_kwargs,field", [
    ({"texts": []}, "texts"),
    ({"texts": ["a"] * 9}, "texts"),
    ({"texts": ["x" * 301]}, "texts[0]"),
    ({"texts": ["ok", " ".join(["Haus"] * 70)]}, "texts[1]"),
    ({"texts": ["a"], "options": pb.DecodingOptions(beam_size=6)}, "options.beam_size"),
    ({"texts": ["a"], "options": pb.DecodingOptions(beam_size=2, num_hypotheses=3)}, "options.num_hypotheses"),
    ({"texts": ["a"], "options": pb.DecodingOptions(max_output_tokens=201)}, "options.max_output_tokens"),
    ({"texts": ["a"], "options": pb.DecodingOptions(length_penalty=float("nan"))}, "options.length_penalty"),
    ({"texts": ["a"], "options": pb.DecodingOptions(length_penalty=-1)}, "options.length_penalty"),
    ({"texts": ["a"], "options": pb.DecodingOptions(min_output_tokens=150, max_output_tokens=20)},
     "options.min_output_tokens"),
])
def test_bad_input_is_invalid_argument_naming_the_field(server, request_kwargs, field):
    s = stub(server)
    with pytest.raises(grpc.RpcError) as err:
        s.Translate(pb.TranslateRequest(**request_kwargs))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details() and field in _violations(err.value)
    assert s.Translate(pb.TranslateRequest(texts=[SENTENCES[0]])).translations[0].hypotheses[0].text


def test_unknown_model_is_not_found_and_oversized_message_is_refused(server):
    s = stub(server)
    with pytest.raises(grpc.RpcError) as err:
        s.Translate(pb.TranslateRequest(texts=["a"], model="fr-en"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "fr-en" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        s.Translate(pb.TranslateRequest(texts=["x" * 100_000]))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert s.Translate(pb.TranslateRequest(texts=["Hallo."])).translations


def test_deadline_and_cancellation_free_their_rows(server):
    s = stub(server)
    # 8 sentences x beam 5 x 190 steps: far longer than the 0.15 s deadline on any machine
    slow = pb.TranslateRequest(texts=[SENTENCES[0]] * 8, options=pb.DecodingOptions(
        beam_size=5, min_output_tokens=190, max_output_tokens=200))
    before = server.value("translator_cancellations_total", reason="deadline")
    with pytest.raises(grpc.RpcError) as err:
        s.Translate(slow, timeout=0.15)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    future = s.Translate.future(slow)
    time.sleep(0.15)
    future.cancel()
    model = next(iter(server.srv.models))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
            server.value("translator_rows_in_flight", model=model) > 0
            or server.value("translator_cancellations_total", reason="cancelled") < 1):
        time.sleep(0.02)
    assert server.value("translator_cancellations_total", reason="deadline") == before + 8  # per sentence
    assert server.value("translator_cancellations_total", reason="cancelled") >= 1
    assert server.value("translator_rows_in_flight", model=model) == 0
    assert len(server.srv.models[model].scheduler.search) == 0


def test_concurrent_clients_get_the_answers_they_get_alone(server, client):
    concurrent_answers_are_those_alone(server, client)


def test_with_encode_ahead_concurrent_clients_get_the_answers_they_get_alone():
    srv = RunningServer(make_config(encode_ahead="on")).start()
    try:
        assert srv.srv.models[next(iter(srv.srv.models))].scheduler._encoder is not None
        with TranslatorClient(srv.address) as c:
            concurrent_answers_are_those_alone(srv, c)
    finally:
        srv.stop()


def concurrent_answers_are_those_alone(server, client):
    options = [dict(beam_size=1), dict(beam_size=4, num_hypotheses=2), dict(beam_size=2, return_attention=True)]
    jobs = [(SENTENCES[i % len(SENTENCES)], options[i % len(options)]) for i in range(64)]
    alone = {}
    for text, opts in jobs:
        key = (text, tuple(sorted(opts.items())))
        if key not in alone:
            alone[key] = [h.text for h in client.translate([text], **opts)[0].hypotheses]
    model = next(iter(server.srv.models))
    steps0 = server.value("translator_batch_size_count", model=model)
    sentences0 = server.value("translator_batch_size_sum", model=model)
    start = threading.Barrier(64)

    def call(job):
        text, opts = job
        with TranslatorClient(server.address) as c:
            start.wait()
            return [h.text for h in c.translate([text], **opts)[0].hypotheses]

    with ThreadPoolExecutor(64) as pool:
        together = list(pool.map(call, jobs))
    for (text, opts), got in zip(jobs, together):
        assert got == alone[(text, tuple(sorted(opts.items())))]
    steps = server.value("translator_batch_size_count", model=model) - steps0
    mean_batch = (server.value("translator_batch_size_sum", model=model) - sentences0) / steps
    assert mean_batch > 4, f"mean sentences per decoder step {mean_batch:.1f}: no real batching"


def test_fuzzed_requests_get_only_ok_or_invalid_argument(server):
    rng = random.Random(0)
    s = stub(server)
    alphabet = "abcäöüß ÄÖÜ.,!?\t\n\x00😀漢字" + "".join(chr(c) for c in range(0x300, 0x310))
    codes = {}
    for _ in range(2000):
        lengths = [rng.choice([rng.randint(0, 60)] * 12 + [rng.randint(280, 320)]) for _ in range(rng.randint(0, 9))]
        texts = ["".join(rng.choice(alphabet) for _ in range(n)) for n in lengths]
        options = pb.DecodingOptions(beam_size=rng.randint(0, 6), num_hypotheses=rng.randint(0, 3),
                                     length_penalty=rng.choice([0, 0, 0.5, 1, 2, -1, 20, float("inf")]),
                                     max_output_tokens=rng.choice([0, 1, 5, 250]),
                                     min_output_tokens=rng.choice([0, 0, 3, 300]),
                                     return_attention=rng.random() < 0.5)
        try:
            s.Translate(pb.TranslateRequest(texts=texts, options=options), timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        codes[code] = codes.get(code, 0) + 1
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, codes
    assert codes.get(grpc.StatusCode.OK, 0) > 200, codes
    # raw garbage bytes: INVALID_ARGUMENT too, never UNKNOWN; the server stays up
    garbage = server.channel().unary_unary("/translation.v1.Translator/Translate",
                                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for _ in range(500):
        with pytest.raises(grpc.RpcError) as err:
            garbage(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + b"\xff\xff\xff", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert s.Translate(pb.TranslateRequest(texts=["Hallo."])).translations
    model = next(iter(server.srv.models))  # nothing left behind
    assert len(server.srv.models[model].scheduler.search) == 0
    assert server.value("translator_queue_depth", model=model) == 0


def test_cli_prints_translation_heatmap_and_plot(server, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    png = tmp_path / "attention.png"
    run = subprocess.run([sys.executable, "-m", "service.client", SENTENCES[0], "--target", server.address,
                          "--beam", "3", "--attention", "--plot", str(png)],
                         capture_output=True, text=True, cwd=root, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "columns: 0=▁Ein" in run.stdout and "shades:" in run.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "in.de").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "service.client", "--file", str(tmp_path / "in.de"),
                          "--target", server.address, "--batch", "4"],
                         capture_output=True, text=True, cwd=root, timeout=60)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == len(SENTENCES)
    assert "translating" in run.stderr and "6/6" in run.stderr  # the progress bar
    run = subprocess.run([sys.executable, "-m", "service.client", "x", "--target", server.address, "--beam", "9"],
                         capture_output=True, text=True, cwd=root, timeout=60)
    assert run.returncode == 1 and run.stderr.startswith("error: INVALID_ARGUMENT: options.beam_size")
    run = subprocess.run([sys.executable, "-m", "service.client", "--list-models", "--target", server.address],
                         capture_output=True, text=True, cwd=root, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("demo-de-en (default): de->en, quantization none, runs fp32, "
                                                         "vocabulary shortlist; ")


def test_reflection_lists_the_services(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = ProtoReflectionDescriptorDatabase(server.channel()).get_services()
    assert {"translation.v1.Translator", "grpc.health.v1.Health"} <= set(services)


def test_stream_translates_several_messages_at_once(server):
    """Eight one-sentence messages on one stream: with one message at a time every decoder step
    would hold one sentence; with the window they share steps."""
    model = next(iter(server.srv.models))
    steps0 = server.value("translator_batch_size_count", model=model)
    sentences0 = server.value("translator_batch_size_sum", model=model)
    slow = pb.DecodingOptions(min_output_tokens=40, max_output_tokens=45)
    requests = [pb.TranslateRequest(texts=[s], options=slow) for s in SENTENCES[:4] * 2]
    responses = list(stub(server).TranslateStream(iter(requests)))
    assert [r.translations[0].sentences[0].source_end for r in responses] == [len(s) for s in SENTENCES[:4] * 2]
    steps = server.value("translator_batch_size_count", model=model) - steps0
    mean = (server.value("translator_batch_size_sum", model=model) - sentences0) / steps
    assert mean > 2, f"{mean:.1f} sentences per step: messages were translated one after another"


def test_length_penalty_zero_can_be_asked_for(client):
    [t] = client.translate([SENTENCES[1]], beam_size=3, length_penalty=0.0)
    assert t.best.score == pytest.approx(t.best.log_prob, abs=1e-4)  # no normalisation
    [d] = client.translate([SENTENCES[1]], beam_size=3)  # unset: the server's default, 1.0
    assert d.best.score != pytest.approx(d.best.log_prob, abs=1e-4)
