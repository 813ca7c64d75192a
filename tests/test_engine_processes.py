"""`--engine-processes N`: the engines in processes of their own behind the one front, served for
real on loopback (the demo bundle)."""

import os
import signal
import time

import grpc
import pytest

from service.client import TranslatorClient
from tests.servers import RunningServer, make_config
from tests.test_server_lifecycle import health
from tests.test_service import SENTENCES, concurrent_answers_are_those_alone
from grpc_health.v1 import health_pb2
from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def server():
    srv = RunningServer(make_config(engine_processes=2)).start()
    yield srv
    srv.stop()


def pool(srv):
    return next(iter(srv.srv.models.values())).scheduler


def test_two_engine_processes_run_apart_from_the_front_which_loads_no_engine(server):
    processes = pool(server).processes
    assert len(processes) == 2 and all(p.process.is_alive() for p in processes)
    assert len({p.process.pid for p in processes} | {os.getpid()}) == 3
    assert next(iter(server.srv.models.values())).engine is None  # the front loads no engine


def test_concurrent_clients_get_the_answers_they_get_alone(server):
    with TranslatorClient(server.address) as client:
        concurrent_answers_are_those_alone(server, client)
    assert all(p.jobs == {} for p in pool(server).processes)


def test_answers_and_model_info_equal_the_server_process(server):
    alone = RunningServer(make_config()).start()
    try:
        texts = ["Ein Hund bellt. Zwei Männer spielen Fußball", "ZWEI HUNDE IM SCHNEE", "Schreib an info@example.com"]
        with TranslatorClient(server.address) as a, TranslatorClient(alone.address) as b:
            for options in (dict(beam_size=1), dict(beam_size=3, return_attention=True)):
                got, want = a.translate(texts, **options), b.translate(texts, **options)
                assert [t.text for t in got] == [t.text for t in want]
                if options.get("return_attention"):
                    assert [len(s.best.attention) for t in got for s in t.sentences] == \
                           [len(s.best.attention) for t in want for s in t.sentences]
            assert a.list_models()[0].kernels == b.list_models()[0].kernels
    finally:
        alone.stop()


def test_the_processes_metrics_reach_the_front_registry(server):
    model = next(iter(server.srv.models))
    before = server.value("translator_sentences_total", model=model)
    steps = server.value("translator_decode_steps_total", model=model)
    with TranslatorClient(server.address) as client:
        client.translate(SENTENCES)
    assert server.value("translator_sentences_total", model=model) - before == len(SENTENCES)
    assert server.value("translator_decode_steps_total", model=model) > steps
    deadline = time.monotonic() + 2  # gauges: the sum over the processes, idle again
    while server.value("translator_rows_in_flight", model=model) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.value("translator_rows_in_flight", model=model) == 0
    assert server.value("translator_queue_depth", model=model) == 0


def test_a_deadline_inside_an_engine_process_is_answered_and_counted(server):
    s = pb_grpc.TranslatorStub(server.channel())
    before = server.value("translator_cancellations_total", reason="deadline") + \
        server.value("translator_cancellations_total", reason="cancelled")
    with pytest.raises(grpc.RpcError) as err:  # 8 x 5 rows for 200 steps: far beyond 0.2 s
        s.Translate(pb.TranslateRequest(texts=[SENTENCES[2]] * 8, options=pb.DecodingOptions(
            beam_size=5, min_output_tokens=200, max_output_tokens=200)), timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5  # the process drops the sentences and says so
    while time.monotonic() < deadline and server.value("translator_cancellations_total", reason="deadline") + \
            server.value("translator_cancellations_total", reason="cancelled") - before < 8:
        time.sleep(0.05)
    assert server.value("translator_cancellations_total", reason="deadline") + \
        server.value("translator_cancellations_total", reason="cancelled") - before == 8
    assert all(p.jobs == {} for p in pool(server).processes)
    assert s.Translate(pb.TranslateRequest(texts=["Ein Hund rennt."]), timeout=10).translations


def test_a_call_the_client_cancels_leaves_the_engine_process(server):
    s = pb_grpc.TranslatorStub(server.channel())
    before = server.value("translator_cancellations_total", reason="cancelled")
    call = s.Translate.future(pb.TranslateRequest(texts=[SENTENCES[2]] * 4, options=pb.DecodingOptions(
        beam_size=5, min_output_tokens=200, max_output_tokens=200)), timeout=60)
    deadline = time.monotonic() + 10
    while not any(p.jobs for p in pool(server).processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    call.cancel()
    deadline = time.monotonic() + 5
    while server.value("translator_cancellations_total", reason="cancelled") - before < 4 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.value("translator_cancellations_total", reason="cancelled") - before == 4
    assert all(p.jobs == {} for p in pool(server).processes)


def test_a_process_that_dies_fails_its_sentences_health_follows_and_the_others_serve():
    srv = RunningServer(make_config(engine_processes=2)).start()
    try:
        channel = srv.channel()
        s = pb_grpc.TranslatorStub(channel)
        first, second = pool(srv).processes
        long = s.Translate.future(pb.TranslateRequest(texts=[SENTENCES[2]] * 4, options=pb.DecodingOptions(
            beam_size=5, min_output_tokens=200, max_output_tokens=200)), timeout=30)
        deadline = time.monotonic() + 10
        while not (first.jobs or second.jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = first if first.jobs else second
        os.kill(victim.process.pid, signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as err:
            long.result()
        assert err.value.code() == grpc.StatusCode.INTERNAL and "exited" in err.value.details()
        deadline = time.monotonic() + 5
        while health(channel) != health_pb2.HealthCheckResponse.NOT_SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        for text in SENTENCES:  # what arrives now goes to the process still alive
            assert s.Translate(pb.TranslateRequest(texts=[text]), timeout=10).translations
        survivor = second if victim is first else first
        os.kill(survivor.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not survivor.dead and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(grpc.RpcError) as err:
            s.Translate(pb.TranslateRequest(texts=["Ein Hund rennt."]), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "engine processes exited" in err.value.details()
    finally:
        srv.stop()
