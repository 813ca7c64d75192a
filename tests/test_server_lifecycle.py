"""Start-up, health, shutdown, security, load shedding and metrics of the real server."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import TranslatorClient
from service.server import StartupError, create_server
from tests.servers import DEMO, RunningServer, free_port, make_config
from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = ROOT / ".tools" / "usr" / "bin" / "promtool"
SLOW = pb.DecodingOptions(beam_size=5, min_output_tokens=240, max_output_tokens=250)  # seconds of work


def health(channel, service=""):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_not_serving_until_warmed_up_then_serving():
    srv = RunningServer(make_config())
    srv.call(srv.srv.set_serving(False))
    srv.call(srv.srv.server.start())  # listening, models not warmed up yet
    ch = srv.channel()
    assert health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING
    srv.call(srv.srv.ready())  # warm-up, then SERVING
    assert health(ch) == health_pb2.HealthCheckResponse.SERVING
    assert health(ch, "translation.v1.Translator") == health_pb2.HealthCheckResponse.SERVING
    srv.stop()


def test_sigterm_finishes_calls_in_flight_and_exits_zero(tmp_path):
    port = free_port()
    env = {**os.environ, "TRANSLATOR_PORT": str(port), "TRANSLATOR_METRICS_PORT": "0",
           "TRANSLATOR_GRACE_SECONDS": "20", "TRANSLATOR_BUNDLES": str(DEMO)}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if health(channel) == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        stub = pb_grpc.TranslatorStub(channel)
        assert stub.Translate(pb.TranslateRequest(texts=["Hallo."]), timeout=30).translations  # connected
        in_flight = [stub.Translate.future(pb.TranslateRequest(texts=["Ein Mann fährt Fahrrad."] * 16, options=SLOW),
                                           timeout=60) for _ in range(6)]
        time.sleep(0.5)  # the calls reach the server (they take seconds to decode)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.TranslatorStub(grpc.insecure_channel(f"127.0.0.1:{port}")).Translate(
                pb.TranslateRequest(texts=["Hallo."]), timeout=30)  # a loaded machine is slow
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        for f in in_flight:
            assert len(f.result().translations) == 16
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        output = proc.stdout.read()
    assert "shutting down" in output and "stopped" in output


def test_a_busy_port_fails_start_up_instead_of_sharing_it():
    first = RunningServer(make_config())
    try:
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            first.call(_create(make_config(port=first.port)))
    finally:
        first.stop()


async def _create(cfg):
    return create_server(cfg)


def test_a_corrupted_bundle_stops_start_up_with_a_clear_message(tmp_path):
    bundle = tmp_path / "bundle"
    import shutil
    shutil.copytree(DEMO, bundle)
    data = bytearray((bundle / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "decoder.onnx").write_bytes(bytes(data))
    run = subprocess.run([sys.executable, "-m", "service", "--bundle", str(bundle), "--port", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "decoder.onnx: sha256" in run.stderr and "does not match manifest.json" in run.stderr
    assert "Traceback" not in run.stderr


def test_full_queue_sheds_with_unavailable_and_counts_it():
    srv = RunningServer(make_config(scheduler__max_queue=3, scheduler__max_rows=4)).start()
    try:
        stub = pb_grpc.TranslatorStub(srv.channel())
        model = next(iter(srv.srv.models))
        # Three long beam-4 sentences: one fills the 4 rows, two wait in the queue (2 of 3).
        slowest = pb.DecodingOptions(beam_size=4, min_output_tokens=190, max_output_tokens=200)
        busy = stub.Translate.future(pb.TranslateRequest(texts=["Ein Hund.", "Ein Pferd.", "Eine Kuh."],
                                                         options=slowest), timeout=60)
        deadline = time.monotonic() + 10
        while srv.value("translator_queue_depth", model=model) != 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:  # two more would make 4 > 3
            stub.Translate(pb.TranslateRequest(texts=["Ein Hund.", "Eine Katze."]), timeout=60)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "overloaded" in err.value.details()
        assert time.monotonic() - started < 0.5  # at once, not after the busy batch
        assert len(busy.result().translations) == 3
        assert srv.value("translator_rejections_total", reason="queue_full") == 1
    finally:
        srv.stop()


def _certificates(tmp_path: Path) -> dict[str, bytes]:
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=test-ca")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'localhost' if name == 'server' else 'client'}")
        (tmp_path / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {p.name: p.read_bytes() for p in tmp_path.iterdir()}


def test_tls_and_mutual_tls(tmp_path):
    certs = _certificates(tmp_path)
    srv = RunningServer(make_config(tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server.key"),
                                    tls_client_ca=str(tmp_path / "ca.pem"))).start()
    target = f"localhost:{srv.port}"
    try:
        with TranslatorClient(target, root_certificates=certs["ca.pem"], private_key=certs["client.key"],
                              certificate_chain=certs["client.pem"]) as client:
            assert client.translate(["Ein Hund."])[0].text
        with pytest.raises(grpc.RpcError) as err:  # plaintext client
            TranslatorClient(target, timeout=5).translate(["Ein Hund."])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as err:  # TLS without a client certificate
            TranslatorClient(target, root_certificates=certs["ca.pem"], timeout=5).translate(["Ein Hund."])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop()


def test_bearer_token_guards_everything_but_health():
    srv = RunningServer(make_config(auth_token="s3cret")).start()
    try:
        with pytest.raises(grpc.RpcError) as err:
            TranslatorClient(srv.address).translate(["Ein Hund."])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            list(TranslatorClient(srv.address, token="wrong").translate_stream([["Ein Hund."]]))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TranslatorClient(srv.address, token="s3cret").translate(["Ein Hund."])[0].text
        assert health(srv.channel()) == health_pb2.HealthCheckResponse.SERVING
        assert srv.value("translator_rejections_total", reason="unauthenticated") == 2
    finally:
        srv.stop()


def test_metrics_after_a_known_sequence_of_calls_and_promtool_is_clean():
    srv = RunningServer(make_config()).start()
    try:
        model = next(iter(srv.srv.models))
        labels = dict(grpc_type="unary", grpc_service="translation.v1.Translator", grpc_method="Translate")
        with TranslatorClient(srv.address) as client:
            client.translate(["Ein Hund.", "Zwei Katzen."])
            client.translate([""])
            with pytest.raises(grpc.RpcError):
                client.translate(["a"], beam_size=50)
            with pytest.raises(grpc.RpcError):
                client.translate(["a"], model="nope")
            client.list_models()
        assert srv.value("grpc_server_started_total", **labels) == 4
        assert srv.value("grpc_server_handled_total", **labels, grpc_code="OK") == 2
        assert srv.value("grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT") == 1
        assert srv.value("grpc_server_handled_total", **labels, grpc_code="NOT_FOUND") == 1
        assert srv.value("grpc_server_handling_seconds_count", **labels) == 4
        assert srv.value("grpc_server_msg_received_total", **labels) == 4
        assert srv.value("grpc_server_msg_sent_total", **labels) == 2
        assert srv.value("grpc_server_handled_total", grpc_type="unary", grpc_service="translation.v1.Translator",
                         grpc_method="ListModels", grpc_code="OK") == 1
        # the warm-up runs outside the scheduler, so the translator_* counters start at zero
        assert srv.value("translator_sentences_total", model=model) == 2
        assert srv.value("translator_rejections_total", reason="invalid_argument") == 1
        assert srv.value("translator_rejections_total", reason="unknown_model") == 1
        assert srv.value("translator_source_tokens_total", model=model) > 4
        assert srv.value("translator_generated_tokens_total", model=model) >= 4
        assert srv.value("translator_decode_steps_total", model=model) >= 3
        assert srv.value("translator_inference_seconds_count", model=model, stage="encode") >= 1
        assert srv.value("translator_inference_seconds_count", model=model, stage="tokenize") == 2  # options are checked first
        assert srv.value("translator_queue_wait_seconds_count", model=model, outcome="admitted") == 2
        assert srv.value("translator_model_info", model=model, source_language="de", target_language="en",
                         quantization="none", kernels="fp32",
                         parameters=str(srv.srv.models[model].bundle.manifest["parameters"])) == 1
        from prometheus_client import generate_latest
        exposition = generate_latest(srv.metrics.registry)
        check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=exposition, capture_output=True)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    finally:
        srv.stop()


def test_many_concurrent_streams_and_calls_do_not_exhaust_workers():
    """grpc.aio has no worker cap: 100 requests wait together while one slow batch runs."""
    srv = RunningServer(make_config()).start()
    try:
        with ThreadPoolExecutor(100) as pool:
            def call(i):
                with TranslatorClient(srv.address) as c:
                    return c.translate([f"Ein Hund {i}."])[0].text
            assert all(pool.map(call, range(100)))
    finally:
        srv.stop()


def test_several_bundles_are_served_and_chosen_by_model(tmp_path):
    import json
    import shutil

    copy = tmp_path / "second"
    shutil.copytree(DEMO, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["name"] = "second"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    srv = RunningServer(make_config(bundles=[str(DEMO), str(copy)])).start()
    try:
        with TranslatorClient(srv.address) as client:
            models = client.list_models()
            assert [m.name for m in models] == [manifest_name(DEMO), "second"]
            assert [m.is_default for m in models] == [True, False]
        stub = pb_grpc.TranslatorStub(srv.channel())
        assert stub.Translate(pb.TranslateRequest(texts=["Ein Hund."])).model == manifest_name(DEMO)
        assert stub.Translate(pb.TranslateRequest(texts=["Ein Hund."], model="second")).model == "second"
    finally:
        srv.stop()


def manifest_name(bundle: Path) -> str:
    import json

    return json.loads((bundle / "manifest.json").read_text())["name"]


def test_a_failing_engine_answers_internal_then_health_follows_it():
    srv = RunningServer(make_config()).start()
    try:
        model = next(iter(srv.srv.models.values()))
        engine = model.engine
        channel = srv.channel()
        s = pb_grpc.TranslatorStub(channel)

        def broken(*args, **kwargs):
            raise RuntimeError("GPU on fire")

        engine.step = broken  # the instance attribute shadows the method
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                s.Translate(pb.TranslateRequest(texts=["Ein Hund rennt."]), timeout=10)
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "decode failed: RuntimeError: GPU on fire" in err.value.details()
        deadline = time.monotonic() + 5
        while health(channel) != health_pb2.HealthCheckResponse.NOT_SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING  # 3 failures in a row
        del engine.step  # repaired: the next translation succeeds and health comes back
        assert s.Translate(pb.TranslateRequest(texts=["Ein Hund rennt."]), timeout=10).translations
        deadline = time.monotonic() + 5
        while health(channel) != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert srv.value("translator_engine_failures_total", model=model.name, stage="decode") == 3
    finally:
        srv.stop()
