"""Kubernetes manifests proven without a cluster: every overlay renders (kubectl kustomize), every
object validates against the Kubernetes schemas (kubernetes-validate), checkov finds nothing
(waivers explained in the manifests), and the manifests agree with the server's flags."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.config import FLAGS, ServerConfig, env_name

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
KUBECTL = shutil.which("kubectl")
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
BIN = Path(sys.executable).parent


def render(overlay: str) -> list[dict]:
    run = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not installed")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tmp_path_factory) -> tuple[str, list[dict], Path]:
    docs = render(request.param)
    path = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return request.param, docs, path


def test_there_are_overlays_for_the_demo_and_for_production():
    assert {"demo", "production"} <= set(OVERLAYS)


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    _, docs, path = rendered
    run = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.30.0", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    custom = {d["kind"] for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")}
    assert "passed" in run.stdout and "fail" not in run.stdout.lower()
    # the Operator's kinds have no schema there: they are checked below (same rules as compose)
    assert custom <= {"ServiceMonitor", "PrometheusRule"}


def test_checkov_finds_nothing_and_every_waiver_is_explained(rendered):
    if not CHECKOV.exists():
        pytest.skip("checkov is installed by `make install` into .tools/checkov")
    _, docs, path = rendered
    run = subprocess.run([str(CHECKOV), "-f", str(path), "--framework", "kubernetes", "--compact", "--quiet",
                          "--skip-download"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    for doc in docs:
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, why = value.partition("=")
                assert re.fullmatch(r"CKV_K8S_\d+", check) and len(why) > 30, value


def test_deployment_is_hardened_and_probes_grpc_health(rendered):
    _, docs, _ = rendered
    [deployment] = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsUser"] == int(re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)[1])
    assert container["resources"]["requests"] == container["resources"]["limits"]  # Guaranteed QoS
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]  # grpc.health.v1, natively
    threads = next(e for e in container["env"] if e["name"] == env_name("threads"))
    assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"


def test_manifests_agree_with_the_servers_flags(rendered):
    _, docs, _ = rendered
    [deployment] = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    known = {env_name(flag) for flag, *_ in FLAGS} | {env_name("bundles")}
    assert set(env) <= known, set(env) - known  # no misspelt settings
    for cm in by_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"].startswith("translator-config"):
            assert set(cm["data"]) <= known, set(cm["data"]) - known
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(env["TRANSLATOR_PORT"]), "http": int(env["TRANSLATOR_HTTP_PORT"]),
                     "metrics": int(env["TRANSLATOR_METRICS_PORT"])}
    defaults = ServerConfig()
    assert (ports["grpc"], ports["http"], ports["metrics"]) == (defaults.port, defaults.http_port, defaults.metrics_port)
    # the pod outlives the preStop pause plus the server's own grace period
    grace = float(env["TRANSLATOR_GRACE_SECONDS"])
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= pause + grace + 2
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] > grace
    for service in by_kind(docs, "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    [headless] = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    assert any(p["name"] == "grpc" for p in headless["spec"]["ports"])
    image = container["image"]
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert image.endswith(f":{version}") or "@sha256:" in image


def test_autoscaling_disruption_budget_and_network_policy(rendered):
    _, docs, _ = rendered
    [hpa] = by_kind(docs, "HorizontalPodAutoscaler")
    [deployment] = by_kind(docs, "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and hpa["spec"]["minReplicas"] >= 2
    assert by_kind(docs, "PodDisruptionBudget")
    [policy] = by_kind(docs, "NetworkPolicy")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["egress"] == []


def test_operator_rules_are_the_compose_alerts_and_the_monitor_scrapes_metrics():
    docs = render("production")
    [rule] = by_kind(docs, "PrometheusRule")
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == compose["groups"]
    [monitor] = by_kind(docs, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    [hpa] = by_kind(docs, "HorizontalPodAutoscaler")
    assert any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "translator_queue_depth"
               for m in hpa["spec"]["metrics"])
    [adapter] = [d for d in by_kind(docs, "ConfigMap") if "adapter" in d["metadata"]["name"]]
    assert "translator_queue_depth" in adapter["data"]["rules.yaml"]
    [deployment] = by_kind(docs, "Deployment")
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == "/bundles" and m["readOnly"] for m in mounts)
