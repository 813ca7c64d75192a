"""Deployment, proven without a Docker engine: Dockerfile and compose file lint clean, Prometheus
configuration and every PromQL expression parse, the wheel installs without torch and serves the
demo bundle, and a real Prometheus scrapes it with the project's configuration."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from service.client import TranslatorClient
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROMTOOL = ROOT / ".tools" / "usr" / "bin" / "promtool"
PROMETHEUS = ROOT / ".tools" / "usr" / "bin" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "translator.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_compose_file_follows_the_compose_specification():
    run = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"translator", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        assert services[name]["depends_on"]["translator"]["condition"] == "service_healthy"
    assert services["translator"]["healthcheck"]["test"] == ["CMD", "translator-healthcheck"]  # gRPC health
    env = services["translator"]["environment"]
    assert f'{env["TRANSLATOR_HTTP_PORT"]}:{env["TRANSLATOR_HTTP_PORT"]}' in services["translator"]["ports"]


def test_dockerfile_passes_hadolint_with_non_root_user_and_exec_entrypoint():
    run = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER \d+(:\d+)?$", text, re.M), "USER must be a numeric non-root id"
    assert not re.search(r"^USER 0", text, re.M)
    assert re.search(r'^ENTRYPOINT \[".+"\]$', text, re.M), "ENTRYPOINT must be exec form"
    assert re.search(r'^HEALTHCHECK .*CMD \["translator-healthcheck"\]$', text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage build"
    assert "torch" not in text.split("FROM")[-1]


def test_prometheus_config_rules_and_every_query_parse(tmp_path):
    for args in (["check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(ALERTS)]):
        run = subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    # promtool parses recording-rule expressions: one rule per dashboard query
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(dashboard_queries())]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    run = subprocess.run([str(PROMTOOL), "check", "rules", str(tmp_path / "dashboard_rules.yml")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(dashboard_queries()) >= 10


@pytest.fixture(scope="module")
def installed_server(tmp_path_factory):
    """The wheel installed into a fresh virtual environment (no torch), serving the demo bundle
    from outside the source tree, as the image's recipe does."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--wheel-dir", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    [wheel] = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    no_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "torch must not be installed by the serving wheel"
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(TRANSLATOR_BUNDLES=str(ROOT / "models" / "demo-de-en"), TRANSLATOR_PORT=str(port),
               TRANSLATOR_METRICS_PORT=str(metrics_port), TRANSLATOR_HOST="127.0.0.1",
               TRANSLATOR_HTTP_PORT=str(http_port))
    proc = subprocess.Popen([str(venv / "bin" / "translator-server")], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    health = [str(venv / "bin" / "translator-healthcheck"), "--target", f"127.0.0.1:{port}"]
    deadline = time.monotonic() + 90
    while subprocess.run(health, capture_output=True).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "timeout"
        time.sleep(0.5)
    yield {"port": port, "metrics_port": metrics_port, "http_port": http_port, "health": health, "venv": venv}
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_installed_wheel_serves_the_demo_bundle_and_passes_the_health_command(installed_server):
    run = subprocess.run(installed_server["health"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "SERVING"
    with TranslatorClient(f"127.0.0.1:{installed_server['port']}") as client:
        assert client.translate(["Ein Mann fährt Fahrrad."])[0].text
    http = f"http://127.0.0.1:{installed_server['http_port']}"
    with urllib.request.urlopen(http + "/", timeout=10) as r:  # the page is in the wheel
        assert b"Attention translator" in r.read()
    request = urllib.request.Request(http + "/translate", data=json.dumps(
        {"q": "Ein Hund.", "source": "de", "target": "en"}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert json.load(r)["translatedText"] == "A dog."


def _query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_the_service_and_the_dashboard_has_data(installed_server, tmp_path):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{installed_server['metrics_port']}"]}]
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prom = subprocess.Popen([str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with TranslatorClient(f"127.0.0.1:{installed_server['port']}") as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                client.translate(["Ein Hund rennt.", "Zwei Katzen schlafen."], beam_size=2)
                try:
                    if _query(port, 'up{job="translator"}') and all(_query(port, q) for q in dashboard_queries()):
                        break
                except OSError:
                    pass
                time.sleep(1)
        assert _query(port, 'up{job="translator"}')[0]["value"][1] == "1"
        assert float(_query(port, "sum(translator_sentences_total)")[0]["value"][1]) > 0
        empty = [q for q in dashboard_queries() if not _query(port, q)]
        assert not empty, f"dashboard queries without data: {empty}"
    finally:
        prom.terminate()
        prom.wait(timeout=30)
